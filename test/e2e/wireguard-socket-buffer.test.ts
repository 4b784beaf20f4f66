// A real wireguard-go's socket buffer as `tunnelbore run` sees it (src/wg/receive-buffer-check.ts):
// the Debian default (208 KiB) warned about once at start, in one line, and shown by `status` with its
// drops; 7 MiB as current wireguard-go sets (14 MiB as the kernel counts) shown and not warned about;
// a recreated wireguard-go looked at again. Tunnelbore only reads the socket: the lab's helper
// (test/lab/socket-buffers.ts) sets its sizes from outside, as wireguard-go itself would.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createNamespace, generateKeyPair, nsRun, teardownAll, uniqueTag } from "../lab/netns.js";
import { setUdpSocketBuffers, WIREGUARD_GO_SOCKET_BUFFER } from "../lab/socket-buffers.js";
import {
  CLI,
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "../lab/tunnelbore.js";
import { startWireGuard, uniqueInterfaceName, type WireGuardInterface } from "../lab/wireguard.js";
import { waitFor } from "../support/wait-for.js";

/** Debian 12's wireguard-go keeps the kernel's default: 212,992 bytes where rmem_default is as shipped. */
const DEBIAN_DEFAULT = 212992;
/** Each test's own wireguard-go, on a port of its own. */
const PORT = 51820;
const RECREATED_PORT = 51830;
const ONE_PROCESS_PORT = 51840;
const WARNING = /WireGuard's socket has a .* receive buffer, under 1 MiB/;

let ns: string;
let dirs: TunnelboreDirs;
const running: TunnelboreProcess[] = [];

/** wireguard-go named `name` (its UAPI socket is shared by all namespaces), with Debian's buffers. */
async function wireguardGo(name: string, port: number): Promise<WireGuardInterface> {
  const [self, peer] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const wg = await startWireGuard(
    ns,
    {
      privateKey: self.privateKey,
      listenPort: port,
      address: "10.88.0.1/24",
      peers: [{ publicKey: peer.publicKey, allowedIps: "10.88.0.2/32" }],
    },
    name,
  );
  // Whatever this host's net.core.rmem_default: the size Debian's wireguard-go has (setsockopt halves).
  expect(await setUdpSocketBuffers(wg.process.child.pid!, DEBIAN_DEFAULT / 2)).toBe(2);
  return wg;
}

function warnings(tb: TunnelboreProcess): Array<Record<string, unknown>> {
  return tb.logs().filter((l) => WARNING.test(String(l.msg)));
}

function statusText(name: string): Promise<string> {
  return nsRun(ns, process.execPath, [CLI, "status", "--interface", name, "--run-dir", dirs.runDir]);
}

/** Datagrams to wireguard-go's IPv4 socket while it is stopped, so that its 208 KiB buffer overflows. */
/** Status once its `wireguardSocket` passes `ready` (the parent shares a read younger than 2 s). */
async function statusWhen(
  tb: TunnelboreProcess,
  what: string,
  ready: (socket: Awaited<ReturnType<TunnelboreProcess["status"]>>["wireguardSocket"]) => boolean,
): ReturnType<TunnelboreProcess["status"]> {
  let status = await tb.status();
  await waitFor(
    async () => {
      status = await tb.status();
      return ready(status.wireguardSocket);
    },
    { what, timeoutMs: 5000, intervalMs: 200 },
  );
  return status;
}

async function overflow(wg: WireGuardInterface): Promise<void> {
  const pid = wg.process.child.pid!;
  process.kill(pid, "SIGSTOP");
  try {
    const send = `const s = require("node:dgram").createSocket("udp4"); let n = 0;
      const next = () => n++ < 1000 ? s.send(Buffer.alloc(1200), ${PORT}, "127.0.0.1", next) : s.close();
      next();`;
    await nsRun(ns, process.execPath, ["-e", send]);
  } finally {
    process.kill(pid, "SIGCONT");
  }
}

beforeAll(async () => {
  ns = await createNamespace(`tbt-sockbuf-${uniqueTag()}`);
  dirs = tunnelboreDirs();
}, 30_000);

afterEach(async () => {
  for (const tb of running.splice(0)) await tb.stop("SIGTERM");
});

afterAll(async () => {
  await teardownAll();
  dirs?.cleanup();
});

describe("WireGuard's socket buffer, userspace WireGuard", () => {
  it("208 KiB: one warning at start, status shows it and its drops; 7 MiB: shown, not warned about", async () => {
    const name = uniqueInterfaceName("tbtsb");
    const wg = await wireguardGo(name, PORT);
    const tb = await startTunnelbore(ns, name, dirs);
    running.push(tb);
    await waitFor(() => warnings(tb).length > 0, {
      what: "the small buffer's warning",
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    const [line] = warnings(tb);
    // Logged by the privileged parent, which reads the interface (the worker only asks it).
    expect(line?.pid).toBe(tb.process.child.pid);
    expect(line).toMatchObject({
      level: "warn",
      interface: name,
      port: PORT,
      receiveBufferBytes: DEBIAN_DEFAULT,
    });
    expect(String(line?.msg)).toMatch(/Upgrade wireguard-go .* or raise net\.core\.rmem_default/);

    const before = await tb.status();
    expect(before.privileges?.mode).toBe("separated"); // read by the parent, shown by the worker's status
    expect(before.wireguardSocket).toMatchObject({
      port: PORT,
      receiveBufferBytes: DEBIAN_DEFAULT,
      unknown: null,
    });
    // Both of wireguard-go's sockets: IPv4 and IPv6.
    expect(before.wireguardSocket?.sockets.map((s) => s.local).sort()).toEqual([
      `0.0.0.0:${PORT}`,
      `[::]:${PORT}`,
    ]);

    await overflow(wg);
    const dropped = await statusWhen(tb, "drops in status", (socket) => (socket?.drops ?? 0) > 0);
    expect(dropped.wireguardSocket?.drops).toBeGreaterThan(0);
    const text = await statusText(name);
    expect(text).toMatch(/^wireguard socket: 208 KiB receive buffer, [\d,]+ dropped \(under 1 MiB/m);
    expect(text).toContain(`${dropped.wireguardSocket?.drops?.toLocaleString("en-US")} dropped`);

    // As current wireguard-go sets its own (SO_RCVBUFFORCE 7 MiB; the kernel counts twice that).
    expect(await setUdpSocketBuffers(wg.process.child.pid!, WIREGUARD_GO_SOCKET_BUFFER)).toBe(2);
    const after = await statusWhen(
      tb,
      "the new buffer in status",
      (socket) => socket?.receiveBufferBytes !== DEBIAN_DEFAULT,
    );
    expect(after.wireguardSocket?.receiveBufferBytes).toBe(2 * WIREGUARD_GO_SOCKET_BUFFER);
    expect(await statusText(name)).toMatch(/^wireguard socket: 14 MiB receive buffer, [\d,]+ dropped$/m);
    expect(warnings(tb)).toHaveLength(1); // said once, at start

    // A run that starts with the big buffer says nothing about it.
    await tb.stop("SIGTERM");
    running.length = 0;
    const again = await startTunnelbore(ns, name, dirs);
    running.push(again);
    // Ready means the interface was read, and its socket looked at, already.
    expect((await again.status()).wireguardSocket?.receiveBufferBytes).toBe(2 * WIREGUARD_GO_SOCKET_BUFFER);
    expect(warnings(again)).toEqual([]);
  }, 90_000);

  it("in one process (--no-privsep) alike", async () => {
    const name = uniqueInterfaceName("tbtsb");
    await wireguardGo(name, ONE_PROCESS_PORT);
    const tb = await startTunnelbore(ns, name, dirs, ["--no-privsep"]);
    running.push(tb);
    const status = await tb.status();
    expect(status.privileges?.mode).toBe("one process");
    expect(status.wireguardSocket).toMatchObject({
      port: ONE_PROCESS_PORT,
      receiveBufferBytes: DEBIAN_DEFAULT,
    });
    expect(warnings(tb)).toHaveLength(1);
    expect(warnings(tb)[0]?.pid).toBe(tb.process.child.pid);
  }, 60_000);

  it("a recreated wireguard-go with a small buffer is warned about again", async () => {
    const name = uniqueInterfaceName("tbtsb");
    const wg = await wireguardGo(name, RECREATED_PORT);
    expect(await setUdpSocketBuffers(wg.process.child.pid!, WIREGUARD_GO_SOCKET_BUFFER)).toBe(2);
    const tb = await startTunnelbore(ns, name, dirs);
    running.push(tb);
    expect((await tb.status()).wireguardSocket?.receiveBufferBytes).toBe(2 * WIREGUARD_GO_SOCKET_BUFFER);
    expect(warnings(tb)).toEqual([]);

    await wg.stop();
    // Recreated with the default buffer (the host's is below 1 MiB, as Debian's; then set to Debian's).
    await wireguardGo(name, RECREATED_PORT);
    await waitFor(() => warnings(tb).length > 0, {
      what: "the recreated interface's warning",
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    expect(warnings(tb)).toHaveLength(1);
    const recreated = await statusWhen(
      tb,
      "the recreated socket in status",
      (socket) => socket?.receiveBufferBytes === DEBIAN_DEFAULT,
    );
    expect(recreated.wireguardSocket?.receiveBufferBytes).toBe(DEBIAN_DEFAULT);
  }, 90_000);
});
