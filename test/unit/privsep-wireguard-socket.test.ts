// WireGuard's socket buffer crosses from the privileged parent (which reads the interface, so knows
// its listen port and whether it is userspace) to the worker's status: asked without arguments, and
// the answer checked before status shows it.
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import type { LocalPrivilegedOps } from "../../src/privsep/privileged-ops.js";
import { PrivilegedServer } from "../../src/privsep/privileged-server.js";
import { type Ask, PrivilegedRequestError, RemotePrivilegedOps } from "../../src/privsep/remote-ops.js";
import type { WireGuardSocketStatus } from "../../src/wg/wireguard-sockets.js";

const silent = createLogger("test", "silent");

const SMALL: WireGuardSocketStatus = {
  port: 51820,
  receiveBufferBytes: 212992,
  drops: 30123,
  sockets: [
    { local: "0.0.0.0:51820", receiveBufferBytes: 212992, drops: 30000 },
    { local: "[::]:51820", receiveBufferBytes: 212992, drops: 123 },
  ],
  unknown: null,
};

function serverAnswering(answer: unknown) {
  let asked = 0;
  const ops = {
    wireguardSocket: async () => {
      asked++;
      return answer;
    },
  } as unknown as LocalPrivilegedOps;
  return { server: new PrivilegedServer({ interfaceName: "wg0", ops, logger: silent }), asked: () => asked };
}

/** JSON both ways, as process.send does. */
function channel(server: PrivilegedServer): Ask {
  return async (request) =>
    JSON.parse(JSON.stringify(await server.handle(JSON.parse(JSON.stringify(request)))));
}

describe("wireguardSocket across privilege separation", () => {
  it("carries the parent's reading to the worker as it is", async () => {
    const { server } = serverAnswering(SMALL);
    expect(await new RemotePrivilegedOps(channel(server), silent).wireguardSocket()).toEqual(SMALL);
  });

  it("carries the kernel's WireGuard as null", async () => {
    const { server } = serverAnswering(null);
    expect(await new RemotePrivilegedOps(channel(server), silent).wireguardSocket()).toBeNull();
  });

  it("refuses a malformed answer rather than show it", async () => {
    for (const bad of [
      { ...SMALL, receiveBufferBytes: -1 },
      { ...SMALL, drops: "many" },
      { ...SMALL, sockets: [{ local: "x".repeat(500), receiveBufferBytes: 1, drops: 0 }] },
      { port: 51820 },
      "208 KiB",
    ]) {
      const { server } = serverAnswering(bad);
      await expect(new RemotePrivilegedOps(channel(server), silent).wireguardSocket()).rejects.toThrow(
        PrivilegedRequestError,
      );
    }
  });

  it("is a request the parent validates like any other", async () => {
    const { server, asked } = serverAnswering(SMALL);
    await expect(server.handle({ op: "wireguardSocket" })).resolves.toEqual(SMALL);
    await expect(server.handle({ op: "wireguardSockets" })).rejects.toThrow(/malformed request/);
    expect(asked()).toBe(1);
  });
});
