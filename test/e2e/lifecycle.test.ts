// The WireGuard lifecycle around a running Tunnelbore, with real wireguard-go (and wg-quick) in network
// namespaces: an interface that appears late, SIGHUP, wg-quick's SaveConfig, a peer that reaches
// WireGuard directly, permissions; and a status that tells the truth (a silent static peer, an
// unreachable introduction server).
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlSocketPath, requestStatus } from "../../src/control/control-socket.js";
import type { StatusReport } from "../../src/control/status.js";
import { wgFailure } from "../../src/wg/wg-command.js";
import { createLinkedPair, type LinkedPair } from "../lab/linked-pair.js";
import {
  createNamespace,
  generateKeyPair,
  nsRun,
  type SpawnedProcess,
  spawnInNamespace,
  teardownAll,
  uniqueTag,
} from "../lab/netns.js";
import { CLI, startTunnelbore, type TunnelboreDirs, tunnelboreDirs } from "../lab/tunnelbore.js";
import { startWireGuard, uniqueInterfaceName } from "../lab/wireguard.js";
import { waitFor } from "../support/wait-for.js";

const execFileAsync = promisify(execFile);
const dirs: TunnelboreDirs[] = [];

function freshDirs(): TunnelboreDirs {
  const d = tunnelboreDirs();
  dirs.push(d);
  return d;
}

afterAll(async () => {
  await teardownAll();
  for (const d of dirs) d.cleanup();
});

