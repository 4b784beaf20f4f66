// Endpoint changes in batches (issue 16): `wg set` chunks under ARG_MAX, the state file written once
// per batch, the privileged parent's per-peer validation of batch requests, and the worker's chunking.
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { MAX_BATCH, type Request } from "../../src/privsep/ipc-protocol.js";
import type { EndpointRefusal, LocalPrivilegedOps } from "../../src/privsep/privileged-ops.js";
import { PrivilegedServer } from "../../src/privsep/privileged-server.js";
import { RemotePrivilegedOps } from "../../src/privsep/remote-ops.js";
import { publicKeyOf } from "../../src/signalling/signalling-crypto.js";
import { EndpointState } from "../../src/wg/endpoint-state.js";
import {
  chunkEndpointChanges,
  type EndpointChange,
  type WireGuardInterfaceInfo,
} from "../../src/wg/wg-command.js";

const silent = createLogger("test", "silent");
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function changes(n: number): EndpointChange[] {
  // Random 32 bytes in base64 are as good a key here as a real one (and much quicker to make).
  return Array.from({ length: n }, (_, i) => ({
    publicKey: randomBytes(32).toString("base64"),
    endpoint: `127.${(i >> 8) & 255}.${i & 255}.1:51822`,
  }));
}

describe("chunkEndpointChanges", () => {
  it("keeps every change, in order, in chunks whose arguments stay under the limit", () => {
    const all = changes(10_000);
    const chunks = chunkEndpointChanges(all);
    expect(chunks.flat()).toEqual(all);
    expect(chunks.length).toBeGreaterThan(1);
    // Far fewer invocations than peers: about 1,500 peers each.
    expect(chunks.length).toBeLessThan(20);
    for (const chunk of chunks) {
      const bytes = chunk.reduce(
        (s, c) => s + 5 + c.publicKey.length + 1 + 9 + c.endpoint.length + 1 + 32,
        0,
      );
      expect(bytes).toBeLessThanOrEqual(192 << 10);
    }
  });

  it("gives one chunk to a few changes, and none to none", () => {
    expect(chunkEndpointChanges(changes(3))).toHaveLength(1);
    expect(chunkEndpointChanges([])).toEqual([]);
    // A change bigger than the limit still goes, alone.
    expect(chunkEndpointChanges(changes(2), 10)).toHaveLength(2);
  });
});

describe("EndpointState batches", () => {
  it("writes the file once per batch, and not at all when nothing changed", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tbt-state-"));
    dirs.push(dir);
    const state = new EndpointState(join(dir, "state"), "wg0");
    await state.load();
    const entries: [string, string][] = changes(2000).map((c, i) => [
      c.publicKey,
      `192.0.2.${i % 250}:51820`,
    ]);
    expect(await state.setMany(entries)).toEqual([]);
    const file = join(dir, "state", "wg0.endpoints.json");
    const first = await readFile(file, "utf8");
    expect(Object.keys(JSON.parse(first).peers)).toHaveLength(2000);
    await state.setMany(entries);
    expect(await readFile(file, "utf8")).toBe(first);
    await state.deleteMany(entries.slice(0, 1500).map(([key]) => key));
    const reloaded = new EndpointState(join(dir, "state"), "wg0");
    await reloaded.load();
    expect(reloaded.entries()).toEqual(entries.slice(1500));
    // No temporary file is left behind.
    expect(await readdir(join(dir, "state"))).toEqual(["wg0.endpoints.json"]);
  });
});

/** A parent whose interface has `peers`, recording what it would do. */
async function parentWith(peers: { publicKey: string; endpoint: string }[]) {
  const set: EndpointChange[] = [];
  const saved = new Map<string, string>();
  const info: WireGuardInterfaceInfo = {
    name: "wg0",
    privateKey: null,
    publicKey: null,
    listenPort: 51820,
    fwmark: 0,
    peers: peers.map(({ publicKey, endpoint }) => ({
      publicKey,
      endpoint,
      allowedIps: [],
      latestHandshake: 0,
      rxBytes: 0,
      txBytes: 0,
      persistentKeepalive: 0,
    })),
  };
  const ops = {
    readInterface: async () => info,
    readInterfaceChanges: async () => ({ info, changes: { read: 1, changed: info.peers, removed: [] } }),
    lastReadPeer: (key: string) => info.peers.find((p) => p.publicKey === key),
    setPeerEndpoints: async (batch: EndpointChange[]): Promise<EndpointRefusal[]> => {
      set.push(...batch);
      return [];
    },
    endpoints: {
      setMany: async (entries: [string, string][]) => {
        for (const [k, v] of entries) saved.set(k, v);
        return [];
      },
      deleteMany: async (keys: string[]) => {
        for (const k of keys) saved.delete(k);
      },
    },
  } as unknown as LocalPrivilegedOps;
  const server = new PrivilegedServer({ interfaceName: "wg0", ops, logger: silent });
  await server.handle({ op: "readInterface" });
  return { server, set, saved };
}

