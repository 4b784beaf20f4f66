// A real wireguard-go read through its UAPI socket (src/wg/uapi-socket.ts, no `wg` process) gives
// exactly what `wg show IF dump` gives, for every kind of field: IPv4 and IPv6 endpoints, none, several
// allowed IPs, a preshared key (not kept), keepalive, fwmark.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalPrivilegedOps } from "../../src/privsep/privileged-ops.js";
import { InterfaceReader } from "../../src/wg/interface-reader.js";
import { UapiSocket } from "../../src/wg/uapi-socket.js";
import { parseDump, type WireGuardInterfaceInfo } from "../../src/wg/wg-command.js";
import { createNamespace, generateKeyPair, nsRun, teardownAll, uniqueTag } from "../lab/netns.js";
import { startWireGuard, type WireGuardInterface } from "../lab/wireguard.js";

let wg: WireGuardInterface;
let ns: string;
let stateDir: string;

beforeAll(async () => {
  ns = await createNamespace(`tbt-uapi-${uniqueTag()}`);
  const [self, a, b, c] = await Promise.all([1, 2, 3, 4].map(() => generateKeyPair()));
  wg = await startWireGuard(ns, {
    privateKey: self!.privateKey,
    listenPort: 51820,
    address: "10.77.0.1/24",
    peers: [
      {
        publicKey: a!.publicKey,
        allowedIps: "10.77.0.2/32,10.78.0.0/16",
        endpoint: "192.0.2.7:51820",
        persistentKeepalive: 25,
      },
      { publicKey: b!.publicKey, allowedIps: "10.77.0.3/32,fd00:77::3/128", endpoint: "[2001:db8::3]:4500" },
      { publicKey: c!.publicKey, allowedIps: "10.77.0.4/32" },
    ],
  });
  const dir = mkdtempSync(join(tmpdir(), "tbt-uapi-psk-"));
  try {
    writeFileSync(join(dir, "psk"), `${(await generateKeyPair()).privateKey}\n`, { mode: 0o600 });
    await nsRun(ns, "wg", [
      "set",
      wg.name,
      "fwmark",
      "0xca6c",
      "peer",
      a!.publicKey,
      "preshared-key",
      join(dir, "psk"),
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  stateDir = mkdtempSync(join(tmpdir(), "tbt-uapi-state-"));
}, 60_000);

afterAll(async () => {
  await teardownAll();
  rmSync(stateDir, { recursive: true, force: true });
});

/** Peers in key order, allowed IPs sorted: the two outputs need not list them alike. */
function normal(info: WireGuardInterfaceInfo): WireGuardInterfaceInfo {
  const peers = info.peers
    .map((p) => ({ ...p, allowedIps: [...p.allowedIps].sort() }))
    .sort((p, q) => (p.publicKey < q.publicKey ? -1 : 1));
  return { ...info, peers };
}

describe("reading wireguard-go through its UAPI socket", () => {
  it("gives what wg show dump gives", async () => {
    const answer = await new UapiSocket().read(wg.name);
    expect(answer).not.toBeNull();
    const fromSocket = new InterfaceReader(wg.name).readUapi(answer as Buffer);
    const fromDump = parseDump(wg.name, await nsRun(ns, "wg", ["show", wg.name, "dump"]));
    expect(fromSocket.peers).toHaveLength(3);
    expect(fromSocket.fwmark).toBe(0xca6c);
    expect(normal(fromSocket)).toEqual(normal(fromDump));
  });

  it("is how the interface is read: no `wg` needed while the socket answers", async () => {
    const ops = new LocalPrivilegedOps({
      interfaceName: wg.name,
      stateDir,
      logger: pino({ level: "silent" }),
    });
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      const info = await ops.readInterface();
      expect(info.peers).toHaveLength(3);
      expect(info.listenPort).toBe(51820);
    } finally {
      process.env.PATH = path;
    }
  });
});
