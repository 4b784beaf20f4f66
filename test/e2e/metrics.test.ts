// `--metrics` scraped from real processes in the lab: two `run`s behind NATs (one privilege-separated,
// whose parent serves the worker's status; one --no-privsep) and the introduction server. Values must
// change with traffic through the tunnel; /healthz answers; a busy metrics port is exit 2.

import { afterEach, describe, expect, it } from "vitest";
import { nsRun, spawnInNamespace, teardownAll } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { CLI } from "../lab/tunnelbore.js";
import { ProductLab } from "../lab/tunnelbore-lab.js";
import { waitFor } from "../support/wait-for.js";

const RUN_METRICS = "127.0.0.1:9101";
const INTRO_METRICS = "127.0.0.1:9102";
const PINGS = 20;

let lab: ProductLab | null = null;

afterEach(async () => {
  await lab?.teardown();
  lab = null;
  await teardownAll();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text format, sample lines only (label values here never hold quotes or commas). */
function parseMetrics(text: string): Sample[] {
  return text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!match) throw new Error(`not a sample line: ${line}`);
      const labels = Object.fromEntries(
        [...(match[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]),
      );
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
}

/** The sum of the samples named `name` whose labels include `labels`. */
function sum(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((total, s) => total + s.value, 0);
}

/** GET http://ADDRESS/PATH from inside namespace `ns`: status code and body. */
async function httpGet(ns: string, address: string, path: string): Promise<{ status: number; body: string }> {
  const out = await nsRun(ns, "curl", ["-s", "-m", "15", "-w", "\n%{http_code}", `http://${address}${path}`]);
  const cut = out.lastIndexOf("\n");
  return { status: Number(out.slice(cut + 1)), body: out.slice(0, cut) };
}

async function scrape(ns: string, address: string): Promise<Sample[]> {
  const { status, body } = await httpGet(ns, address, "/metrics");
  expect(status, body).toBe(200);
  return parseMetrics(body);
}

/** Runs the CLI once in `ns` and returns its exit code and output. */
async function cliOnce(ns: string, args: string[]): Promise<{ code: number | string; output: string }> {
  const proc = spawnInNamespace(ns, process.execPath, [CLI, ...args]);
  const timer = setTimeout(() => void proc.stop("SIGKILL"), 30_000);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, output: proc.output() };
}

describe("--metrics", () => {
  it("run and intro-server metrics follow the traffic; /healthz answers 200; a busy port is exit 2", async () => {
    // The lab's introduction server takes its --metrics from the environment (config sources).
    process.env.TUNNELBORE_INTRO_SERVER_METRICS = INTRO_METRICS;
    try {
      lab = await ProductLab.create({
        hosts: [
          { name: "a", nat: "eim", flags: ["--metrics", RUN_METRICS] },
          { name: "b", nat: "eim", flags: ["--metrics", RUN_METRICS, "--no-privsep"] },
        ],
        startTunnelbores: false,
      });
    } finally {
      delete process.env.TUNNELBORE_INTRO_SERVER_METRICS;
    }
    const serverNs = lab.lab.server.ns;
    const introBefore = await scrape(serverNs, INTRO_METRICS);
    expect(sum(introBefore, "tunnelbore_intro_connections", { state: "authenticated" })).toBe(0);
    expect((await httpGet(serverNs, INTRO_METRICS, "/healthz")).status).toBe(200);

    await lab.startTunnelbore("a");
    await lab.startTunnelbore("b");
    await lab.waitForPing("a", "b", 30_000);

    for (const [on, peer] of [
      ["a", "b"],
      ["b", "a"],
    ] as const) {
      const ns = lab.host(on).ns;
      const health = await httpGet(ns, RUN_METRICS, "/healthz");
      expect(health.status, health.body).toBe(200);
      expect((await httpGet(ns, RUN_METRICS, "/nothing-here")).status).toBe(404);

      const label = { interface: lab.host(on).wg.name, peer: lab.host(peer).keys.publicKey.slice(0, 8) };
      const before = await scrape(ns, RUN_METRICS);
      const result = await ping(ns, lab.host(peer).tunnelAddress, { count: PINGS, interval: 200 });
      expect(result.received, result.output).toBe(PINGS);
      // Kernel-carried datagrams reach the counters at the forwarder's next poll (250 ms; the parent's
      // copy under privilege separation one poll later): scrape until they are in.
      let after = await scrape(ns, RUN_METRICS);
      const rise = (name: string, direction: string) =>
        sum(after, name, { ...label, direction }) - sum(before, name, { ...label, direction });
      const allIn = () =>
        ["tx", "rx"].every((direction) => rise("tunnelbore_peer_datagrams_total", direction) >= PINGS);
      await waitFor(
        async () => {
          after = await scrape(ns, RUN_METRICS);
          return allIn();
        },
        { what: `${on}'s counters for ${peer} to rise by ${PINGS}`, timeoutMs: 5_000, intervalMs: 250 },
      ).catch(() => undefined);

      // Each echo request went out through the tunnel and each reply came back (kernel or user space).
      for (const direction of ["tx", "rx"]) {
        expect(rise("tunnelbore_peer_datagrams_total", direction)).toBeGreaterThanOrEqual(PINGS);
        // A WireGuard transport datagram is at least its 16-byte header and 16-byte tag.
        expect(rise("tunnelbore_peer_bytes_total", direction)).toBeGreaterThanOrEqual(PINGS * 32);
      }
      const status = await lab.peerStatus(on, peer);
      expect(status.pathKind).not.toBeNull();
      expect(sum(after, "tunnelbore_peer_path", { ...label, kind: status.pathKind! })).toBe(1);
      expect(sum(after, "tunnelbore_peer_path", label)).toBe(1);
      expect(sum(after, "tunnelbore_peer_state", { ...label, state: "connected" })).toBe(1);
      // The handshake that carried the pings is recent (the lab started moments ago).
      const age = after.find(
        (s) => s.name === "tunnelbore_peer_handshake_age_seconds" && s.labels.peer === label.peer,
      );
      expect(age?.value).toBeGreaterThanOrEqual(0);
      expect(age?.value).toBeLessThan(120);
      expect(
        sum(after, "tunnelbore_intro_connection_state", { interface: label.interface, state: "connected" }),
      ).toBe(1);
      expect(sum(after, "tunnelbore_forwarding_mode", { interface: label.interface })).toBe(1);
      expect(after.some((s) => s.name === "tunnelbore_drops_total")).toBe(true);
      expect(
        after.some((s) => s.name === "tunnelbore_peer_ice_restarts_total" && s.labels.peer === label.peer),
      ).toBe(true);
      expect(sum(after, "process_resident_memory_bytes")).toBeGreaterThan(0);
      console.log(
        `${on} -> ${peer}: ${status.pathKind} path, +${rise("tunnelbore_peer_datagrams_total", "tx")} tx / ` +
          `+${rise("tunnelbore_peer_datagrams_total", "rx")} rx datagrams for ${PINGS} pings ` +
          `(kernel, both ways: +${sum(after, "tunnelbore_peer_datagrams_total", { ...label, plane: "kernel" }) - sum(before, "tunnelbore_peer_datagrams_total", { ...label, plane: "kernel" })}), ` +
          `handshake ${age?.value} s old`,
      );
    }

    const introAfter = await scrape(serverNs, INTRO_METRICS);
    expect(sum(introAfter, "tunnelbore_intro_connections", { state: "authenticated" })).toBe(2);
    expect(sum(introAfter, "tunnelbore_intro_authentications_total")).toBeGreaterThanOrEqual(2);
    expect(sum(introAfter, "tunnelbore_intro_envelopes_relayed_total")).toBeGreaterThan(
      sum(introBefore, "tunnelbore_intro_envelopes_relayed_total"),
    );
    expect(sum(introAfter, "tunnelbore_intro_stun_answers_total")).toBeGreaterThan(0);
    expect(sum(introAfter, "tunnelbore_intro_turn_credentials_issued_total")).toBeGreaterThanOrEqual(2);

    // The metrics ports are held by the running processes: a second one on them stops with exit 2.
    const busyRun = await cliOnce(lab.host("a").ns, [
      "run",
      "--interface",
      "tbtnone0",
      "--run-dir",
      `${lab.host("a").dirs.runDir}-busy`,
      "--no-wait-for-interface",
      "--metrics",
      RUN_METRICS,
    ]);
    expect(busyRun.code, busyRun.output).toBe(2);
    expect(busyRun.output).toContain(RUN_METRICS);
    const busyIntro = await cliOnce(serverNs, [
      "intro-server",
      "--listen",
      "127.0.0.1:0",
      "--no-stun",
      "--metrics",
      INTRO_METRICS,
    ]);
    expect(busyIntro.code, busyIntro.output).toBe(2);
    expect(busyIntro.output).toContain(INTRO_METRICS);

    // Waiting for its interface, run is alive but not serving: /healthz says 503 and why.
    const waiting = spawnInNamespace(lab.host("a").ns, process.execPath, [
      CLI,
      "run",
      "--interface",
      "tbtwait0",
      "--run-dir",
      `${lab.host("a").dirs.runDir}-waiting`,
      "--wait-for-interface",
      "--metrics",
      "127.0.0.1:9105",
    ]);
    try {
      let health = { status: 0, body: "" };
      await waitFor(
        async () => {
          health = await httpGet(lab!.host("a").ns, "127.0.0.1:9105", "/healthz").catch(() => health);
          return health.status !== 0;
        },
        { what: "the waiting run's /healthz", timeoutMs: 20_000, intervalMs: 200 },
      );
      expect(health.status, health.body).toBe(503);
      expect(health.body).toContain("tbtwait0");
    } finally {
      await waiting.stop("SIGTERM");
    }
  }, 150_000);
});
