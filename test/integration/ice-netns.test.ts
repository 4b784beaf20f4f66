// Candidate filtering against real interfaces: a namespace with a LAN-like link (tb0/tb1), an interface
// named wg0 holding tunnel addresses, and one named veth*. Two IceSessions run in one process inside
// the namespace; all their traffic stays in it.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNamespace, nsRun, teardownAll, uniqueTag } from "../lab/netns.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));

const SCRIPT = `
import { createCandidateFilter } from ${JSON.stringify(join(repo, "src/ice/candidate-filter.ts"))};
import { IceSession } from ${JSON.stringify(join(repo, "src/ice/ice-session.ts"))};

const filtered = process.argv[2] === "filtered";
const exclude = filtered
  ? createCandidateFilter({ excludeInterfaces: ["wg0"], excludeAddresses: ["10.77.0.0/16"] })
  : () => false;
const hosts = { a: new Set(), b: new Set() };
let a, b;
const channel = (from, to) => (m) => {
  if (m.t === "candidate") hosts[from].add(m.candidate.split(" ")[4]);
  const copy = JSON.parse(JSON.stringify(m));
  setImmediate(() => to().handleSignal(copy));
};
const common = { stunUrls: [], excludeAddresses: exclude, connectTimeoutMs: 8000 };
a = new IceSession({ ...common, controlling: true, sendSignal: channel("a", () => b) });
b = new IceSession({ ...common, controlling: false, sendSignal: channel("b", () => a) });
const t0 = performance.now();
const paths = Promise.all([a, b].map((s) => new Promise((resolve, reject) => {
  s.once("path", resolve);
  s.once("failed", (f) => reject(new Error(JSON.stringify(f))));
})));
b.start();
a.start();
const [pa, pb] = await paths;
const ms = performance.now() - t0;
let ab = 0;
let ba = 0;
pb.onDatagram = () => ab++;
pa.onDatagram = () => ba++;
for (let i = 0; i < 20; i++) {
  pa.send(Buffer.alloc(100, 1));
  pb.send(Buffer.alloc(100, 2));
}
const deadline = Date.now() + 3000;
while ((ab < 20 || ba < 20) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
console.log(JSON.stringify({
  hostsA: [...hosts.a].sort(),
  hostsB: [...hosts.b].sort(),
  kind: pa.kind,
  selected: a.selectedPair,
  ab,
  ba,
  ms,
}));
await Promise.all([a.close(), b.close()]);
`;

interface Result {
  hostsA: string[];
  hostsB: string[];
  kind: string;
  selected: { local: string; remote: string; localType: string };
  ab: number;
  ba: number;
  ms: number;
}

let ns: string;
let dir: string;
let script: string;

beforeAll(async () => {
  ns = await createNamespace(`tbt-ice-${uniqueTag()}`);
  const ip = (...args: string[]) => nsRun(ns, "ip", args);
  // A LAN-like link, the tunnel interface, and one werift skips by name.
  await ip("link", "add", "tb0", "type", "veth", "peer", "name", "tb1");
  await ip("link", "add", "wg0", "type", "veth", "peer", "name", "wg0p");
  await ip("link", "add", "veth-x", "type", "veth", "peer", "name", "veth-y");
  await ip("addr", "add", "10.99.0.1/24", "dev", "tb0");
  await ip("addr", "add", "10.99.0.2/24", "dev", "tb1");
  await ip("addr", "add", "10.77.0.1/24", "dev", "wg0");
  await ip("addr", "add", "fd77::1/64", "dev", "wg0", "nodad");
  await ip("addr", "add", "10.55.0.1/24", "dev", "veth-x");
  for (const dev of ["tb0", "tb1", "wg0", "wg0p", "veth-x", "veth-y"]) await ip("link", "set", dev, "up");
  dir = await mkdtemp(join(tmpdir(), "tbt-ice-netns-"));
  script = join(dir, "pair.mts"); // .mts: ESM (top-level await) outside any package.json
  await writeFile(script, SCRIPT);
});

afterAll(async () => {
  await teardownAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function runPair(mode: "filtered" | "unfiltered"): Promise<Result> {
  const out = await nsRun(ns, process.execPath, ["--import", "tsx", script, mode]);
  const line = out.trim().split("\n").at(-1) ?? "";
  return JSON.parse(line) as Result;
}

describe("candidate filtering on real interfaces (network namespace)", () => {
  it("without a filter, werift offers the tunnel interface's addresses (but skips veth*)", async () => {
    const r = await runPair("unfiltered");
    expect(r.hostsA).toContain("10.77.0.1");
    expect(r.hostsA).toContain("fd77::1");
    expect(r.hostsA).toContain("10.99.0.1");
    expect(r.hostsA).not.toContain("10.55.0.1");
    expect(r.hostsA).not.toContain("127.0.0.1");
  });

  it("with wg0 excluded, no tunnel address is offered and the path runs over the LAN link", async () => {
    const r = await runPair("filtered");
    console.log(
      `netns connect (start -> path): ${r.ms.toFixed(1)} ms, pair ${r.selected.local} -> ${r.selected.remote}`,
    );
    for (const hosts of [r.hostsA, r.hostsB]) {
      expect(hosts.length).toBeGreaterThan(0);
      expect(hosts).not.toContain("10.77.0.1");
      expect(hosts).not.toContain("fd77::1");
      expect(hosts.every((h) => h.startsWith("10.99.0."))).toBe(true);
    }
    expect(r.kind).toBe("direct");
    expect(r.selected.remote).toMatch(/^10\.99\.0\.[12]:\d+$/);
    expect(r.ab).toBe(20);
    expect(r.ba).toBe(20);
  });
});
