// Privilege separation of `tunnelbore run` (DESIGN §6): the process that holds the WebSocket to the
// introduction server and the ICE sockets runs with a non-zero uid and no capabilities, and does not
// hold the WireGuard private key, while WireGuard still gets its endpoints set to L(P), the peers ping,
// and the kernel fast path is loaded. The worker, every thread of it and what it starts run under the
// seccomp filter (src/syscall-filter.ts), and the worker is not dumpable; the parent is neither. A
// worker that dies takes the parent down with exit 1, after the parent gave WireGuard its real
// endpoints back.
import { spawnSync } from "node:child_process";
import { open, readdir, readFile, stat } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { createLinkedPair } from "../lab/linked-pair.js";
import { nsRun } from "../lab/netns.js";
import { childrenOf } from "../lab/process-tree.js";
import { CLI, startTunnelbore, type TunnelboreProcess } from "../lab/tunnelbore.js";
import { labPerTest } from "../support/lab-per-test.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";
import { waitFor } from "../support/wait-for.js";

interface Privileges {
  uid: number;
  capEff: bigint;
  capPrm: bigint;
  noNewPrivs: boolean;
  /** 0 none, 2 a seccomp filter. */
  seccomp: number;
}

async function privilegesOf(pid: number): Promise<Privileges> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(status)?.[1] ?? "";
  return {
    uid: Number(field("Uid")),
    capEff: BigInt(`0x${field("CapEff")}`),
    capPrm: BigInt(`0x${field("CapPrm")}`),
    noNewPrivs: field("NoNewPrivs") === "1",
    seccomp: Number(field("Seccomp")),
  };
}

