// A hub (issue 16): one wireguard-go interface with 1,000 peers with static endpoints, a few of them
// real (wireguard-go in namespaces of their own). Tunnelbore points every endpoint at loopback at start
// (in batches), carries traffic to and from the real ones, and gives every endpoint back on SIGTERM.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlSocketPath, requestStatus } from "../../src/control/control-socket.js";
import { createHub, type Hub } from "../lab/hub.js";
import { nsRun, spawnInNamespace, teardownAll } from "../lab/netns.js";
import { CLI, type TunnelboreDirs, tunnelboreDirs } from "../lab/tunnelbore.js";
import { waitFor } from "../support/wait-for.js";

const PEERS = 1000;
const REAL_PEERS = 3;

let hub: Hub;
let dirs: TunnelboreDirs;

beforeAll(async () => {
  hub = await createHub(PEERS, REAL_PEERS);
  dirs = tunnelboreDirs();
}, 120_000);

afterAll(async () => {
  await teardownAll();
  dirs?.cleanup();
});

const pingOnce = (ns: string, address: string) =>
  nsRun(ns, "ping", ["-c", "1", "-W", "1", address]).then(
    () => true,
    () => false,
  );

describe("a hub with 1,000 static peers", () => {
  it("points every endpoint at loopback, carries traffic both ways, and restores every endpoint on SIGTERM", async () => {
    const args = [
      CLI,
      "run",
      "--interface",
      hub.wg.name,
      "--run-dir",
      dirs.runDir,
      "--state-dir",
      dirs.stateDir,
    ];
    const tb = spawnInNamespace(hub.ns, process.execPath, [...args, "--log-level", "info"]);
    const socket = controlSocketPath(dirs.runDir, hub.wg.name);
    // Generous: a busy CI machine; how long it takes is measured in bench/hub.ts.
    await waitFor(async () => tb.child.exitCode !== null || (await requestStatus(socket)).ready, {
      what: "tunnelbore ready",
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    expect(tb.child.exitCode, tb.output().slice(-2000)).toBeNull();

    const atStart = await hub.currentEndpoints();
    expect(atStart.size).toBe(PEERS);
    const notLoopback = [...atStart].filter(([, endpoint]) => !endpoint.startsWith("127."));
    expect(notLoopback, "endpoints not at loopback").toEqual([]);
    // Every peer has its own L(P): no two endpoints alike.
    expect(new Set(atStart.values()).size).toBe(PEERS);
    const status = await requestStatus(socket);
    expect(status.peers).toHaveLength(PEERS);
    for (const peer of status.peers) expect(atStart.get(peer.publicKey)).toBe(peer.loopback);
    // Every real endpoint is remembered before WireGuard forgets it.
    const state = JSON.parse(readFileSync(join(dirs.stateDir, `${hub.wg.name}.endpoints.json`), "utf8")) as {
      peers: Record<string, string>;
    };
    expect(new Map(Object.entries(state.peers))).toEqual(hub.endpoints);

    // Where the kernel allows it, every static path goes to the fast path: the start set up the peers
    // in a bulk, whose entries follow it (user space forwards meanwhile).
    if (status.forwarding.mode === "kernel") {
      await waitFor(async () => (await requestStatus(socket)).peers.every((p) => p.kernelFastPath), {
        what: "every peer on the kernel fast path",
        timeoutMs: 30_000,
        intervalMs: 250,
      });
    }

    // Traffic both ways: the hub pings each real peer, and each real peer pings the hub.
    for (const real of hub.real) {
      await waitFor(() => pingOnce(hub.ns, real.tunnelAddress), {
        what: `hub to ${real.tunnelAddress}`,
        timeoutMs: 20_000,
        intervalMs: 50,
      });
      expect(await pingOnce(real.ns, hub.tunnelAddress)).toBe(true);
      const peer = (await requestStatus(socket)).peers.find((p) => p.publicKey === real.key.publicKey);
      expect(peer).toMatchObject({ pathKind: "static", remote: real.endpoint });
    }

    expect(await tb.stop("SIGTERM")).toBe(0);
    const atStop = await hub.currentEndpoints();
    const notRestored = [...hub.endpoints].filter(([key, endpoint]) => atStop.get(key) !== endpoint);
    expect(notRestored, "endpoints not restored").toEqual([]);
    // The restored peers are forgotten: nothing is left to restore after a crash.
    const after = JSON.parse(readFileSync(join(dirs.stateDir, `${hub.wg.name}.endpoints.json`), "utf8")) as {
      peers: Record<string, string>;
    };
    expect(Object.keys(after.peers)).toEqual([]);
  }, 180_000);
});
