// A local user (uid 65534) who binds Tunnelbore's ports first: the catch-all (run fails, saying who
// holds it and what to do) and a peer's L(P) (run goes on with another candidate; WireGuard is pointed
// only at a socket Tunnelbore holds, never left at the squatter's).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loopbackAddressOf } from "../../src/proxy/loopback-address.js";
import { createNamespace, generateKeyPair, teardownAll, uniqueTag } from "../lab/netns.js";
import { CLI, startTunnelbore, type TunnelboreDirs, tunnelboreDirs } from "../lab/tunnelbore.js";
import { startWireGuard, type WireGuardInterface } from "../lab/wireguard.js";
import { startUdpSquatter } from "../support/udp-squatter.js";
import { waitFor } from "../support/wait-for.js";

const execFileAsync = promisify(execFile);
const PORT_HOLDER = new URL("../../dist/src/proxy/port-holder.js", import.meta.url).pathname;

let ns: string;
let wg: WireGuardInterface;
let dirs: TunnelboreDirs;

beforeAll(async () => {
  ns = await createNamespace(`tbt-squat-${uniqueTag()}`);
  const keys = await generateKeyPair();
  wg = await startWireGuard(ns, { privateKey: keys.privateKey, listenPort: 51820, address: "10.97.0.1/24" });
  dirs = tunnelboreDirs();
});

afterAll(async () => {
  await teardownAll();
  dirs?.cleanup();
});

/** Who holds udp `address:port` in the namespace, as Tunnelbore's own lookup sees it. */
async function holdersInNamespace(
  address: string,
  port: number,
): Promise<Array<{ uid: number; processes: Array<{ pid: number; program: string }> }>> {
  const script = `import(${JSON.stringify(PORT_HOLDER)}).then((m) => m.findUdpPortHolders(${JSON.stringify(address)}, ${port})).then((h) => console.log(JSON.stringify(h)))`;
  const { stdout } = await execFileAsync("ip", ["netns", "exec", ns, process.execPath, "-e", script]);
  return JSON.parse(stdout) as Array<{ uid: number; processes: Array<{ pid: number; program: string }> }>;
}

describe("port squatting", () => {
  it("a squatted catch-all: run exits 2 naming the holder and --listen", async () => {
    const squatter = await startUdpSquatter("127.0.0.1", [51821], ["ip", "netns", "exec", ns]);
    try {
      const run = await execFileAsync(
        "ip",
        [
          "netns",
          "exec",
          ns,
          process.execPath,
          CLI,
          "run",
          "--interface",
          wg.name,
          "--run-dir",
          dirs.runDir,
          "--state-dir",
          dirs.stateDir,
        ],
        { timeout: 30_000 },
      ).then(
        () => ({ code: 0, stderr: "" }),
        (err: { code: number; stderr: string }) => err,
      );
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(
        new RegExp(
          `127\\.0\\.0\\.1:51821 is already in use by uid 65534 \\(nobody\\), pid ${squatter.pid} \\(node\\).*--listen ADDR:PORT`,
        ),
      );
    } finally {
      await squatter.stop();
    }
  });

  it("a squatted L(P): WireGuard is taken from the squatter's socket to one Tunnelbore holds", async () => {
    const peer = await generateKeyPair();
    const home = loopbackAddressOf(Buffer.from(peer.publicKey, "base64"));
    // WireGuard still points at the peer's usual L(P) (as after a restart), and a local user grabbed it,
    // and every port the allocator used to fall back to on that address.
    const squatted = Array.from({ length: 64 }, (_, i) => 51822 + i);
    const squatter = await startUdpSquatter(home, squatted, ["ip", "netns", "exec", ns]);
    await wg.setPeer({ publicKey: peer.publicKey, allowedIps: "10.97.0.2/32", endpoint: `${home}:51822` });
    const tb = await startTunnelbore(ns, wg.name, dirs);
    try {
      let endpoint = "";
      await waitFor(
        async () => {
          endpoint = await wg.endpointOf(peer.publicKey);
          return endpoint !== `${home}:51822`;
        },
        { what: "WireGuard's endpoint moved off the squatted L(P)", timeoutMs: 30_000, intervalMs: 200 },
      );
      const [address = "", port = ""] = endpoint.split(":");
      expect(address).toMatch(/^127\./);
      expect(address === home && squatted.includes(Number(port))).toBe(false);
      // The process that bound L(P) (the worker, under privilege separation) says so in its log.
      const added = tb.logs().find((line) => line.msg === "peer added" && line.peer === peer.publicKey);
      expect(added?.loopback).toBe(endpoint);
      const holders = await holdersInNamespace(address, Number(port));
      expect(holders).toHaveLength(1);
      expect(holders[0]?.processes).toEqual([{ pid: added?.pid, program: "node" }]);
      expect(added?.pid).not.toBe(squatter.pid);
      expect(tb.process.output()).toMatch(
        new RegExp(`${home.replace(/\./g, "\\.")}:51822 is held by uid 65534`),
      );
      const status = await tb.status();
      expect(status.peers.find((p) => p.publicKey === peer.publicKey)?.loopback).toBe(endpoint);
    } finally {
      await tb.stop();
      await squatter.stop();
    }
  });
});
