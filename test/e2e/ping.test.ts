// `tunnelbore ping PEER` (the built CLI) against real `tunnelbore run`s behind the lab's nftables NATs,
// with real wireguard-go: a direct path (carried by the kernel fast path where it loads), a relayed one
// (both sides behind symmetric NATs: only TURN connects them), a static path to a plain WireGuard, the
// peer's Tunnelbore SIGKILLed, and an unknown prefix. The CLI runs outside the namespaces: it only talks
// to the run's control socket (a file in its run directory).
import { execFile } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { teardownAll } from "../lab/netns.js";
import { CLI } from "../lab/tunnelbore.js";
import { ProductLab } from "../lab/tunnelbore-lab.js";
import { waitFor } from "../support/wait-for.js";

let lab: ProductLab | null = null;

afterEach(async () => {
  await lab?.teardown();
  lab = null;
  await teardownAll();
});

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `tunnelbore ping ...args` against `on`'s run; resolves with its exit code and output. */
function tunnelborePing(on: string, args: string[]): Promise<CliResult> {
  const tb = lab?.host(on).tunnelbore;
  if (!tb) throw new Error(`no tunnelbore on ${on}`);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, "ping", "--run-dir", tb.runDir, ...args],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The first `length` characters of `peer`'s public key. */
function prefixOf(peer: string, length = 8): string {
  if (!lab) throw new Error("no lab");
  return lab.host(peer).keys.publicKey.slice(0, length);
}

/** Waits until `on` reports a path of `kind` to `peer`, connected. */
async function waitForKind(on: string, peer: string, kind: string, timeoutMs: number): Promise<void> {
  await waitFor(
    async () => {
      const p = await lab?.peerStatus(on, peer);
      return p?.pathKind === kind && p.state === `connected(${kind})`;
    },
    { what: `${on} -> ${peer} connected(${kind})`, timeoutMs, intervalMs: 250 },
  );
}

const RTT_LINE = /^probe \d+: answer from \S+: time=\d+(\.\d+)? ms$/m;

describe("tunnelbore ping", () => {
  it("direct path: exit 0 with the kind, kernel where the fast path loads, and RTTs; then the peer's Tunnelbore is killed: exit 1, 100% loss; an unknown prefix exits 2", async () => {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", nat: "eim" },
      ],
    });
    await lab.waitForPing("a", "b");
    // Under load a relay pair may win the first nomination; the direct pair then takes over.
    await waitForKind("a", "b", "direct", 45_000);
    const kernel = (await lab.status("a")).forwarding;
    if (kernel.mode === "kernel") await lab.waitForKernelFastPath("a", "b", 10_000);
    else console.log(`kernel fast path not loaded here (${kernel.reason}): header checked without it`);

    // Run as root, `run` separates privileges: the parent relays ping to the worker.
    expect((await lab.status("a")).privileges?.mode).toBe("separated");
    const key = lab.host("b").keys.publicKey;
    const ok = await tunnelborePing("a", [prefixOf("b"), "-c", "3", "-i", "200"]);
    console.log(ok.stdout);
    expect(ok.code).toBe(0);
    const remote = (await lab.peerStatus("a", "b")).remote ?? "";
    const header = ok.stdout.split("\n")[0] ?? "";
    expect(header).toBe(
      `PING ${key} via direct${kernel.mode === "kernel" ? " (kernel)" : ""} ${remote}: STUN binding requests on the ICE pair`,
    );
    expect(ok.stdout).toMatch(RTT_LINE);
    expect(ok.stdout).toMatch(/3 probes sent, [1-3] received, .*rtt min\/avg\/max = /);

    // --json: the same, for programs.
    const json = await tunnelborePing("a", [prefixOf("b", 20), "-c", "2", "-i", "200", "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      peer: key,
      live: true,
      sent: 2,
      reachable: true,
      path: { kind: "direct", remote, kernel: kernel.mode === "kernel" },
    });

    const unknown = await tunnelborePing("a", ["nomatch", "-c", "1"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("no peer of");
    expect(unknown.stderr).toContain('matches "nomatch"');

    // The peer's Tunnelbore dies at once (no goodbye, its ICE agent gone). Traffic through the tunnel
    // makes liveness find out; once it has, ping finds nothing answering either.
    await lab.stopTunnelbore("b", "SIGKILL");
    await waitFor(
      async () => {
        await lab?.ping("a", "b", 200);
        return (await lab?.peerStatus("a", "b"))?.state !== "connected(direct)";
      },
      { what: "a no longer calls b connected", timeoutMs: 45_000, intervalMs: 0 },
    );
    const dead = await tunnelborePing("a", [prefixOf("b"), "-c", "3", "-i", "200", "-W", "500"]);
    console.log(dead.stdout);
    expect(dead.code).toBe(1);
    expect(dead.stdout).toMatch(/3 probes sent, 0 received, 100% loss/);
  }, 180_000);

  it("relayed path (symmetric NATs on both sides): the kind is relay; a run in one process answers too", async () => {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "symmetric", flags: ["--no-privsep"] },
        { name: "b", nat: "symmetric" },
      ],
    });
    await lab.waitForPing("a", "b", 40_000);
    await waitForKind("a", "b", "relay", 30_000);
    expect((await lab.status("a")).privileges?.mode).toBe("one process");
    const result = await tunnelborePing("a", [prefixOf("b"), "-c", "3", "-i", "200"]);
    console.log(result.stdout);
    expect(result.code).toBe(0);
    expect(result.stdout.split("\n")[0]).toMatch(/ via relay( \(kernel\))? \S+: STUN binding requests/);
    expect(result.stdout).toMatch(RTT_LINE);
  }, 150_000);

  it("static path to a plain WireGuard: the latest handshake, marked not a live probe, exit 0", async () => {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "s", nat: "none", tunnelbore: false },
      ],
    });
    await lab.waitForPing("a", "s");
    // Status learns WireGuard's handshake from `wg show`, re-read every 500 ms in the lab.
    await waitFor(async () => (await lab?.peerStatus("a", "s"))?.lastHandshake, {
      what: "a's handshake with s in status",
      intervalMs: 100,
    });
    const result = await tunnelborePing("a", [prefixOf("s")]);
    console.log(result.stdout);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`via static`);
    expect(result.stdout).toMatch(/not a live probe: latest handshake \d+ s ago/);
    expect(result.stdout).toContain("reachable: a handshake under 180 s old");
  }, 90_000);
});
