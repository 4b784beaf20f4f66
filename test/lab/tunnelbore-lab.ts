// The NAT lab with the whole product in it: an introduction server and a coturn on the public segment,
// a real wireguard-go on every host, and Tunnelbore (`run --intro`) on the hosts that use it.
// Used by the end-to-end tests, the demo and the benchmarks.
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { PeerStatus, StatusReport } from "../../src/control/status.js";
import { waitFor } from "../support/wait-for.js";
import { type Coturn, makeTestCertificate, startCoturn, turnRestCredentials } from "./coturn.js";
import { type LabDnsServer, startDnsServer } from "./dns.js";
import { generateKeyPair, nsRun, type SpawnedProcess, spawnInNamespace } from "./netns.js";
import { ping } from "./ping.js";
import { SecretFiles } from "./secret-files.js";
import {
  type HostSpec,
  ipv6Of,
  Lab,
  PRIVATE_PEER_RANGES,
  type TurnPlacement,
  type TurnRouting,
} from "./topology.js";
import {
  CLI,
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "./tunnelbore.js";
import { startWireGuard, type WireGuardInterface } from "./wireguard.js";

export interface ProductHostSpec extends HostSpec {
  /** Run Tunnelbore on this host (default true); false: plain WireGuard with its public endpoint. */
  tunnelbore?: boolean;
  /** Extra `tunnelbore run` flags. */
  flags?: string[];
  /** Node's own flags for this host's Tunnelbore (e.g. --cpu-prof, which NODE_OPTIONS refuses). */
  nodeArgs?: string[];
}

export interface ProductLabSpec {
  hosts: ProductHostSpec[];
  /** Which hosts are WireGuard peers of each other (default: every pair). */
  links?: Array<[string, string]>;
  routers?: Array<{ name: string; nat: "eim" | "symmetric" }>;
  /** Start Tunnelbore on its hosts in `create` (default true); false: the caller does, e.g. all at once. */
  startTunnelbores?: boolean;
  /** Where TURN runs and how it is reached (default: one coturn with the introduction server, UDP and TCP). */
  turn?: TurnLabSpec;
  /** IPv6 too: every host and server gets a global IPv6 address besides (test/lab/topology.ts). */
  ipv6?: boolean;
  /** The introduction server's `--allowed-keys FILE` (default: none, a public server). */
  allowedKeysFile?: string;
  /** More `intro-server` flags (e.g. higher per-address caps for a fleet behind one NAT). */
  introFlags?: string[];
}

/** The lab's TURN servers, declared: where they run, their host's routes, how many, how they are reached. */
export interface TurnLabSpec {
  /** Default "server" (in the introduction server's namespace). */
  placement?: TurnPlacement;
  /** Default "default" (see TurnRouting). */
  routing?: TurnRouting;
  /**
   * 1 (default): the introduction server hands out its credentials. 2: one per side, host i uses
   * server i % 2 (given with `--turn`; both share a secret, so one credential scheme serves both).
   */
  servers?: 1 | 2;
  /**
   * How Tunnelbore reaches TURN: "udp" (default; the introduction server also offers TCP), "tcp" or
   * "tls" only (TLS with a certificate made by openssl now, trusted through NODE_EXTRA_CA_CERTS).
   */
  transport?: "udp" | "tcp" | "tls";
  /** coturn's verbose log (allocations, permissions, channel binds) in `Coturn.process.output()`. */
  verbose?: boolean;
  /**
   * The family of the address the TURN URLs name (default 4); 6 needs the lab's `ipv6`. coturn listens
   * and relays on both either way, with `ipv6`.
   */
  family?: 4 | 6;
  /** coturn relays over IPv6 only (an IPv6-only TURN host's relayed addresses); needs the lab's `ipv6`. */
  relayIpv6Only?: boolean;
  /**
   * The TURN URLs name the server by this hostname (as deployments do) instead of its address: a lab
   * DNS server with the introduction server answers it (A, and AAAA in an `ipv6` lab), and every host
   * resolves through it (`ProductLab.dns`). UDP and TCP only (the test certificate is for the address).
   */
  hostname?: string;
}

export interface ProductHost {
  readonly name: string;
  readonly ns: string;
  readonly tunnelAddress: string;
  readonly keys: { privateKey: string; publicKey: string };
  readonly wg: WireGuardInterface;
  tunnelbore: TunnelboreProcess | null;
  readonly dirs: TunnelboreDirs;
  readonly flags: string[];
  readonly nodeArgs: string[];
  /** No IPv4 on its uplink (`HostSpec.ipv6Only`): it reaches the introduction server at `introUrl6`. */
  readonly ipv6Only: boolean;
}

export const WG_PORT = 51820;
const INTRO_PORT = 8443;
const STUN_PORT = 3478;
const TURN_PORT = 3479;
const TURNS_PORT = 5349;
/** TURN REST credentials given with --turn (two TURN servers) outlive any test or bench run. */
const TURN_FLAG_TTL_S = 7 * 24 * 3600;

export class ProductLab {
  private constructor(
    readonly lab: Lab,
    /** Every TURN server (one, or one per side); `coturn` is the first. */
    readonly coturns: Coturn[],
    readonly introUrl: string,
    private introServer: SpawnedProcess,
    private readonly introArgs: string[],
    private readonly hostsByName: Map<string, ProductHost>,
    /** The environment every Tunnelbore runs with (NODE_EXTRA_CA_CERTS for TURN over TLS). */
    private readonly tunnelboreEnv: NodeJS.ProcessEnv,
    /** The files the secrets are passed in (never argv); removed at teardown. */
    private readonly secrets: SecretFiles,
    /** With `turn.hostname`: the DNS server that answers it (its queries, from where). */
    readonly dns: LabDnsServer | null,
  ) {}

  get coturn(): Coturn {
    return this.coturns[0]!;
  }

  /** The introduction server at its IPv6 address (listening on both families in an `ipv6` lab). */
  get introUrl6(): string {
    return this.introUrl.replace(/^ws:\/\/([0-9.]+):/, (_, v4: string) => `ws://[${ipv6Of(v4)}]:`);
  }

  static async create(spec: ProductLabSpec): Promise<ProductLab> {
    const lab = await Lab.create({ hosts: spec.hosts, routers: spec.routers, ipv6: spec.ipv6 });
    const secrets = new SecretFiles();
    try {
      const server = lab.server;
      const turn = await startTurnServers(lab, spec.turn ?? {}, secrets, spec.ipv6 === true);
      const introArgs = [
        CLI,
        "intro-server",
        "--listen",
        spec.ipv6 ? `[::]:${INTRO_PORT}` : `${server.address}:${INTRO_PORT}`,
        "--stun-port",
        String(STUN_PORT),
        ...turn.urls(0).flatMap((url) => ["--turn-url", url]),
        "--turn-secret-file",
        secrets.write("turn-secret", turn.coturns[0]!.secret),
        ...(spec.allowedKeysFile ? ["--allowed-keys", spec.allowedKeysFile] : []),
        ...(spec.introFlags ?? []),
      ];
      const introServer = await startIntroServer(server.ns, introArgs);
      const introUrl = `ws://${server.address}:${INTRO_PORT}`;

      const hosts = new Map<string, ProductHost>();
      let index = 1;
      for (const [i, h] of spec.hosts.entries()) {
        // Before anything runs there: `ip netns exec` puts the namespace's resolv.conf in place at exec.
        await turn.dns?.useFrom(lab.host(h.name).ns, h.ipv6Only ? ipv6Of(server.address) : server.address);
        const keys = await generateKeyPair();
        const tunnelAddress = `10.77.0.${index++}`;
        const wg = await startWireGuard(lab.host(h.name).ns, {
          privateKey: keys.privateKey,
          listenPort: WG_PORT,
          address: `${tunnelAddress}/24`,
        });
        hosts.set(h.name, {
          name: h.name,
          ns: lab.host(h.name).ns,
          tunnelAddress,
          keys,
          wg,
          tunnelbore: null,
          dirs: tunnelboreDirs(),
          flags: [...turn.flagsFor(i, h.name), ...(h.flags ?? [])],
          nodeArgs: h.nodeArgs ?? [],
          ipv6Only: h.ipv6Only === true,
        });
      }
      const names = spec.hosts.map((h) => h.name);
      const links =
        spec.links ?? names.flatMap((a, i) => names.slice(i + 1).map((b): [string, string] => [a, b]));
      const usesTunnelbore = new Map(spec.hosts.map((h) => [h.name, h.tunnelbore !== false]));
      for (const [a, b] of links) {
        for (const [self, other] of [
          [a, b],
          [b, a],
        ] as const) {
          const me = hosts.get(self);
          const peer = hosts.get(other);
          if (!me || !peer) throw new Error(`link ${a}-${b} names an unknown host`);
          // A peer without Tunnelbore is reached at its public endpoint (the static path).
          const endpoint = usesTunnelbore.get(other)
            ? undefined
            : `${lab.host(other).publicAddress}:${WG_PORT}`;
          await me.wg.setPeer({
            publicKey: peer.keys.publicKey,
            allowedIps: `${peer.tunnelAddress}/32`,
            endpoint,
          });
        }
      }
      const product = new ProductLab(
        lab,
        turn.coturns,
        introUrl,
        introServer,
        introArgs,
        hosts,
        turn.env,
        secrets,
        turn.dns,
      );
      if (spec.startTunnelbores !== false) {
        for (const h of spec.hosts) if (h.tunnelbore !== false) await product.startTunnelbore(h.name);
      }
      return product;
    } catch (err) {
      await lab.teardown();
      secrets.cleanup();
      throw err;
    }
  }

  host(name: string): ProductHost {
    const h = this.hostsByName.get(name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  async startTunnelbore(name: string): Promise<TunnelboreProcess> {
    const h = this.host(name);
    h.tunnelbore = await startTunnelbore(
      h.ns,
      h.wg.name,
      h.dirs,
      ["--intro", h.ipv6Only ? this.introUrl6 : this.introUrl, ...h.flags],
      this.tunnelboreEnv,
      [],
      h.nodeArgs,
    );
    return h.tunnelbore;
  }

  async stopTunnelbore(name: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const h = this.host(name);
    await h.tunnelbore?.stop(signal);
    h.tunnelbore = null;
  }

  async stopIntroServer(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.introServer.stop(signal);
  }

  async restartIntroServer(): Promise<void> {
    this.introServer = await startIntroServer(this.lab.server.ns, this.introArgs);
  }

  /**
   * No UDP between `a`'s and `b`'s global IPv6 addresses (dropped at `a`, both ways): no direct IPv6
   * pair, where the lab's IPv6 is routed without NAT.
   */
  async blockDirectIpv6(a: string, b: string): Promise<void> {
    const remote = this.lab.host(b).address6;
    if (!remote) throw new Error("blockDirectIpv6 needs the lab's ipv6");
    await nsRun(
      this.host(a).ns,
      "nft",
      ["-f", "-"],
      `table ip6 tbt_no_direct {
  chain output { type filter hook output priority filter; policy accept; ip6 daddr ${remote} meta l4proto udp drop; }
  chain input { type filter hook input priority filter; policy accept; ip6 saddr ${remote} meta l4proto udp drop; }
}
`,
    );
  }

  /** One ping from `from` to `to` through WireGuard. */
  async ping(from: string, to: string, timeoutMs = 1000): Promise<boolean> {
    const result = await ping(this.host(from).ns, this.host(to).tunnelAddress, {
      count: 1,
      timeout: timeoutMs,
    });
    return result.ok;
  }

  /** Pings until one is answered; returns how long that took. */
  async waitForPing(from: string, to: string, timeoutMs = 20_000): Promise<number> {
    const start = Date.now();
    await waitFor(() => this.ping(from, to, 500), {
      what: `ping ${from} -> ${to}`,
      timeoutMs: timeoutMs,
      intervalMs: 0,
    });
    return Date.now() - start;
  }

  async status(name: string): Promise<StatusReport> {
    const tb = this.host(name).tunnelbore;
    if (!tb) throw new Error(`no tunnelbore on ${name}`);
    return tb.status();
  }

  /** The status line `on` shows for its peer `peer`. */
  async peerStatus(on: string, peer: string): Promise<PeerStatus> {
    const key = this.host(peer).keys.publicKey;
    const found = (await this.status(on)).peers.find((p) => p.publicKey === key);
    if (!found) throw new Error(`${on} has no peer ${peer}`);
    return found;
  }

  /** Waits until both `a` and `b` report that the kernel fast path carries the other. */
  async waitForKernelFastPath(a: string, b: string, timeoutMs: number): Promise<void> {
    for (const [on, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      await waitFor(async () => (await this.peerStatus(on, peer)).kernelFastPath, {
        what: `${on} carries ${peer} in the kernel`,
        timeoutMs,
        intervalMs: 100,
      });
    }
  }

  /** Waits until `on` reports a path to `peer` and returns its kind. */
  async waitForPath(on: string, peer: string, timeoutMs = 20_000): Promise<PeerStatus> {
    await waitFor(async () => (await this.peerStatus(on, peer)).pathKind !== null, {
      what: `${on} has a path to ${peer}`,
      timeoutMs: timeoutMs,
      intervalMs: 100,
    });
    return this.peerStatus(on, peer);
  }

  /**
   * Waits until `on`'s path to `peer` is direct. A fresh ICE session nominates the first pair to
   * answer: usually a direct one, now and then on a loaded machine the relay pair (its check won the
   * race against a direct pair's, test/e2e/relay-race.test.ts), which the controlling side leaves as
   * soon as the direct pair answers, or the upgrade attempt 3.75-5 s later. `label` names the moment in
   * the log line that says which kind came first.
   */
  async waitForDirectPath(on: string, peer: string, label: string, timeoutMs = 15_000): Promise<PeerStatus> {
    const first = await this.waitForPath(on, peer);
    console.log(`first path ${label}: ${first.pathKind}`);
    return waitFor(
      async () => {
        const status = await this.peerStatus(on, peer);
        return status.pathKind === "direct" && status;
      },
      { what: `${on}'s direct path to ${peer} ${label}`, timeoutMs, intervalMs: 100 },
    );
  }

  async teardown(): Promise<void> {
    for (const h of this.hostsByName.values()) {
      await h.tunnelbore?.stop("SIGTERM").catch(() => undefined);
      h.dirs.cleanup();
    }
    await this.introServer.stop("SIGTERM").catch(() => undefined);
    for (const coturn of this.coturns) await coturn.stop().catch(() => undefined);
    await this.lab.teardown();
    this.secrets.cleanup();
  }
}

/**
 * The TURN URLs a client is given for `transport` ("udp": UDP first, TCP where UDP fails), naming the
 * server by `hostname` when given, else by its address of `family`.
 */
function turnUrls(
  coturn: Coturn,
  transport: "udp" | "tcp" | "tls",
  hostname?: string,
  family: 4 | 6 = 4,
): string[] {
  if (transport === "tls") return [coturn.tlsUrl!];
  const named = family === 6 ? coturn.url6! : coturn.url;
  const url = hostname ? named.replace(coturn.address, hostname) : named;
  if (transport === "tcp") return [`${url}?transport=tcp`];
  return [url, `${url}?transport=tcp`];
}

interface TurnServers {
  readonly coturns: Coturn[];
  /** The URLs of the i-th TURN server, as clients are given them. */
  urls(index: number): string[];
  /** With `hostname`: the DNS server answering it. */
  readonly dns: LabDnsServer | null;
  /** `run` flags of the i-th host (its own TURN server when there are two). */
  flagsFor(index: number, user: string): string[];
  readonly env: NodeJS.ProcessEnv;
}

/** Starts the TURN servers a TurnLabSpec declares, on TURN hosts with the routes it names. */
async function startTurnServers(
  lab: Lab,
  spec: TurnLabSpec,
  secrets: SecretFiles,
  ipv6: boolean,
): Promise<TurnServers> {
  const transport = spec.transport ?? "udp";
  if (spec.family === 6 && (!ipv6 || transport === "tls"))
    throw new Error("TURN named by an IPv6 address needs the lab's ipv6, and UDP or TCP");
  const routing = spec.routing ?? "default";
  const coturns: Coturn[] = [];
  const certs: string[] = [];
  let secret: string | undefined;
  for (let i = 0; i < (spec.servers ?? 1); i++) {
    const host = await lab.addTurnHost(spec.placement ?? "server", routing);
    const tls = transport === "tls" ? await makeTestCertificate(host.address) : undefined;
    if (tls) certs.push(tls.cert);
    const coturn = await startCoturn(host.ns, {
      address: host.address,
      ...(ipv6 ? { address6: ipv6Of(host.address), relayIpv6Only: spec.relayIpv6Only === true } : {}),
      port: TURN_PORT,
      secret,
      tls: tls && { ...tls, port: TURNS_PORT },
      deniedPeers: routing === "denied-peer-ip" ? PRIVATE_PEER_RANGES : undefined,
      verbose: spec.verbose,
    });
    secret = coturn.secret;
    coturns.push(coturn);
  }
  const { hostname } = spec;
  if (hostname && (transport === "tls" || coturns.length > 1))
    throw new Error("a TURN hostname is for one TURN server over UDP or TCP");
  const named = coturns[0]!;
  const dns = hostname
    ? await startDnsServer(lab.server.ns, lab.server.address, {
        [hostname]: [named.address, ...(named.address6 ? [named.address6] : [])],
      })
    : null;
  const urls = (index: number) => turnUrls(coturns[index]!, transport, hostname, spec.family);
  return {
    coturns,
    urls,
    dns,
    flagsFor(index, user) {
      if (coturns.length < 2) return [];
      const coturn = coturns[index % coturns.length]!;
      const { username, password } = turnRestCredentials(coturn.secret, user, TURN_FLAG_TTL_S);
      const [url] = urls(index % coturns.length);
      const passwordFile = secrets.write(`turn-password-${user}`, password);
      return ["--turn", url!, "--turn-username", username, "--turn-password-file", passwordFile];
    },
    // Node reads one file: with two TURN servers over TLS, both certificates go into it.
    env: certs.length === 0 ? {} : { NODE_EXTRA_CA_CERTS: await bundle(certs) },
  };
}

/** One PEM file holding every certificate of `files` (in the first one's directory). */
async function bundle(files: string[]): Promise<string> {
  if (files.length === 1) return files[0]!;
  const target = join(dirname(files[0]!), "bundle.pem");
  await writeFile(target, (await Promise.all(files.map((f) => readFile(f, "utf8")))).join(""));
  return target;
}

/** Starts `node args...` (the CLI's intro-server command) in `ns` and waits until it listens. */
export async function startIntroServer(ns: string, args: string[]): Promise<SpawnedProcess> {
  const proc = spawnInNamespace(ns, process.execPath, args, { TUNNELBORE_LOG: "warn" });
  await waitFor(() => proc.child.exitCode !== null || /listening on/.test(proc.output()), {
    what: "introduction server listening",
    timeoutMs: 10_000,
    intervalMs: 50,
  });
  if (proc.child.exitCode !== null) throw new Error(`intro-server exited: ${proc.output()}`);
  return proc;
}