/** `tunnelbore ARGS` inside a namespace; never throws (the exit code says how it went). */
async function cli(ns: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(
      "ip",
      ["netns", "exec", ns, process.execPath, CLI, ...args],
      {
        timeout: 20_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** `tunnelbore run` without waiting for it to be ready (it may be waiting for its interface). */
function spawnRun(
  ns: string,
  iface: string,
  d: TunnelboreDirs,
  extra: string[],
  env: NodeJS.ProcessEnv = {},
) {
  const proc = spawnInNamespace(
    ns,
    process.execPath,
    [CLI, "run", "--interface", iface, "--run-dir", d.runDir, "--state-dir", d.stateDir, ...extra],
    env,
  );
  const status = () => requestStatus(controlSocketPath(d.runDir, iface));
  return { proc, status };
}

const peerOf = (report: StatusReport, publicKey: string) =>
  report.peers.find((p) => p.publicKey === publicKey);

describe("an interface that does not exist yet", () => {
  it("is waited for with --wait-for-interface (status says so), then served; SIGTERM restores its endpoint", async () => {
    const ns = await createNamespace(`tbt-wait-${uniqueTag()}`);
    const iface = uniqueInterfaceName();
    const d = freshDirs();
    const run = spawnRun(ns, iface, d, ["--wait-for-interface", "--poll-interval", "300"]);
    const waiting = await waitFor(
      async () => {
        if (run.proc.child.exitCode !== null) throw new Error(`tunnelbore exited: ${run.proc.output()}`);
        const report = await run.status();
        return report.waitingFor ? report : null;
      },
      { what: "status saying it waits", timeoutMs: 15_000 },
    );
    expect(waiting.ready).toBe(false);
    expect(waiting.waitingFor).toContain(iface);
    const keys = await generateKeyPair();
    const peer = await generateKeyPair();
    const wg = await startWireGuard(
      ns,
      {
        privateKey: keys.privateKey,
        listenPort: 51820,
        address: "10.98.0.1/24",
        peers: [{ publicKey: peer.publicKey, allowedIps: "10.98.0.2/32", endpoint: "192.0.2.7:51820" }],
      },
      iface,
    );
    // startWireGuard sets the listen port before the peer: Tunnelbore may start on the interface
    // without its peer and pick the peer up at its next read.
    const ready = await waitFor(
      async () => {
        const report = await run.status();
        return report.ready && peerOf(report, peer.publicKey) ? report : null;
      },
      { what: "tunnelbore serving the interface and its peer", timeoutMs: 15_000 },
    );
    expect(ready.waitingFor).toBeNull();
    const loopback = peerOf(ready, peer.publicKey)?.loopback;
    expect(loopback).toBeDefined();
    await waitFor(async () => (await wg.endpointOf(peer.publicKey)) === loopback, {
      what: "endpoint at L(P)",
    });
    expect(await run.proc.stop("SIGTERM")).toBe(0);
    expect(await wg.endpointOf(peer.publicKey)).toBe("192.0.2.7:51820");
  });

  it("is waited for by default when systemd runs it, and stops cleanly on SIGTERM while waiting", async () => {
    const ns = await createNamespace(`tbt-wait-${uniqueTag()}`);
    const iface = uniqueInterfaceName();
    const run = spawnRun(ns, iface, freshDirs(), [], { INVOCATION_ID: "0123456789abcdef" });
    await waitFor(async () => Boolean((await run.status()).waitingFor), {
      what: "waiting",
      timeoutMs: 15_000,
    });
    expect(await run.proc.stop("SIGTERM")).toBe(0);
  });

  it("is a configuration error (exit 2) from the command line without the flag", async () => {
    const ns = await createNamespace(`tbt-wait-${uniqueTag()}`);
    const d = freshDirs();
    const r = await cli(ns, [
      "run",
      "--interface",
      uniqueInterfaceName(),
      "--run-dir",
      d.runDir,
      "--state-dir",
      d.stateDir,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/does not exist/);
  });
});

describe("permissions", () => {
  it("EPERM on the interface is reported as such, not as a missing interface", async () => {
    const ns = await createNamespace(`tbt-perm-${uniqueTag()}`);
    const keys = await generateKeyPair();
    const wg = await startWireGuard(ns, {
      privateKey: keys.privateKey,
      listenPort: 51820,
      address: "10.98.0.1/24",
    });
    // The real `wg` without privileges: what it prints is what the classification must understand.
    const unprivileged = async (name: string) => {
      const r = await execFileAsync("ip", [
        "netns",
        "exec",
        ns,
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "wg",
        "show",
        name,
        "dump",
      ]).then(
        () => null,
        (err: { code: number; stderr: string }) => err,
      );
      if (!r) throw new Error("wg succeeded without privileges");
      return wgFailure(name, ["show", name, "dump"], r.code, r.stderr.trim());
    };
    const denied = await unprivileged(wg.name);
    expect(denied.code).toBe("not-permitted");
    expect(denied.message).toMatch(/CAP_NET_ADMIN/);
    const root = await nsRun(ns, "wg", ["show", "tbtnosuchif0", "dump"]).then(
      () => null,
      (err: Error) => err.message,
    );
    expect(root).not.toBeNull();
    const missing = wgFailure("tbtnosuchif0", ["show"], 1, root ?? "");
    expect(missing.code).toBe("interface-missing");
  });
});

describe("signals and endpoints", () => {
  let pair: LinkedPair;

  beforeAll(async () => {
    pair = await createLinkedPair("life");
  });

  it("SIGHUP re-reads the interface at once and keeps running; release gives the real endpoint back until SIGHUP", async () => {
    const d = freshDirs();
    // A poll interval too long to matter: only SIGHUP can make it see the new peer.
    const tb = await startTunnelbore(pair.nsA, pair.wgA.name, d, ["--poll-interval", "600000"]);
    const b = pair.keyB.publicKey;
    const loopbackB = peerOf(await tb.status(), b)?.loopback;
    await waitFor(async () => (await pair.wgA.endpointOf(b)) === loopbackB, { what: "B's endpoint at L(P)" });
    const c = await generateKeyPair();
    await pair.wgA.setPeer({
      publicKey: c.publicKey,
      allowedIps: "10.99.0.3/32",
      endpoint: "10.201.0.3:51820",
    });
    tb.process.child.kill("SIGHUP");
    const report = await waitFor(
      async () => {
        const r = await tb.status();
        return peerOf(r, c.publicKey) ? r : null;
      },
      { what: "the peer added before SIGHUP" },
    );
    const loopbackC = peerOf(report, c.publicKey)?.loopback;
    await waitFor(async () => (await pair.wgA.endpointOf(c.publicKey)) === loopbackC, { what: "C at L(P)" });
    expect(tb.process.child.exitCode).toBeNull();

    const released = await cli(pair.nsA, ["release", "--interface", pair.wgA.name, "--run-dir", d.runDir]);
    expect(released.code).toBe(0);
    expect(released.stdout).toMatch(/2 real endpoint/);
    expect(await pair.wgA.endpointOf(b)).toBe(`${pair.linkB}:51820`);
    expect(await pair.wgA.endpointOf(c.publicKey)).toBe("10.201.0.3:51820");
    tb.process.child.kill("SIGHUP"); // manage them again
    await waitFor(async () => (await pair.wgA.endpointOf(b)) === loopbackB, {
      what: "B at L(P) after SIGHUP",
    });
    await pair.waitForPing();
    expect(await tb.stop()).toBe(0);
    await nsRun(pair.nsA, "wg", ["set", pair.wgA.name, "peer", c.publicKey, "remove"]);
  });

  it("SIGHUP after --config FILE changed says which options changed (a restart applies them); a broken file is an error, and it runs on", async () => {
    const d = freshDirs();
    const config = join(d.runDir, "..", "run.yaml");
    writeFileSync(config, "idle-timeout: 10m\nlog-format: json\n");
    const tb = await startTunnelbore(pair.nsA, pair.wgA.name, d, ["--config", config]);
    const said = (pattern: RegExp) => tb.logs().filter((l) => pattern.test(String(l.msg)));
    tb.process.child.kill("SIGHUP");
    await waitFor(async () => said(/reloading: reading the interface again/).length >= 1, {
      what: "a reload",
    });
    expect(said(/configuration changed|no longer reads/)).toEqual([]);

    writeFileSync(config, "idle-timeout: 20m\nlog-format: pretty\n");
    tb.process.child.kill("SIGHUP");
    await waitFor(async () => said(/configuration changed/).length >= 1, { what: "the change said" });
    const [changed] = said(/configuration changed/);
    expect(changed?.level).toBe("warn");
    expect(changed?.msg).toMatch(/\(--idle-timeout, --log-format\): it takes effect at the next start/);

    writeFileSync(config, 'idle-timeout: "20m\n');
    tb.process.child.kill("SIGHUP");
    await waitFor(async () => said(/no longer reads/).length >= 1, { what: "the broken file said" });
    const [broken] = said(/no longer reads/);
    expect(broken?.level).toBe("error");
    expect(broken?.msg).toMatch(/run\.yaml:\d+: not valid YAML/);
    expect((await tb.status()).ready).toBe(true);
    expect(await tb.stop()).toBe(0);
  });

  it("release without a running tunnelbore restores from its state file (after a SIGKILL)", async () => {
    const d = freshDirs();
    const tb = await startTunnelbore(pair.nsA, pair.wgA.name, d);
    const b = pair.keyB.publicKey;
    const loopbackB = peerOf(await tb.status(), b)?.loopback;
    await waitFor(async () => (await pair.wgA.endpointOf(b)) === loopbackB, { what: "B at L(P)" });
    await tb.stop("SIGKILL");
    expect(await pair.wgA.endpointOf(b)).toBe(loopbackB);
    const r = await cli(pair.nsA, [
      "release",
      "--interface",
      pair.wgA.name,
      "--run-dir",
      d.runDir,
      "--state-dir",
      d.stateDir,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/no tunnelbore running/);
    expect(await pair.wgA.endpointOf(b)).toBe(`${pair.linkB}:51820`);
  });

  it("a peer that reaches WireGuard directly is left there after one rewrite (bypassed), not fought over", async () => {
    const d = freshDirs();
    const tb = await startTunnelbore(pair.nsA, pair.wgA.name, d, ["--poll-interval", "200"]);
    const b = pair.keyB.publicKey;
    const loopbackB = peerOf(await tb.status(), b)?.loopback;
    await waitFor(async () => (await pair.wgA.endpointOf(b)) === loopbackB, { what: "B at L(P)" });
    // B (no Tunnelbore) sends straight to A's WireGuard port, every second.
    await pair.wgB.setPeer({
      publicKey: pair.keyA.publicKey,
      allowedIps: `${pair.tunA}/32`,
      endpoint: `${pair.linkA}:51820`,
      persistentKeepalive: 1,
    });
    await nsRun(pair.nsB, "ping", ["-c", "1", "-W", "1", pair.tunA]).catch(() => undefined);
    const bypassed = await waitFor(
      async () => {
        const p = peerOf(await tb.status(), b);
        return p?.state === "bypassed" ? p : null;
      },
      { what: "B marked bypassed", timeoutMs: 20_000 },
    );
    expect(bypassed.remote).toBe(`${pair.linkB}:51820`);
    // Ten polls of the interface later (every 200 ms), WireGuard still has B's own address: the window
    // of time is what is under test here, so it is slept through.
    for (let i = 0; i < 10; i++) {
      expect(await pair.wgA.endpointOf(b)).toBe(`${pair.linkB}:51820`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(peerOf(await tb.status(), b)?.state).toBe("bypassed");
    await pair.waitForPing();
    expect(await tb.stop()).toBe(0);
    // B forgets A's WireGuard port (and its session): it is a peer without Tunnelbore again.
    await nsRun(pair.nsB, "wg", ["set", pair.wgB.name, "peer", pair.keyA.publicKey, "remove"]);
    await pair.wgB.setPeer({ publicKey: pair.keyA.publicKey, allowedIps: `${pair.tunA}/32` });
  });
});

describe("status tells the truth", () => {
  let pair: LinkedPair;

  beforeAll(async () => {
    pair = await createLinkedPair("truth");
  });

  it("a static peer that stops answering is not connected: suspect while WireGuard gets nothing back", async () => {
    const d = freshDirs();
    const tb = await startTunnelbore(pair.nsA, pair.wgA.name, d);
    const b = pair.keyB.publicKey;
    await pair.waitForPing();
    await waitFor(async () => peerOf(await tb.status(), b)?.state === "connected(static)", {
      what: "connected(static)",
    });
    await nsRun(
      pair.nsB,
      "nft",
      ["-f", "-"],
      "table inet tbtlife {\n  chain in {\n    type filter hook input priority 0; policy drop;\n  }\n}\n",
    );
    try {
      const silent = await waitFor(
        async () => {
          await pair.pingOnce();
          const p = peerOf(await tb.status(), b);
          return p?.state === "suspect" ? p : null;
        },
        { what: "B suspect", timeoutMs: 20_000 },
      );
      expect(silent.pathKind).toBe("static");
    } finally {
      await nsRun(pair.nsB, "nft", ["delete", "table", "inet", "tbtlife"]);
    }
    await pair.waitForPing(20_000);
    await waitFor(async () => peerOf(await tb.status(), b)?.state === "connected(static)", {
      what: "connected(static) again",
    });
    expect(await tb.stop()).toBe(0);
  });

  it("status shows an unreachable introduction server: retrying, with the errno", async () => {
    const d = freshDirs();
    const tb = await startTunnelbore(pair.nsA, pair.wgA.name, d, ["--intro", "ws://127.0.0.1:9"]);
    const intro = await waitFor(
      async () => {
        const i = (await tb.status()).intro;
        return i?.state === "retrying" ? i : null;
      },
      { what: "intro retrying" },
    );
    expect(intro.url).toBe("ws://127.0.0.1:9");
    expect(intro.failures).toBeGreaterThan(0);
    expect(intro.lastError).toMatch(/ECONNREFUSED/);
    expect(await tb.stop()).toBe(0);
  });
});

describe("wg-quick with SaveConfig", () => {
  let ns: string;
  let nsB: string;
  let workDir: string;
  let peerB: { privateKey: string; publicKey: string };

  beforeAll(async () => {
    const tag = uniqueTag();
    ns = await createNamespace(`tbt-wgq-a-${tag}`);
    nsB = await createNamespace(`tbt-wgq-b-${tag}`);
    await nsRun(ns, "ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsB]);
    await nsRun(ns, "ip", ["addr", "add", "10.202.0.1/24", "dev", "eth0"]);
    await nsRun(nsB, "ip", ["addr", "add", "10.202.0.2/24", "dev", "eth0"]);
    await nsRun(ns, "ip", ["link", "set", "eth0", "up"]);
    await nsRun(nsB, "ip", ["link", "set", "eth0", "up"]);
    peerB = await generateKeyPair();
    workDir = mkdtempSync(join(tmpdir(), "tbt-wgq-"));
    // The hook as users write it names `tunnelbore`: a wrapper of that name runs the built CLI.
    writeFileSync(join(workDir, "tunnelbore"), `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, {
      mode: 0o755,
    });
  });

  afterAll(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  /** `wg-quick up` of a config file for a fresh interface, driving wireguard-go. */
  async function wgQuickUp(hook: boolean): Promise<{ iface: string; file: string; down(): Promise<void> }> {
    const iface = uniqueInterfaceName("tbq");
    const d = freshDirs();
    const keys = await generateKeyPair();
    const file = join(workDir, `${iface}.conf`);
    writeFileSync(
      file,
      [
        "[Interface]",
        `PrivateKey = ${keys.privateKey}`,
        "ListenPort = 51820",
        "Address = 10.99.7.1/24",
        "SaveConfig = true",
        ...(hook
          ? [
              `PreDown = ${join(workDir, "tunnelbore")} release --interface %i --run-dir ${d.runDir} --state-dir ${d.stateDir}`,
            ]
          : []),
        "",
        "[Peer]",
        `PublicKey = ${peerB.publicKey}`,
        "AllowedIPs = 10.99.7.2/32",
        "Endpoint = 10.202.0.2:51820",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    const env = { ...process.env, WG_QUICK_USERSPACE_IMPLEMENTATION: "wireguard-go", WG_HIDE_KEYS: "never" };
    await execFileAsync("ip", ["netns", "exec", ns, "wg-quick", "up", file], { env });
    let down = false;
    const wgQuickDown = async () => {
      if (down) return;
      down = true;
      await execFileAsync("ip", ["netns", "exec", ns, "wg-quick", "down", file], { env });
    };
    dirsByIface.set(iface, d);
    return { iface, file, down: wgQuickDown };
  }
  const dirsByIface = new Map<string, TunnelboreDirs>();

  it("is warned about in status without the release hook", async () => {
    const up = await wgQuickUp(false);
    let tb: SpawnedProcess | null = null;
    try {
      const d = dirsByIface.get(up.iface) as TunnelboreDirs;
      const started = await startTunnelbore(ns, up.iface, d, ["--wg-quick-config", up.file]);
      tb = started.process;
      const report = await started.status();
      expect(report.warnings).toHaveLength(1);
      expect(report.warnings[0]).toMatch(/SaveConfig/);
      expect(report.warnings[0]).toMatch(/PreDown = tunnelbore release --interface %i/);
      expect(await started.stop()).toBe(0);
    } finally {
      await tb?.stop();
      await up.down();
    }
  });

  it("with the hook, wg-quick down saves the real endpoint, not Tunnelbore's 127.x", async () => {
    const up = await wgQuickUp(true);
    let tb: SpawnedProcess | null = null;
    try {
      const d = dirsByIface.get(up.iface) as TunnelboreDirs;
      const started = await startTunnelbore(ns, up.iface, d, ["--wg-quick-config", up.file]);
      tb = started.process;
      const report = await started.status();
      expect(report.warnings).toEqual([]);
      const loopback = peerOf(report, peerB.publicKey)?.loopback;
      await waitFor(
        async () => (await nsRun(ns, "wg", ["show", up.iface, "endpoints"])).includes(loopback ?? "?"),
        { what: "endpoint at L(P)" },
      );
      await up.down();
      const saved = readFileSync(up.file, "utf8");
      expect(saved).toMatch(/Endpoint = 10\.202\.0\.2:51820/);
      expect(saved).not.toMatch(/Endpoint = 127\./);
      // Tunnelbore waits for the interface to come back, and is stopped cleanly.
      expect(await started.stop()).toBe(0);
    } finally {
      await tb?.stop();
      await up.down();
    }
  });
});
