// `tunnelbore run` without --interface, with real wireguard-go: two interfaces in namespace A, each
// with a peer in namespace B (the same peer key on both: B's two interfaces share a private key, so
// the second interface's L(P) must skip the first's). Run serves both, picks up a third interface
// created later, lets go of one removed, shows one status section each, and SIGTERM restores all.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlSocketPath, requestStatus } from "../../src/control/control-socket.js";
import type { StatusReport } from "../../src/control/status.js";
import { loopbackAddressOf } from "../../src/proxy/loopback-address.js";
import { testCgroup } from "../lab/cgroup.js";
import {
  createNamespace,
  generateKeyPair,
  nsRun,
  type SpawnedProcess,
  spawnInNamespace,
  teardownAll,
  uniqueTag,
} from "../lab/netns.js";
import { CLI, parseLogLines, type TunnelboreDirs, tunnelboreDirs } from "../lab/tunnelbore.js";
import { startWireGuard, type WireGuardInterface } from "../lab/wireguard.js";
import { waitFor } from "../support/wait-for.js";

const execFileAsync = promisify(execFile);
const LINK_A = "10.202.0.1";
const LINK_B = "10.202.0.2";
const METRICS = "127.0.0.1:9465";

/** One tunnel: A's interface and B's, and the address B answers pings at. */
interface Tunnel {
  a: WireGuardInterface;
  b: WireGuardInterface;
  /** B's listen port: A's peer endpoint is LINK_B:bPort. */
  bPort: number;
  tunB: string;
}

let nsA: string;
let nsB: string;
let dirs: TunnelboreDirs;
let keyB: { privateKey: string; publicKey: string };
const tag = uniqueTag();
let tunnels: Tunnel[] = [];
let tb: SpawnedProcess | null = null;

/** A's interface `name` (A's listen port aPort) and a B interface (key `bKey`, port bPort), peered. */
async function makeTunnel(
  name: string,
  index: number,
  aPort: number,
  bPort: number,
  bKey: { privateKey: string; publicKey: string },
): Promise<Tunnel> {
  const keyA = await generateKeyPair();
  const tunA = `10.98.${index}.1`;
  const tunB = `10.98.${index}.2`;
  const b = await startWireGuard(
    nsB,
    {
      privateKey: bKey.privateKey,
      listenPort: bPort,
      address: `${tunB}/24`,
      peers: [{ publicKey: keyA.publicKey, allowedIps: `${tunA}/32` }],
    },
    `tbq${index}${tag}`,
  );
  const a = await startWireGuard(
    nsA,
    {
      privateKey: keyA.privateKey,
      listenPort: aPort,
      address: `${tunA}/24`,
      peers: [{ publicKey: bKey.publicKey, allowedIps: `${tunB}/32`, endpoint: `${LINK_B}:${bPort}` }],
    },
    name,
  );
  return { a, b, bPort, tunB };
}

const ping = (tunnel: Tunnel) =>
  nsRun(nsA, "ping", ["-c", "1", "-W", "1", tunnel.tunB]).then(
    () => true,
    () => false,
  );

const statusOf = (name: string): Promise<StatusReport> => requestStatus(controlSocketPath(dirs.runDir, name));

/** `tunnelbore status` (the CLI) without --interface. */
async function statusCli(json: boolean): Promise<string> {
  const args = [CLI, "status", "--run-dir", dirs.runDir, ...(json ? ["--json"] : [])];
  return (await execFileAsync(process.execPath, args)).stdout;
}

/** run's log lines (pino JSON). */
function logsOf(proc: SpawnedProcess): Array<Record<string, unknown>> {
  return parseLogLines(proc.output());
}

function isLoopback(endpoint: string): boolean {
  return endpoint.startsWith("127.");
}

