// The --metrics HTTP server: /metrics, /healthz, 404 elsewhere, a busy port as a ConfigError; the flag
// on run and intro-server (command line and environment); the intro server's counters.
import { createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { introServerOptionsFromArgs } from "../../intro-server/cli.js";
import { PromIntroServerMetrics } from "../../intro-server/server-metrics.js";
import { parseRunArgs } from "../../src/commands/run.js";
import type { StatusReport } from "../../src/control/status.js";
import { ConfigError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import { parseMetricsAddress } from "../../src/metrics/metrics-address.js";
import { MetricsServer } from "../../src/metrics/metrics-server.js";
import { RunMetrics } from "../../src/metrics/run-metrics.js";
import { CloseCode } from "../../src/signalling/protocol.js";
import { statusReportFixture } from "../support/status-fixtures.js";

const logger = createLogger("test", "silent");
const servers: Array<{ close(): unknown }> = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

function minimalReport(ready: boolean): StatusReport {
  return statusReportFixture({ ready, waitingFor: ready ? null : "interface wg0 to appear" });
}

async function get(server: MetricsServer, path: string) {
  const response = await fetch(`http://${server.address}${path}`);
  return { status: response.status, type: response.headers.get("content-type"), body: await response.text() };
}

describe("MetricsServer for run", () => {
  it("serves Prometheus text at /metrics (process metrics included), health at /healthz, 404 elsewhere", async () => {
    let ready = false;
    const server = await MetricsServer.start(
      { host: "127.0.0.1", port: 0 },
      new RunMetrics(async () => [minimalReport(ready)]),
      logger,
    );
    servers.push(server);
    const metrics = await get(server, "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(metrics.body).toContain('tunnelbore_ready{interface="wg0"} 0');
    expect(metrics.body).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(metrics.body).toMatch(/^process_cpu_seconds_total \d/m);

    const waiting = await get(server, "/healthz");
    expect(waiting.status).toBe(503);
    expect(waiting.body).toContain("waiting for interface wg0 to appear");
    ready = true;
    expect((await get(server, "/healthz")).status).toBe(200);
    expect((await get(server, "/metrics")).body).toContain('tunnelbore_ready{interface="wg0"} 1');

    expect((await get(server, "/")).status).toBe(404);
    expect((await get(server, "/metrics/x")).status).toBe(404);
  });

  it("answers 503 when the status cannot be had (e.g. the worker is gone)", async () => {
    const server = await MetricsServer.start(
      { host: "127.0.0.1", port: 0 },
      new RunMetrics(async () => {
        throw new Error("the worker is not running");
      }),
      logger,
    );
    servers.push(server);
    const health = await get(server, "/healthz");
    expect(health.status).toBe(503);
    expect(health.body).toContain("the worker is not running");
    expect((await get(server, "/metrics")).status).toBe(503);
  });

  it("a busy port is a ConfigError naming the address", async () => {
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    servers.push({ close: () => new Promise((resolve) => holder.close(resolve)) });
    const port = (holder.address() as { port: number }).port;
    const start = MetricsServer.start({ host: "127.0.0.1", port }, new RunMetrics(async () => []), logger);
    await expect(start).rejects.toBeInstanceOf(ConfigError);
    await expect(start).rejects.toMatchObject({
      code: "metrics-port-busy",
      message: expect.stringContaining(`127.0.0.1:${port}`),
    });
  });
});

describe("--metrics", () => {
  it("takes IP:PORT, IPv6 in brackets, and refuses anything else", () => {
    expect(parseMetricsAddress("127.0.0.1:9101", "bad-usage")).toEqual({ host: "127.0.0.1", port: 9101 });
    expect(parseMetricsAddress("[::1]:9101", "bad-usage")).toEqual({ host: "::1", port: 9101 });
    for (const bad of ["9101", "localhost:9101", "127.0.0.1", "127.0.0.1:70000", "::1:9101", "[1.2.3.4]:1"])
      expect(() => parseMetricsAddress(bad, "bad-usage"), bad).toThrow(ConfigError);
  });

  it("run reads it from the command line and from TUNNELBORE_METRICS", () => {
    const flag = parseRunArgs(["--interface", "wg0", "--metrics", "127.0.0.1:9101"], {});
    expect(flag !== "help" && flag.metrics).toEqual({ host: "127.0.0.1", port: 9101 });
    const env = parseRunArgs(["--interface", "wg0"], { TUNNELBORE_METRICS: "[::1]:9102" });
    expect(env !== "help" && env.metrics).toEqual({ host: "::1", port: 9102 });
    const none = parseRunArgs(["--interface", "wg0"], {});
    expect(none !== "help" && none.metrics).toBeUndefined();
    expect(() => parseRunArgs(["--interface", "wg0", "--metrics", "nope"], {})).toThrow(/--metrics "nope"/);
  });

  it("intro-server reads it from the command line and from TUNNELBORE_INTRO_SERVER_METRICS", async () => {
    const flag = await introServerOptionsFromArgs(
      ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:9103"],
      {},
    );
    expect(flag !== "help" && flag.metricsAddress).toEqual({ host: "127.0.0.1", port: 9103 });
    const env = await introServerOptionsFromArgs(["--listen", "127.0.0.1:0"], {
      TUNNELBORE_INTRO_SERVER_METRICS: "127.0.0.1:9104",
    });
    expect(env !== "help" && env.metricsAddress).toEqual({ host: "127.0.0.1", port: 9104 });
    await expect(
      introServerOptionsFromArgs(["--listen", "127.0.0.1:0", "--metrics", "x:1"], {}),
    ).rejects.toBeInstanceOf(ConfigError);
  });
});

describe("PromIntroServerMetrics", () => {
  it("counts what the server tells it and reads live counts at scrape time", async () => {
    const metrics = new PromIntroServerMetrics();
    let authenticated = 2;
    metrics.observe({ authenticated: () => authenticated, unauthenticated: () => 1, stunAnswers: () => 7 });
    metrics.authenticated();
    metrics.authenticated();
    metrics.authFailed(CloseCode.authFailed);
    metrics.authFailed(CloseCode.authTimeout);
    metrics.authFailed(CloseCode.authTimeout);
    metrics.authFailed(CloseCode.serverShutdown);
    metrics.relayed();
    metrics.refused("undeliverable");
    metrics.turnIssued();
    metrics.membershipRefused("revoked");
    metrics.capRefused({ cap: "connections", scope: "address" });
    authenticated = 3;
    const text = await metrics.registry.metrics();
    expect(text).toContain('tunnelbore_intro_connections{state="authenticated"} 3');
    expect(text).toContain('tunnelbore_intro_connections{state="unauthenticated"} 1');
    expect(text).toContain("tunnelbore_intro_authentications_total 2");
    expect(text).toContain('tunnelbore_intro_authentication_failures_total{reason="authFailed"} 1');
    expect(text).toContain('tunnelbore_intro_authentication_failures_total{reason="authTimeout"} 2');
    expect(text).not.toContain('reason="serverShutdown"');
    expect(text).toContain("tunnelbore_intro_envelopes_relayed_total 1");
    expect(text).toContain('tunnelbore_intro_envelopes_refused_total{reason="undeliverable"} 1');
    expect(text).toContain("tunnelbore_intro_stun_answers_total 7");
    expect(text).toContain("tunnelbore_intro_turn_credentials_issued_total 1");
    expect(text).toContain('tunnelbore_intro_membership_refusals_total{when="revoked"} 1');
    expect(text).toContain('tunnelbore_intro_cap_refusals_total{cap="connections",scope="address"} 1');
  });

  it("is healthy only while serving", async () => {
    const metrics = new PromIntroServerMetrics();
    expect((await metrics.health()).healthy).toBe(false);
    metrics.serving = true;
    expect(await metrics.health()).toEqual({ healthy: true, text: "ok: serving" });
  });
});
