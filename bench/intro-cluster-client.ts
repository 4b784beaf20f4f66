// A light introduction protocol client for bench/intro-cluster.ts and its holder processes:
// authenticates, declares its peers, and (held clients) moves to another node when its node dies.
import type { KeyObject } from "node:crypto";
import { type NetConnectOpts, connect as netConnect } from "node:net";
import { WebSocket } from "ws";
import type { ServerMessage } from "../src/signalling/protocol.js";
import { authProof, generateX25519KeyPair, x25519 } from "../src/signalling/signalling-crypto.js";

/** Logins in flight at once per load-generating process. */
export const CONNECT_CONCURRENCY = 200;
/** Clients' source addresses: 127.0.0.2 and the SOURCE_ADDRESSES - 1 after it. */
const SOURCE_ADDRESSES = 200;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The node of client `i`: pairs (2k, 2k+1) sit on neighbouring nodes. */
export const nodeOfClient = (i: number, nodes: number) => (Math.floor(i / 2) + (i % 2)) % nodes;

export type Handler = (message: ServerMessage) => void;

/** When each step of one login attempt happened (Date.now(); 0: not reached). */
export interface LoginTrace {
  started: number;
  /** TCP connected. */
  tcp: number;
  /** The HTTP upgrade answered (101). */
  upgraded: number;
  challenge: number;
  welcome: number;
}

const newTrace = (): LoginTrace => ({ started: Date.now(), tcp: 0, upgraded: 0, challenge: 0, welcome: 0 });

/**
 * A moved client's way back, for the failover's timeline: when it saw its node's close, when it first
 * tried again, its successful attempt's steps, and how many attempts it took.
 */
export type MoveTimeline = [
  closed: number,
  firstAttempt: number,
  started: number,
  tcp: number,
  upgraded: number,
  challenge: number,
  welcome: number,
  attempts: number,
];

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
    // Not generateKeyPairSync and a JWK export: that hung a holder of 11,800 clients for good (see
    // rawPublicKey in signalling-crypto.ts).
    const pair = generateX25519KeyPair();
    this.privateKey = pair.privateKey;
    this.publicKey = pair.publicKey.toString("base64");
    this.localAddress = `127.0.0.${2 + (index % SOURCE_ADDRESSES)}`;
  }

  connect(urls: string[], node: number, trace: LoginTrace = newTrace()): Promise<void> {
    this.node = node;
    const ws = new WebSocket(urls[node]!, {
      perMessageDeflate: false,
      localAddress: this.localAddress,
      // ws's own connect (its `path` is the HTTP path, not a socket's), timed; typed as net's
      // overloaded connect, of which ws uses the options form.
      createConnection: ((options: NetConnectOpts & { socketPath?: string }) => {
        const socket = netConnect({ ...options, path: options.socketPath } as NetConnectOpts);
        socket.once("connect", () => {
          trace.tcp = Date.now();
        });
        return socket;
      }) as typeof netConnect,
    });
    this.ws = ws;
    ws.once("upgrade", () => {
      trace.upgraded = Date.now();
    });
    return new Promise((resolve, reject) => {
      ws.once("error", reject);
      // Closed before its welcome (refused, replaced, the node going away): a failed attempt, retried;
      // waiting for a welcome that cannot come hung the whole connect phase once.
      ws.once("close", (code) => reject(new Error(`closed ${code} before welcome`)));
      ws.on("message", (data) => {
        const message = JSON.parse(data.toString()) as ServerMessage;
        if (message.type === "challenge") {
          trace.challenge = Date.now();
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
          trace.welcome = Date.now();
          ws.send(JSON.stringify({ type: "peers", op: "replace", peers: this.peers }));
          resolve();
          this.welcomed();
        } else this.onMessage(message);
      });
    });
  }

  /**
   * When its node goes away: at once to a random other node, again after a short random pause if
   * refused, as the real client does (src/intro-client/reconnect-policy.ts). `onBack` at its welcome,
   * with the way back.
   */
  moveWhenClosed(urls: string[], onBack: (timeline: MoveTimeline) => void, onRetry: () => void): void {
    this.ws!.once("close", () => {
      const from = this.node;
      const closed = Date.now();
      let firstAttempt = 0;
      let attempts = 0;
      let trace = newTrace();
      this.welcomed = () => {
        const { started, tcp, upgraded, challenge, welcome } = trace;
        onBack([closed, firstAttempt, started, tcp, upgraded, challenge, welcome, attempts]);
      };
      const attempt = (): void => {
        attempts++;
        trace = newTrace();
        firstAttempt ||= trace.started;
        const node = (from + 1 + Math.floor(Math.random() * (urls.length - 1))) % urls.length;
        this.connect(urls, node, trace).catch(() => {
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