beforeAll(async () => {
  nsA = await createNamespace(`tbt-all-a-${tag}`);
  nsB = await createNamespace(`tbt-all-b-${tag}`);
  await nsRun(nsA, "ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsB]);
  await nsRun(nsA, "ip", ["addr", "add", `${LINK_A}/24`, "dev", "eth0"]);
  await nsRun(nsB, "ip", ["addr", "add", `${LINK_B}/24`, "dev", "eth0"]);
  await nsRun(nsA, "ip", ["link", "set", "eth0", "up"]);
  await nsRun(nsB, "ip", ["link", "set", "eth0", "up"]);
  keyB = await generateKeyPair();
  dirs = tunnelboreDirs();
  // Named so that they sort in this order. The second listens on 51821, --listen's port: the first
  // interface's catch-all must skip it.
  tunnels = [
    await makeTunnel(`tbo1${tag}`, 1, 51820, 51820, keyB),
    await makeTunnel(`tbo2${tag}`, 2, 51821, 51821, keyB),
  ];
}, 60_000);

afterAll(async () => {
  await tb?.stop("SIGKILL");
  await teardownAll();
  dirs?.cleanup();
});

/** The second interface's worker dies: its real endpoint comes back, the first carries on, and it is served again. */
async function crashSecondWorker(proc: SpawnedProcess, loopback: string): Promise<void> {
  const [, second] = tunnels;
  if (!second) throw new Error("no tunnels");
  const running = logsOf(proc).find((l) => l.msg === "tunnelbore running" && l.interface === second.a.name);
  const worker = Number(running?.worker);
  expect(worker, "the second interface's worker PID, from the log").toBeGreaterThan(0);
  process.kill(worker, "SIGKILL");
  await waitFor(async () => (await second.a.endpointOf(keyB.publicKey)) === `${LINK_B}:51821`, {
    what: "the crashed interface's real endpoint restored",
    timeoutMs: 10_000,
    intervalMs: 50,
  });
  expect(await ping(tunnels[0] as Tunnel), "the first interface, while the second's worker is down").toBe(
    true,
  );
  await waitFor(async () => (await second.a.endpointOf(keyB.publicKey)) === loopback, {
    what: "the crashed interface served again, at the same loopback address",
    timeoutMs: 20_000,
    intervalMs: 100,
  });
  expect(logsOf(proc).some((l) => l.msg?.toString().startsWith("the interface's instance failed"))).toBe(
    true,
  );
  await waitFor(() => ping(second), { what: "ping through the second interface again", intervalMs: 50 });
  expect((await statusOf(second.a.name)).catchAll).toBe("127.0.0.1:51823");
}

/**
 * One `run` without --interface through its whole life. `mode`: a worker per interface (the default
 * as root), or every interface in one process. `third`: the later interface's number (its addresses
 * and ports) and the catch-all port it gets.
 */
async function exercise(mode: "separated" | "one process", third: { index: number; catchAllPort: number }) {
  const [first, second] = tunnels;
  if (!first || !second) throw new Error("no tunnels");
  const cgroup = (await testCgroup()) ?? undefined;
  const args = [CLI, "run", "--run-dir", dirs.runDir, "--state-dir", dirs.stateDir, "--poll-interval", "500"];
  args.push("--metrics", METRICS);
  tb = spawnInNamespace(
    nsA,
    process.execPath,
    [...args, ...(mode === "one process" ? ["--no-privsep"] : [])],
    {},
    {
      cgroup,
    },
  );
  const proc = tb;
  for (const tunnel of tunnels) {
    await waitFor(
      async () => proc.child.exitCode === null && isLoopback(await tunnel.a.endpointOf(keyB.publicKey)),
      { what: `${tunnel.a.name}'s endpoint at loopback`, timeoutMs: 20_000, intervalMs: 100 },
    );
  }
  expect(proc.child.exitCode, proc.output()).toBeNull();

  // The same peer key on both: the first (started first, in name order) at the key's own L(P),
  // the second at another candidate.
  const ownLoopback = `${loopbackAddressOf(Buffer.from(keyB.publicKey, "base64"))}:51822`;
  const endpoints = [await first.a.endpointOf(keyB.publicKey), await second.a.endpointOf(keyB.publicKey)];
  expect(endpoints[0]).toBe(ownLoopback);
  expect(endpoints[1]).not.toBe(ownLoopback);

  // Each instance's lines name its interface, the worker's as well as the parent's.
  for (const [i, tunnel] of tunnels.slice(0, 2).entries()) {
    const added = logsOf(proc).find((l) => l.msg === "peer added" && l.loopback === endpoints[i]);
    expect(added?.interface, `the "peer added" line of ${tunnel.a.name}`).toBe(tunnel.a.name);
  }

  // Traffic through both.
  for (const tunnel of tunnels) {
    await waitFor(() => ping(tunnel), { what: `ping through ${tunnel.a.name}`, intervalMs: 50 });
  }
  const reports = [await statusOf(first.a.name), await statusOf(second.a.name)];
  // Each its own catch-all: 51821 is held by the second interface's WireGuard, so 51822 and 51823.
  expect(reports.map((r) => r.catchAll)).toEqual(["127.0.0.1:51822", "127.0.0.1:51823"]);
  for (const [i, report] of reports.entries()) {
    expect(report.interface).toBe(tunnels[i]?.a.name);
    expect(report.peers[0]).toMatchObject({
      publicKey: keyB.publicKey,
      pathKind: "static",
      loopback: endpoints[i],
      remote: `${LINK_B}:${tunnels[i]?.bPort}`,
    });
  }
  // Bytes came back through each (the kernel fast path's counters are read 4 times a second).
  for (const tunnel of tunnels) {
    await waitFor(async () => ((await statusOf(tunnel.a.name)).peers[0]?.rxBytes ?? 0) > 0, {
      what: `bytes received through ${tunnel.a.name}`,
    });
  }
  expect(proc.output()).toMatch(/"catchAllPort":51822/);

  // One metrics server for the process, with every interface's peers.
  const metrics = await nsRun(nsA, "curl", ["-s", "-m", "10", `http://${METRICS}/metrics`]);
  for (const tunnel of tunnels) expect(metrics).toContain(`interface="${tunnel.a.name}"`);

  // `release` without --interface gives every interface its real endpoint back (and run leaves them
  // there); SIGHUP reloads every interface, which takes them over again.
  const released = (await execFileAsync(process.execPath, [CLI, "release", "--run-dir", dirs.runDir])).stdout;
  for (const tunnel of tunnels) {
    expect(released).toContain(`tunnelbore released ${tunnel.a.name}: 1 real endpoint(s) given back`);
    expect(await tunnel.a.endpointOf(keyB.publicKey)).toBe(`${LINK_B}:${tunnel.bPort}`);
  }
  proc.child.kill("SIGHUP");
  for (const [i, tunnel] of tunnels.entries()) {
    await waitFor(async () => (await tunnel.a.endpointOf(keyB.publicKey)) === endpoints[i], {
      what: `${tunnel.a.name} at its loopback address again after SIGHUP`,
    });
  }
  await waitFor(
    () => {
      const reloaded = logsOf(proc).filter((l) => l.msg === "reloading: reading the interface again");
      return tunnels.every((t) => reloaded.some((l) => l.interface === t.a.name));
    },
    { what: "every interface reloaded" },
  );

  // A third interface, created while run runs, is picked up.
  const thirdKey = await generateKeyPair();
  const later = await makeTunnel(
    `tbo3${third.index}${tag}`,
    third.index,
    51840 + third.index,
    51830 + third.index,
    thirdKey,
  );
  await waitFor(async () => isLoopback(await later.a.endpointOf(thirdKey.publicKey)), {
    what: "the new interface's endpoint at loopback",
    timeoutMs: 20_000,
    intervalMs: 100,
  });
  await waitFor(() => ping(later), { what: "ping through the new interface", intervalMs: 50 });
  expect((await statusOf(later.a.name)).catchAll).toBe(`127.0.0.1:${third.catchAllPort}`);

  // `status` without --interface: one section per interface; in JSON, a list.
  const text = await statusCli(false);
  for (const tunnel of [first, second, later]) expect(text).toContain(`interface ${tunnel.a.name} `);
  const list = JSON.parse(await statusCli(true)) as StatusReport[];
  expect(list.map((r) => r.interface).sort()).toEqual([first.a.name, second.a.name, later.a.name]);

  // The third interface goes away: its instance stops and its control socket goes; the others serve on.
  await later.a.stop();
  const socket = controlSocketPath(dirs.runDir, later.a.name);
  await waitFor(() => !existsSync(socket), { what: "the removed interface let go", timeoutMs: 20_000 });
  expect(proc.output()).toMatch(/interface is gone: stopping its instance/);
  const after = JSON.parse(await statusCli(true)) as StatusReport[];
  expect(after.map((r) => r.interface)).toEqual([first.a.name, second.a.name]);
  // (Its fast path's unload must not reset route_localnet under the others: they share the parent.)
  for (const tunnel of tunnels) expect(await ping(tunnel), tunnel.a.name).toBe(true);

  if (mode === "separated") await crashSecondWorker(proc, endpoints[1] ?? "");

  // SIGTERM: every interface gets its real endpoint back, and run exits 0.
  expect(await proc.stop("SIGTERM")).toBe(0);
  tb = null;
  for (const tunnel of tunnels) {
    expect(await tunnel.a.endpointOf(keyB.publicKey)).toBe(`${LINK_B}:${tunnel.bPort}`);
  }
  expect(existsSync(join(dirs.runDir, `${first.a.name}.sock`))).toBe(false);
}

describe("run without --interface", () => {
  it("serves every interface (a worker each), follows a new one and a removed one, survives a worker's crash, and SIGTERM restores them all", async () => {
    await exercise("separated", { index: 3, catchAllPort: 51824 });
  }, 120_000);

  it("does the same in one process (--no-privsep), with the catch-all ports kept from the run before", async () => {
    await exercise("one process", { index: 4, catchAllPort: 51825 });
  }, 120_000);
});