/** The seccomp mode of each of the process's threads. */
async function threadsSeccomp(pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`);
  return Promise.all(tasks.map(async (tid) => (await privilegesOf(Number(tid))).seccomp));
}

/** The worker: the parent's child that runs node. */
function workerOf(tb: TunnelboreProcess): number {
  const parent = tb.process.child.pid ?? -1;
  const workers = childrenOf(parent).filter((p) => p.comm === "node");
  if (workers.length !== 1) throw new Error(`expected one worker of ${parent}, found ${workers.length}`);
  return workers[0]!.pid;
}

interface SocketLine {
  proto: string;
  state: string;
  local: string;
  peer: string;
  pids: number[];
}

/** Every TCP and UDP socket in the namespace with the processes holding it (`ss -tunap`). */
async function socketsIn(ns: string): Promise<SocketLine[]> {
  const out = await nsRun(ns, "ss", ["-tunapH"]);
  return out
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [proto = "", state = "", , , local = "", peer = ""] = line.split(/\s+/);
      const pids = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
      return { proto, state, local, peer, pids };
    });
}

/**
 * Whether `needle` appears anywhere in the process's writable memory (read through /proc/PID/mem, as
 * root may): the heap, the stacks, OpenSSL's allocations.
 */
async function memoryContains(pid: number, needles: Buffer[]): Promise<boolean> {
  const maps = await readFile(`/proc/${pid}/maps`, "utf8");
  const mem = await open(`/proc/${pid}/mem`, "r");
  try {
    for (const line of maps.split("\n")) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) rw/.exec(line);
      if (!m || line.includes("[vvar") || line.includes("[vsyscall")) continue;
      const start = Number.parseInt(m[1]!, 16);
      const length = Number.parseInt(m[2]!, 16) - start;
      const chunk = 16 << 20;
      for (let offset = 0; offset < length; offset += chunk - 64) {
        const size = Math.min(chunk, length - offset);
        const buffer = Buffer.alloc(size);
        const { bytesRead } = await mem.read(buffer, 0, size, start + offset).catch(() => ({ bytesRead: 0 }));
        const read = buffer.subarray(0, bytesRead);
        if (needles.some((needle) => read.includes(needle))) return true;
      }
    }
    return false;
  } finally {
    await mem.close();
  }
}

describe("privilege separation with ICE behind NATs and the kernel fast path", () => {
  const createLab = labPerTest();

  it("the process holding the WebSocket and the ICE sockets has no root, no capabilities, no private key", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "eim", flags: ["--ebpf"] },
        { name: "b", nat: "eim", flags: ["--ebpf"] },
      ],
    });
    await lab.waitForPing("a", "b", 60_000);
    await lab.waitForKernelFastPath("a", "b", 20_000);
    const a = lab.host("a");
    const b = lab.host("b");
    const tb = a.tunnelbore!;
    const status = await tb.status();
    expect(status.forwarding.mode).toBe("kernel");
    expect(status.privileges?.mode).toBe("separated");
    // WireGuard's endpoint for b was set (by the privileged parent) to b's L(P).
    expect(await a.wg.endpointOf(b.keys.publicKey)).toMatch(/^127\.\d+\.\d+\.\d+:\d+$/);

    const parent = tb.process.child.pid ?? -1;
    const worker = workerOf(tb);
    const sockets = await socketsIn(a.ns);
    const ours = sockets.filter((s) => s.pids.includes(parent) || s.pids.includes(worker));
    const webSocket = ours.filter(
      (s) => s.proto === "tcp" && s.state === "ESTAB" && s.peer.endsWith(":8443"),
    );
    const ice = ours.filter((s) => s.proto === "udp" && !s.local.startsWith("127."));
    expect(webSocket).toHaveLength(1);
    expect(ice.length).toBeGreaterThan(0);
    // Every socket that meets the network is the worker's; the parent has none at all.
    for (const s of [...webSocket, ...ice]) expect(s.pids).toEqual([worker]);
    expect(ours.filter((s) => s.pids.includes(parent))).toEqual([]);

    const seen = await privilegesOf(worker);
    expect(seen.uid).not.toBe(0);
    expect(seen.uid).toBe(status.privileges?.uid);
    expect(seen.capEff).toBe(0n);
    expect(seen.capPrm).toBe(0n);
    expect(seen.noNewPrivs).toBe(true);
    expect((await privilegesOf(parent)).uid).toBe(0);
    // The syscall filter: on every thread of the worker and on what it started (`ip monitor`), and
    // not on the parent, which loads BPF programs.
    expect(status.privileges?.syscallFilter).toEqual({ on: true, reason: null });
    const threads = await threadsSeccomp(worker);
    expect(threads.length).toBeGreaterThan(4);
    expect(threads.every((mode) => mode === 2)).toBe(true);
    const started = childrenOf(worker);
    expect(started.length).toBeGreaterThan(0);
    for (const p of started) expect((await privilegesOf(p.pid)).seccomp).toBe(2);
    expect((await privilegesOf(parent)).seccomp).toBe(0);
    // Not dumpable: another process of the worker's user (nobody may be shared) cannot read its
    // environment or memory; its /proc entries are root's.
    expect((await stat(`/proc/${worker}/mem`)).uid).toBe(0);
    const sameUser = ["setpriv", `--reuid=${seen.uid}`, `--regid=${seen.uid}`, "--clear-groups"];
    const peek = spawnSync(sameUser[0]!, [...sameUser.slice(1), "cat", `/proc/${worker}/environ`]);
    expect(peek.status).not.toBe(0);
    expect(peek.stderr.toString()).toMatch(/Permission denied/);

    // The private key is in the parent's memory (which shows the search finds it) and not the worker's.
    const key = Buffer.from(a.keys.privateKey, "base64");
    const needles = [key, Buffer.from(a.keys.privateKey, "latin1")];
    expect(await memoryContains(parent, needles)).toBe(true);
    expect(await memoryContains(worker, needles)).toBe(false);
  }, 240_000);
});

describe("privilege separation on a static path", () => {
  const fx = useTunnelbores(() => createLinkedPair("privsep"));

  it("a worker that dies: the parent restores WireGuard's real endpoint and exits 1", async () => {
    const real = `${fx.pair.linkB}:51820`;
    expect(await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).toBe(real);
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs);
    fx.running.push(tb);
    await waitFor(async () => (await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).startsWith("127."), {
      what: "endpoint at L(P)",
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    await fx.pair.waitForPing(20_000);
    expect((await tb.status()).privileges?.mode).toBe("separated");
    // `tunnelbore status`, run by root, gets its answer from the parent's control socket (relayed).
    const statusArgs = [CLI, "status", "--interface", fx.pair.wgA.name, "--run-dir", fx.dirs.runDir];
    const text = await nsRun(fx.pair.nsA, process.execPath, statusArgs);
    expect(text).toMatch(
      /privilege separation: worker runs as \S+ \(uid [1-9]\d*\) with no capabilities and a syscall filter/,
    );
    const json = JSON.parse(await nsRun(fx.pair.nsA, process.execPath, [...statusArgs, "--json"]));
    expect(json.privileges).toMatchObject({ mode: "separated", reason: null });

    process.kill(workerOf(tb), "SIGKILL");
    expect(await tb.process.exited).toBe(1);
    fx.running.length = 0;
    expect(await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).toBe(real);
    expect(tb.process.output()).toMatch(/worker exited unexpectedly/);
  }, 120_000);

  it("under no_new_privs (the unit's NoNewPrivileges=yes): worker, fast path, endpoints and restore all work", async () => {
    const real = `${fx.pair.linkB}:51820`;
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf", "on"], {}, [
      "setpriv",
      "--no-new-privs",
    ]);
    fx.running.push(tb);
    const parent = tb.process.child.pid ?? -1;
    expect((await privilegesOf(parent)).noNewPrivs).toBe(true);
    await waitFor(async () => (await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).startsWith("127."), {
      what: "endpoint at L(P), set by wg under no_new_privs",
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    await fx.pair.waitForPing(20_000);
    const status = await tb.status();
    // tc and bpftool ran, the program loaded, and setpriv switched the worker to its user.
    expect(status.forwarding.mode).toBe("kernel");
    expect(status.privileges?.mode).toBe("separated");
    const worker = await privilegesOf(workerOf(tb));
    expect(worker.uid).not.toBe(0);
    expect(worker.capEff).toBe(0n);
    // Pinging meanwhile: the first ping may have gone through user space, before the entry was in.
    await waitFor(
      async () => {
        await fx.pair.waitForPing(2000).catch(() => undefined);
        return (await tb.status()).peers[0]?.kernelTxDatagrams !== 0;
      },
      {
        what: "the kernel carrying the ping",
        timeoutMs: 10_000,
      },
    );
    expect(await tb.stop("SIGTERM")).toBe(0);
    fx.running.length = 0;
    expect(await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).toBe(real);
  }, 120_000);

  it("--no-privsep runs as one process, and status says so", async () => {
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--no-privsep"]);
    fx.running.push(tb);
    await fx.pair.waitForPing(20_000);
    const status = await tb.status();
    expect(status.privileges).toEqual({ mode: "one process", user: null, uid: null, reason: null });
    expect(childrenOf(tb.process.child.pid ?? -1).filter((p) => p.comm === "node")).toEqual([]);
    expect(await tb.stop("SIGTERM")).toBe(0);
    fx.running.length = 0;
    expect(await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).toBe(`${fx.pair.linkB}:51820`);
  }, 120_000);
});
