// Debian's coturn (`turnserver`) inside a namespace, with the TURN REST shared-secret scheme.
import { createHash, createHmac, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeSelfSignedCertificate } from "../support/self-signed-certificate.js";
import { waitFor } from "../support/wait-for.js";
import { nsRun, onTeardown, type SpawnedProcess, spawnInNamespace } from "./netns.js";

export interface CoturnOptions {
  /** Listening and relay address (e.g. lab.server.address). */
  address: string;
  /** An IPv6 listening and relay address besides (`url6`); coturn relays to either family. */
  address6?: string;
  /** Relay over IPv6 only (`address6` the one relay address), as an IPv6-only TURN host would. */
  relayIpv6Only?: boolean;
  /**
   * UDP and TCP listening port. Default 3479: the introduction server answers STUN on 3478 at the
   * same address in the lab's server namespace.
   */
  port?: number;
  /** Relay port range (default 49152-49999). */
  minPort?: number;
  maxPort?: number;
  /** Default: 32 random hex bytes. */
  secret?: string;
  realm?: string;
  /** TLS listener on `tls.port` (default 5349); off unless given (see `makeTestCertificate`). */
  tls?: { cert: string; key: string; port?: number };
  /** CIDR ranges coturn refuses to relay to (its `denied-peer-ip`), e.g. topology.ts's PRIVATE_PEER_RANGES. */
  deniedPeers?: string[];
  verbose?: boolean;
}

export interface Coturn {
  /** e.g. "turn:203.0.113.2:3479" (add "?transport=tcp" for TCP). */
  readonly url: string;
  /** With `address6`: e.g. "turn:[2001:db8:113::2]:3479". */
  readonly url6: string | undefined;
  readonly tlsUrl: string | undefined;
  readonly secret: string;
  readonly realm: string;
  readonly address: string;
  /** Its IPv6 address, when given one. */
  readonly address6: string | undefined;
  readonly port: number;
  /** The namespace it runs in. */
  readonly ns: string;
  /** The running turnserver (a new one after `restart`). */
  readonly process: SpawnedProcess;
  /** Short-lived TURN REST credentials: username "<expiry>:<user>", password base64(HMAC-SHA1). */
  credentials(user?: string, ttlSeconds?: number): { username: string; password: string };
  /** Kills coturn (SIGKILL: every allocation is lost) and starts it again with the same configuration. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A self-signed certificate for `address` (an IP subjectAltName), made with openssl in a temporary
 * directory removed at teardown. Clients trust it through NODE_EXTRA_CA_CERTS=cert.
 */
export async function makeTestCertificate(address: string): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(tmpdir(), "tbt-cert-"));
  onTeardown(() => rm(dir, { recursive: true, force: true }));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  writeSelfSignedCertificate({ cert, key }, { cn: address, subjectAltName: `IP:${address}` });
  return { cert, key };
}

/** coturn's range syntax for a CIDR range: "first-last". */
function coturnRange(cidr: string): string {
  const [base = "", prefixText = "32"] = cidr.split("/");
  const start = base.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(prefixText));
  const first = start - (start % size);
  const dotted = (n: number) => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".");
  return `${dotted(first)}-${dotted(first + size - 1)}`;
}

/** The TURN REST API credential scheme coturn's `use-auth-secret` checks. */
export function turnRestCredentials(
  secret: string,
  user = "tbt",
  ttlSeconds = 3600,
): { username: string; password: string } {
  const username = `${Math.floor(Date.now() / 1000) + ttlSeconds}:${user}`;
  const password = createHmac("sha1", secret).update(username).digest("base64");
  return { username, password };
}

async function listening(ns: string, proto: "u" | "t", address: string, port: number): Promise<boolean> {
  const out = await nsRun(ns, "ss", [`-Hln${proto}`, `sport = :${port}`]);
  return out.includes(`${address}:${port}`);
}