describe("batch requests to the privileged parent", () => {
  it("checks each change as a single one is checked, and carries out only those that pass", async () => {
    const [a, b] = [publicKeyOf(randomBytes(32)), publicKeyOf(randomBytes(32))];
    const stranger = publicKeyOf(randomBytes(32));
    const { server, set } = await parentWith([
      { publicKey: a, endpoint: "192.0.2.1:51820" },
      { publicKey: b, endpoint: "192.0.2.2:51820" },
    ]);
    const refused = (await server.handle({
      op: "setPeerEndpoints",
      changes: [
        { key: a, endpoint: "127.1.2.3:51822" },
        { key: stranger, endpoint: "127.1.2.4:51822" },
        { key: b, endpoint: "198.51.100.1:51820" },
        { key: b, endpoint: "127.0.0.1:51822\npeer x remove" },
      ],
    })) as EndpointRefusal[];
    expect(set).toEqual([{ publicKey: a, endpoint: "127.1.2.3:51822" }]);
    expect(refused.map((r) => r.publicKey)).toEqual([stranger, b, b]);
  });

  it("remembers only the real endpoints WireGuard showed, with the rest refused by name", async () => {
    const [a, b] = [publicKeyOf(randomBytes(32)), publicKeyOf(randomBytes(32))];
    const { server, saved } = await parentWith([
      { publicKey: a, endpoint: "192.0.2.1:51820" },
      { publicKey: b, endpoint: "127.9.9.9:51822" },
    ]);
    const refused = (await server.handle({
      op: "stateSetMany",
      entries: [
        { key: a, endpoint: "192.0.2.1:51820" },
        { key: b, endpoint: "127.9.9.9:51822" },
        { key: a, endpoint: "203.0.113.66:51820" },
      ],
    })) as EndpointRefusal[];
    expect([...saved]).toEqual([[a, "192.0.2.1:51820"]]);
    expect(refused.map((r) => r.publicKey)).toEqual([b, a]);
    await server.handle({ op: "stateDeleteMany", keys: [a] });
    expect(saved.size).toBe(0);
  });

  it("refuses a batch larger than MAX_BATCH as malformed", async () => {
    const { server, set } = await parentWith([]);
    const big = changes(MAX_BATCH + 1).map((c) => ({ key: c.publicKey, endpoint: c.endpoint }));
    await expect(server.handle({ op: "setPeerEndpoints", changes: big })).rejects.toThrow(/malformed/);
    expect(set).toHaveLength(0);
  });

  it("the worker sends thousands of changes in requests of at most MAX_BATCH, in order", async () => {
    const requests: Request[] = [];
    const remote = new RemotePrivilegedOps(async (request) => {
      requests.push(request);
      return [];
    }, silent);
    const all = changes(10_000);
    expect(await remote.setPeerEndpoints(all)).toEqual([]);
    expect(await remote.endpoints.setMany(all.map((c) => [c.publicKey, "192.0.2.1:51820"]))).toEqual([]);
    const sets = requests.filter((r) => r.op === "setPeerEndpoints");
    expect(sets).toHaveLength(Math.ceil(10_000 / MAX_BATCH));
    expect(sets.flatMap((r) => (r.op === "setPeerEndpoints" ? r.changes.map((c) => c.key) : []))).toEqual(
      all.map((c) => c.publicKey),
    );
    expect(requests.filter((r) => r.op === "stateSetMany")).toHaveLength(Math.ceil(10_000 / MAX_BATCH));
    expect(remote.endpoints.original(all[9999]!.publicKey)).toBe("192.0.2.1:51820");
  });
});
