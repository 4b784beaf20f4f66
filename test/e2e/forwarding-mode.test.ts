// Where transport data is forwarded when the user asks for nothing: `tunnelbore run` without --ebpf uses
// the kernel fast path wherever it loads, and user space where it cannot (no bpftool; a kernel that
// refuses the program), saying why once in the log and in status; `--ebpf on` refuses to start without
// it, `--ebpf off` never loads it. Real wireguard-go on a static path (test/lab/linked-pair.ts).

import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PeerStatus } from "../../src/control/status.js";
import { createLinkedPair, type LinkedPair } from "../lab/linked-pair.js";
import { spawnInNamespace } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { CLI, startTunnelbore, type TunnelboreProcess } from "../lab/tunnelbore.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";
import { waitFor } from "../support/wait-for.js";

const execFileAsync = promisify(execFile);
const UNAVAILABLE = "kernel fast path unavailable: forwarding in user space";
const SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** A PATH whose directory links every system command but bpftool (as on a host without it). */
async function pathWithoutBpftool(dir: string): Promise<string> {
  const bin = join(dir, "bin");
  await mkdir(bin);
  const seen = new Set<string>();
  for (const source of SYSTEM_PATH) {
    const names = await readdir(source).catch(() => [] as string[]);
    for (const name of names) {
      if (name === "bpftool" || seen.has(name)) continue;
      seen.add(name);
      await symlink(join(source, name), join(bin, name));
    }
  }
  return bin;
}

/** A PATH that finds, first, a bpftool failing as it does when the kernel's verifier refuses a program. */
async function pathWithRefusingKernel(dir: string): Promise<string> {
  const bin = join(dir, "refusing");
  await mkdir(bin);
  const fake = join(bin, "bpftool");
  await writeFile(
    fake,
    "#!/bin/sh\necho \"libbpf: prog 'tunnelbore_fast_path': BPF program load failed: Invalid argument\" >&2\nexit 255\n",
  );
  await chmod(fake, 0o755);
  return [bin, ...SYSTEM_PATH].join(":");
}

function peerOf(pair: LinkedPair, report: { peers: PeerStatus[] }): PeerStatus {
  const p = report.peers.find((x) => x.publicKey === pair.keyB.publicKey);
  if (!p) throw new Error("peer B missing from status");
  return p;
}

/** Log lines (parsed) whose msg is `msg`. */
function logged(tb: TunnelboreProcess, msg: string): Array<Record<string, unknown>> {
  return tb.logs().filter((line) => line.msg === msg);
}

describe("forwarding mode: kernel by default, user space where the kernel path cannot load", () => {
  const fx = useTunnelbores(() => createLinkedPair("fwd"));
  let scratch: string;
  let noBpftool: string;
  let refusing: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "tbt-fwd-"));
    noBpftool = await pathWithoutBpftool(scratch);
    refusing = await pathWithRefusingKernel(scratch);
  });
  afterAll(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  /** What `tunnelbore status` prints for the interface. */
  async function statusText(iface: string): Promise<string> {
    const { stdout } = await execFileAsync(process.execPath, [
      CLI,
      "status",
      "--interface",
      iface,
      "--run-dir",
      fx.dirs.runDir,
    ]);
    return stdout;
  }

  /** Pings through the tunnel; resolves with the peer's status before and after. */
  async function pingThrough(tb: TunnelboreProcess): Promise<{ before: PeerStatus; after: PeerStatus }> {
    await fx.pair.waitForPing();
    const before = peerOf(fx.pair, await tb.status());
    const result = await ping(fx.pair.nsA, fx.pair.tunB, { count: 50, interval: 10 });
    expect(result.received).toBe(50);
    // Kernel counters are folded in about once a second.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    return { before, after: peerOf(fx.pair, await tb.status()) };
  }

  it("no flag: the kernel carries the peer's data, and status says so", async () => {
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs);
    fx.running.push(tb);
    await waitFor(async () => peerOf(fx.pair, await tb.status()).kernelFastPath, {
      what: "the kernel carries the peer",
    });
    const { before, after } = await pingThrough(tb);
    expect(after.kernelTxDatagrams - before.kernelTxDatagrams).toBeGreaterThanOrEqual(50);
    expect(after.kernelRxDatagrams - before.kernelRxDatagrams).toBeGreaterThanOrEqual(50);
    const { forwarding } = await tb.status();
    expect(forwarding).toMatchObject({
      setting: "auto",
      mode: "kernel",
      reason: null,
      userSpaceIo: "native",
    });
    expect(forwarding.interfaces).toContain("lo");
    expect(logged(tb, UNAVAILABLE)).toHaveLength(0);
    expect(await statusText(fx.pair.wgA.name)).toMatch(
      /^forwarding: kernel fast path on .*lo.*; user space .*: batched I\/O$/m,
    );
  });

  it.each([
    ["bpftool is missing", () => ({ PATH: noBpftool }), /bpftool/],
    ["the kernel refuses the program", () => ({ PATH: refusing }), /BPF program load failed/],
  ])("no flag, %s: user space forwards, and one warning and status say why", async (_, env, why) => {
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, [], env());
    fx.running.push(tb);
    const { before, after } = await pingThrough(tb);
    expect(after.kernelFastPath).toBe(false);
    expect(after.kernelTxDatagrams).toBe(0);
    // Every echo request and reply went through Tunnelbore's sockets.
    expect(after.txDatagrams - before.txDatagrams).toBeGreaterThanOrEqual(50);
    expect(after.rxDatagrams - before.rxDatagrams).toBeGreaterThanOrEqual(50);
    const { forwarding } = await tb.status();
    expect(forwarding).toMatchObject({ setting: "auto", mode: "user space", interfaces: [] });
    expect(forwarding.reason).toMatch(why);
    expect(await statusText(fx.pair.wgA.name)).toMatch(
      /^forwarding: user space, batched I\/O \(kernel fast path: .+\)$/m,
    );
    const warnings = logged(tb, UNAVAILABLE);
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]?.reason)).toMatch(why);
  });

  it("--ebpf on where the kernel refuses the program: exit 2, naming the reason", async () => {
    const on = spawnInNamespace(
      fx.pair.nsA,
      process.execPath,
      [
        CLI,
        "run",
        "--interface",
        fx.pair.wgA.name,
        "--run-dir",
        fx.dirs.runDir,
        "--state-dir",
        fx.dirs.stateDir,
        "--ebpf",
        "on",
      ],
      { PATH: refusing },
    );
    expect(await on.exited).toBe(2);
    expect(on.output()).toMatch(
      /--ebpf on: the kernel fast path cannot be loaded \(.*BPF program load failed/,
    );
    // It gave nothing away: WireGuard still has B's real endpoint.
    expect(await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).toBe(`${fx.pair.linkB}:51820`);
  });

  it("--ebpf off: user space, by request; --ebpf alone: on", async () => {
    const off = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf", "off"]);
    fx.running.push(off);
    const { after } = await pingThrough(off);
    expect(after.kernelFastPath).toBe(false);
    expect((await off.status()).forwarding).toMatchObject({ setting: "off", mode: "user space" });
    expect((await off.status()).forwarding.reason).toMatch(/--ebpf off/);
    await off.stop("SIGTERM");
    fx.running.length = 0;

    const on = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf"]);
    fx.running.push(on);
    expect((await on.status()).forwarding).toMatchObject({ setting: "on", mode: "kernel" });
  });
});
