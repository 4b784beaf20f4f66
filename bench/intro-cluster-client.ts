// A light introduction protocol client for bench/intro-cluster.ts and its holder processes:
// authenticates, declares its peers, and (held clients) moves to another node when its node dies.
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { WebSocket } from "ws";
import type { ServerMessage } from "../src/signalling/protocol.js";
import { authProof, rawPublicKey, x25519 } from "../src/signalling/signalling-crypto.js";

/** Logins in flight at once per load-generating process. */
export const CONNECT_CONCURRENCY = 200;
/** Clients' source addresses: 127.0.0.2 and the SOURCE_ADDRESSES - 1 after it. */
const SOURCE_ADDRESSES = 200;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The node of client `i`: pairs (2k, 2k+1) sit on neighbouring nodes. */
export const nodeOfClient = (i: number, nodes: number) => (Math.floor(i / 2) + (i % 2)) % nodes;

export type Handler = (message: ServerMessage) => void;

export class BenchClient {
  // A key object made once: importing a raw private key (PKCS#8 in OpenSSL 3) costs ~0.7 ms, more than
  // the rest of a login on the client side; a real client holds its key object too.
  readonly privateKey: KeyObject;
  readonly publicKey: string;
  readonly localAddress: string;
  ws: WebSocket | undefined;
  node = 0;
  peers: string[] = [];
  onMessage: Handler = () => {};
  /** Called on each welcome. */
  welcomed: () => void = () => {};

  constructor(index: number) {
    const pair = generateKeyPairSync("x25519");
    this.privateKey = pair.privateKey;
    this.publicKey = rawPublicKey(pair.publicKey).toString("base64");
    this.localAddress = `127.0.0.${2 + (index % SOURCE_ADDRESSES)}`;
  }

  connect(urls: string[], node: number): Promise<void> {
    this.node = node;
    const ws = new WebSocket(urls[node]!, { perMessageDeflate: false, localAddress: this.localAddress });
    this.ws = ws;
    return new Promise((resolve, reject) => {
      ws.once("error", reject);
      // Closed before its welcome (refused, replaced, the node going away): a failed attempt, retried;
      // waiting for a welcome that cannot come hung the whole connect phase once.
      ws.once("close", (code) => reject(new Error(`closed ${code} before welcome`)));
      ws.on("message", (data) => {
        const message = JSON.parse(data.toString()) as ServerMessage;
        if (message.type === "challenge") {
          const serverKey = Buffer.from(message.serverKey, "base64");
          const shared = x25519(this.privateKey, serverKey);
          const proof = authProof(
            shared,
            serverKey,
            Buffer.from(message.nonce, "base64"),
            Buffer.from(this.publicKey, "base64"),
          );
          ws.send(
            JSON.stringify({
              type: "auth",
              version: 1,
              publicKey: this.publicKey,
              proof: proof.toString("base64"),
            }),
          );
        } else if (message.type === "welcome") {
          ws.send(JSON.stringify({ type: "peers", op: "replace", peers: this.peers }));
          resolve();
          this.welcomed();
        } else this.onMessage(message);
      });
    });
  }

  /**
   * When its node goes away: at once to a random other node, again after a short random pause if
   * refused, as the real client does (src/intro-client/reconnect-policy.ts). `onBack` at each welcome.
   */
  moveWhenClosed(urls: string[], onBack: () => void, onRetry: () => void): void {
    this.ws!.once("close", () => {
      const from = this.node;
      this.welcomed = onBack;
      const attempt = (): void => {
        const node = (from + 1 + Math.floor(Math.random() * (urls.length - 1))) % urls.length;
        this.connect(urls, node).catch(() => {
          onRetry();
          this.ws?.terminate();
          setTimeout(attempt, 100 + Math.random() * 400);
        });
      };
      attempt();
    });
  }
}

/** CONNECT_CONCURRENCY logins at a time; one refused (a cap, a busy node) is tried again. */
export async function connectAll(
  clients: BenchClient[],
  urls: string[],
  nodeOf: (i: number) => number,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < clients.length) {
      const i = next++;
      for (let attempt = 1; ; attempt++) {
        try {
          await clients[i]!.connect(urls, nodeOf(i));
          break;
        } catch (error) {
          if (attempt === 10) throw error;
          clients[i]!.ws?.terminate();
          await sleep(200 * attempt);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
}
