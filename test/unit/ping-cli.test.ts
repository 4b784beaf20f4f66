// `tunnelbore ping` over a real control socket with a fake run behind it (in process: the CLI's own
// mapping of a ConfigError to exit 2 is main()'s): the prefix is resolved from status, each probe is
// one request, results stream, exit codes follow the answers (help and completion: cli-help.test.ts).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { pingCommand } from "../../src/commands/ping.js";
import { ControlServer } from "../../src/control/control-socket.js";
import type { PingAnswer, PingRequest } from "../../src/control/path-probe.js";
import type { StatusReport } from "../../src/control/status.js";
import { ConfigError, TunnelboreError } from "../../src/errors.js";

const KEY_A = `AbCdEf${"a".repeat(37)}=`;
const KEY_B = `AbCdXy${"b".repeat(37)}=`;

/** Runs pingCommand in process: its exit code (2 for a ConfigError, as main() maps it) and output. */
async function ping(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  try {
    return { code: await pingCommand(args), stdout, stderr: "" };
  } catch (err) {
    if (err instanceof TunnelboreError) {
      return { code: err instanceof ConfigError ? 2 : 1, stdout, stderr: err.message };
    }
    throw err;
  } finally {
    write.mockRestore();
  }
}

const base = mkdtempSync(join(tmpdir(), "tbt-ping-cli-"));
let server: ControlServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** A fake `run` on wg0 in a fresh run dir: status lists two peers, ping answers from `answers` in turn. */
async function fakeRun(answers: Array<(request: PingRequest) => PingAnswer>): Promise<{
  runDir: string;
  requests: PingRequest[];
}> {
  const runDir = mkdtempSync(join(base, "run-"));
  const requests: PingRequest[] = [];
  server = new ControlServer(join(runDir, "wg0.sock"), {
    status: () => ({ peers: [{ publicKey: KEY_A }, { publicKey: KEY_B }] }) as unknown as StatusReport,
    release: async () => ({ restored: 0 }),
    ping: async (request) => {
      requests.push(request);
      const answer = answers[Math.min(requests.length - 1, answers.length - 1)];
      if (!answer) throw new Error("no answer");
      return answer(request);
    },
  });
  await server.listen();
  return { runDir, requests };
}

const direct = { kind: "direct" as const, remote: "198.51.100.7:40000", kernel: false };
const answered =
  (rttMs: number | null) =>
  (r: PingRequest): PingAnswer => ({
    peer: r.peer,
    state: "connected(direct)",
    path: direct,
    live: true,
    rttMs,
  });

describe("tunnelbore ping against a control socket", () => {
  it("resolves the prefix, sends one request per probe and prints each, then the summary; exit 0", async () => {
    const { runDir, requests } = await fakeRun([answered(1.5), answered(null), answered(2.5)]);
    const result = await ping(["AbCdE", "-c", "3", "-i", "200", "-W", "300", "--run-dir", runDir]);
    expect(result.code).toBe(0);
    expect(requests).toEqual([
      { peer: KEY_A, timeoutMs: 300 },
      { peer: KEY_A, timeoutMs: 300 },
      { peer: KEY_A, timeoutMs: 300 },
    ]);
    expect(result.stdout).toBe(
      [
        `PING ${KEY_A} via direct 198.51.100.7:40000: STUN binding requests on the ICE pair`,
        "probe 1: answer from 198.51.100.7:40000: time=1.50 ms",
        "probe 2: no answer within 300 ms",
        "probe 3: answer from 198.51.100.7:40000: time=2.50 ms",
        `--- ${KEY_A} ping statistics ---`,
        "3 probes sent, 2 received, 33.3% loss, rtt min/avg/max = 1.50/2.00/2.50 ms",
        "",
      ].join("\n"),
    );
  });

  it("exits 1 with 100% loss when every probe is lost, and --json says so", async () => {
    const { runDir } = await fakeRun([answered(null)]);
    const result = await ping([KEY_B, "-c", "2", "-i", "200", "-W", "100", "--json", "--run-dir", runDir]);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      interface: "wg0",
      peer: KEY_B,
      live: true,
      sent: 2,
      received: 0,
      lossPercent: 100,
      rtt: null,
      reachable: false,
      path: direct,
    });
  });

  it("exits 1 when there is no path", async () => {
    const { runDir } = await fakeRun([(r) => ({ peer: r.peer, state: "signalling", path: null })]);
    const result = await ping(["AbCdX", "-c", "1", "--run-dir", runDir]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`PING ${KEY_B}: no path (signalling)`);
    expect(result.stdout).toContain("1 probes sent, 0 received, 100% loss");
  });

  it("reports a static path once, as no live probe, exit by the handshake's age", async () => {
    const staticPath = { kind: "static" as const, remote: "192.0.2.9:51820", kernel: true };
    const fresh = await fakeRun([
      (r) => ({
        peer: r.peer,
        state: "connected(static)",
        path: staticPath,
        live: false,
        handshakeRttMs: 3,
        handshakeAgeS: 10,
      }),
    ]);
    const ok = await ping(["AbCdE", "--run-dir", fresh.runDir]);
    expect(ok.code).toBe(0);
    expect(fresh.requests).toHaveLength(1);
    expect(ok.stdout).toContain("via static (kernel) 192.0.2.9:51820: static path, no live probe");
    expect(ok.stdout).toContain("not a live probe: latest handshake 10 s ago, its round trip 3.00 ms");
    await server?.close();
    const stale = await fakeRun([
      (r) => ({
        peer: r.peer,
        state: "connected(static)",
        path: staticPath,
        live: false,
        handshakeRttMs: null,
        handshakeAgeS: 900,
      }),
    ]);
    expect((await ping(["AbCdE", "--run-dir", stale.runDir])).code).toBe(1);
  });

  it("exits 2 for an unknown or ambiguous prefix, naming the candidates, and sends no probe", async () => {
    const { runDir, requests } = await fakeRun([answered(1)]);
    const unknown = await ping(["Qq", "--run-dir", runDir]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no peer of wg0 matches "Qq"');
    const ambiguous = await ping(["AbCd", "--run-dir", runDir]);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain(KEY_A);
    expect(ambiguous.stderr).toContain(KEY_B);
    expect(requests).toHaveLength(0);
  });

  it("exits 2 for bad usage", async () => {
    expect((await ping([])).code).toBe(2);
    expect((await ping(["a", "b"])).code).toBe(2);
    expect((await ping(["a", "-i", "50"])).code).toBe(2);
    expect((await ping(["a", "-W", "5000"])).code).toBe(2);
    expect((await ping(["a", "-c", "0"])).code).toBe(2);
    expect((await ping(["a", "--run-dir", join(base, "none")])).stderr).toMatch(
      /no tunnelbore run is active/,
    );
  });
});