/** Starts coturn in `ns` and resolves once it listens on UDP and TCP. */
export async function startCoturn(ns: string, options: CoturnOptions): Promise<Coturn> {
  const port = options.port ?? 3479;
  const secret = options.secret ?? randomBytes(32).toString("hex");
  const realm = options.realm ?? "tunnelbore.test";
  const dir = await mkdtemp(join(tmpdir(), "tbt-coturn-"));
  if (options.relayIpv6Only && !options.address6) throw new Error("relayIpv6Only needs address6");
  // Own pidfile and userdb so parallel instances never share /var/run or /var/lib/turn state.
  const lines = [
    `listening-ip=${options.address}`,
    ...(options.relayIpv6Only ? [] : [`relay-ip=${options.address}`]),
    ...(options.address6 ? [`listening-ip=${options.address6}`, `relay-ip=${options.address6}`] : []),
    `listening-port=${port}`,
    `min-port=${options.minPort ?? 49152}`,
    `max-port=${options.maxPort ?? 49999}`,
    "use-auth-secret",
    `static-auth-secret=${secret}`,
    `realm=${realm}`,
    "fingerprint",
    "no-cli",
    "no-multicast-peers",
    "no-software-attribute",
    "log-file=stdout",
    `pidfile=${join(dir, "turnserver.pid")}`,
    `userdb=${join(dir, "turndb")}`,
  ];
  if (options.tls) {
    lines.push(
      `cert=${options.tls.cert}`,
      `pkey=${options.tls.key}`,
      `tls-listening-port=${options.tls.port ?? 5349}`,
    );
  } else {
    lines.push("no-tls");
  }
  lines.push("no-dtls");
  for (const range of options.deniedPeers ?? []) lines.push(`denied-peer-ip=${coturnRange(range)}`);
  if (options.verbose) lines.push("verbose");
  const config = join(dir, "turnserver.conf");
  await writeFile(config, `${lines.join("\n")}\n`);
  const tlsPort = options.tls ? (options.tls.port ?? 5349) : undefined;
  const launch = async (): Promise<SpawnedProcess> => {
    const proc = spawnInNamespace(ns, "turnserver", ["-c", config]);
    try {
      await waitFor(
        async () => {
          if (proc.child.exitCode !== null)
            throw new Error(`turnserver exited: ${proc.output().slice(-2000)}`);
          return (
            (await listening(ns, "u", options.address, port)) &&
            (await listening(ns, "t", options.address, port)) &&
            (options.address6 === undefined || (await listening(ns, "u", `[${options.address6}]`, port))) &&
            (tlsPort === undefined || (await listening(ns, "t", options.address, tlsPort)))
          );
        },
        { what: `coturn in ${ns} on ${options.address}:${port}`, timeoutMs: 10_000, intervalMs: 50 },
      );
    } catch (err) {
      await proc.stop("SIGKILL");
      throw err;
    }
    return proc;
  };
  // teardownAll ends the process by PID; this hook removes the temp config too.
  const unhook = onTeardown(() => rm(dir, { recursive: true, force: true }));
  let proc: SpawnedProcess;
  try {
    proc = await launch();
  } catch (err) {
    unhook();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `turn:${options.address}:${port}`,
    url6: options.address6 === undefined ? undefined : `turn:[${options.address6}]:${port}`,
    tlsUrl: tlsPort === undefined ? undefined : `turns:${options.address}:${tlsPort}`,
    secret,
    realm,
    address: options.address,
    address6: options.address6,
    port,
    ns,
    get process() {
      return proc;
    },
    credentials: (user, ttl) => turnRestCredentials(secret, user, ttl),
    async restart() {
      await proc.stop("SIGKILL");
      proc = await launch();
    },
    async stop() {
      unhook();
      await proc.stop("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// A minimal TURN client (RFC 8656 over UDP) on a UdpAgent, enough to prove an allocation works.
const MAGIC = 0x2112a442;

const ATTR = {
  username: 0x0006,
  messageIntegrity: 0x0008,
  errorCode: 0x0009,
  xorPeerAddress: 0x0012,
  data: 0x0013,
  realm: 0x0014,
  nonce: 0x0015,
  xorRelayedAddress: 0x0016,
  requestedTransport: 0x0019,
  xorMappedAddress: 0x0020,
} as const;

interface StunMessage {
  type: number;
  transactionId: Buffer;
  attrs: Map<number, Buffer>;
}

function encodeAttr(type: number, value: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16BE(type, 0);
  header.writeUInt16BE(value.length, 2);
  return Buffer.concat([header, value, Buffer.alloc((4 - (value.length % 4)) % 4)]);
}

function encodeStun(type: number, attrs: [number, Buffer][], key?: Buffer): { bytes: Buffer; id: Buffer } {
  const id = randomBytes(12);
  let body = Buffer.concat(attrs.map(([t, v]) => encodeAttr(t, v)));
  const header = (length: number) => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(type, 0);
    h.writeUInt16BE(length, 2);
    h.writeUInt32BE(MAGIC, 4);
    id.copy(h, 8);
    return h;
  };
  if (key) {
    // The HMAC covers the message with its length already counting the integrity attribute.
    const mac = createHmac("sha1", key)
      .update(Buffer.concat([header(body.length + 24), body]))
      .digest();
    body = Buffer.concat([body, encodeAttr(ATTR.messageIntegrity, mac)]);
  }
  return { bytes: Buffer.concat([header(body.length), body]), id };
}

function decodeStun(buf: Buffer): StunMessage | undefined {
  if (buf.length < 20 || buf.readUInt32BE(4) !== MAGIC) return undefined;
  const attrs = new Map<number, Buffer>();
  let off = 20;
  const end = Math.min(buf.length, 20 + buf.readUInt16BE(2));
  while (off + 4 <= end) {
    const t = buf.readUInt16BE(off);
    const len = buf.readUInt16BE(off + 2);
    if (!attrs.has(t)) attrs.set(t, buf.subarray(off + 4, off + 4 + len));
    off += 4 + len + ((4 - (len % 4)) % 4);
  }
  return { type: buf.readUInt16BE(0), transactionId: buf.subarray(8, 20), attrs };
}

function xorAddress(hostPort: string): Buffer {
  const i = hostPort.lastIndexOf(":");
  const v = Buffer.alloc(8);
  v[1] = 0x01;
  v.writeUInt16BE(Number(hostPort.slice(i + 1)) ^ (MAGIC >>> 16), 2);
  const octets = hostPort.slice(0, i).split(".").map(Number);
  v.writeUInt32BE((Buffer.from(octets).readUInt32BE(0) ^ MAGIC) >>> 0, 4);
  return v;
}

function readXorAddress(v: Buffer | undefined): string | undefined {
  if (!v || v.length < 8 || v[1] !== 0x01) return undefined;
  const port = v.readUInt16BE(2) ^ (MAGIC >>> 16);
  const ip = Buffer.alloc(4);
  ip.writeUInt32BE((v.readUInt32BE(4) ^ MAGIC) >>> 0, 0);
  return `${[...ip].join(".")}:${port}`;
}

/** The subset of a UDP socket the TURN client needs (UdpAgent fits). */
export interface DatagramPort {
  readonly messages: { from: string; data: Buffer }[];
  send(to: string, data: Buffer): void;
  waitForMessage(
    match: (m: { from: string; data: Buffer }) => boolean,
    timeoutMs?: number,
  ): Promise<{ from: string; data: Buffer }>;
}

export interface TurnAllocation {
  /** The relayed transport address coturn allocated. */
  relayed: string;
  /** Our address as coturn saw it (through any NAT). */
  mapped: string;
  /** Lets `peer` (address:port) send to the relayed address; sends go out with `send`. */
  permit(peer: string): Promise<void>;
  /** Sends `data` to `peer` through the relay (a Send indication). */
  send(peer: string, data: Buffer): void;
  /** Payloads that came back through the relay (Data indications), with the peer they came from. */
  received(): { peer: string; data: Buffer }[];
}

/** Allocates a UDP relay on `server` (address:port) with REST credentials, from `port`'s socket. */
export async function turnAllocateUdp(
  port: DatagramPort,
  server: string,
  creds: { username: string; password: string },
  timeoutMs = 2000,
): Promise<TurnAllocation> {
  const transact = async (type: number, attrs: [number, Buffer][], key?: Buffer): Promise<StunMessage> => {
    const { bytes, id } = encodeStun(type, attrs, key);
    port.send(server, bytes);
    const reply = await port.waitForMessage(
      (m) => m.from === server && (decodeStun(m.data)?.transactionId.equals(id) ?? false),
      timeoutMs,
    );
    return decodeStun(reply.data)!;
  };
  const transport: [number, Buffer] = [ATTR.requestedTransport, Buffer.from([17, 0, 0, 0])];
  const challenge = await transact(0x0003, [transport]);
  const realm = challenge.attrs.get(ATTR.realm);
  const nonce = challenge.attrs.get(ATTR.nonce);
  if (challenge.type !== 0x0113 || !realm || !nonce) throw new Error("TURN server sent no 401 challenge");
  const key = createHash("md5").update(`${creds.username}:${realm.toString()}:${creds.password}`).digest();
  const auth: [number, Buffer][] = [
    [ATTR.username, Buffer.from(creds.username)],
    [ATTR.realm, realm],
    [ATTR.nonce, nonce],
  ];
  const checked = (m: StunMessage, what: string): StunMessage => {
    if ((m.type & 0x0110) !== 0x0100) {
      const err = m.attrs.get(ATTR.errorCode);
      const code = err && err.length >= 4 ? (err[2]! & 7) * 100 + err[3]! : 0;
      throw new Error(`TURN ${what} failed: ${code} ${err?.subarray(4).toString() ?? ""}`.trim());
    }
    return m;
  };
  const ok = checked(await transact(0x0003, [transport, ...auth], key), "Allocate");
  const relayed = readXorAddress(ok.attrs.get(ATTR.xorRelayedAddress));
  const mapped = readXorAddress(ok.attrs.get(ATTR.xorMappedAddress));
  if (!relayed || !mapped) throw new Error("TURN Allocate success without addresses");
  return {
    relayed,
    mapped,
    async permit(peer) {
      checked(
        await transact(0x0008, [[ATTR.xorPeerAddress, xorAddress(peer)], ...auth], key),
        "CreatePermission",
      );
    },
    send(peer, data) {
      port.send(
        server,
        encodeStun(0x0016, [
          [ATTR.xorPeerAddress, xorAddress(peer)],
          [ATTR.data, data],
        ]).bytes,
      );
    },
    received() {
      return port.messages.flatMap((m) => {
        const msg = m.from === server ? decodeStun(m.data) : undefined;
        const peer = readXorAddress(msg?.attrs.get(ATTR.xorPeerAddress));
        const data = msg?.attrs.get(ATTR.data);
        return msg?.type === 0x0017 && peer && data ? [{ peer, data: Buffer.from(data) }] : [];
      });
    },
  };
}
