import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { UapiSocket } from "../../src/wg/uapi-socket.js";

// A userspace WireGuard of the test's own: a unix socket in a temporary directory that answers as told.
describe("UapiSocket", () => {
  let dir: string;
  let server: Server | null = null;
  let asked: string[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "tbt-uapi-"));
    asked = [];
  });

  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = null;
    rmSync(dir, { recursive: true, force: true });
  });

  const serve = (name: string, answer: (socket: Socket) => void) =>
    new Promise<void>((resolve) => {
      server = createServer((socket) => {
        socket.once("data", (request) => {
          asked.push(request.toString());
          answer(socket);
        });
      });
      server.listen(join(dir, `${name}.sock`), resolve);
    });

  it("asks get=1 and reads an answer larger than its buffers, sent in pieces, then a shorter one", async () => {
    const big = `private_key=${"a".repeat(64)}\n${"allowed_ip=10.0.0.1/32\n".repeat(40_000)}errno=0\n\n`;
    await serve("wg0", (socket) => {
      // In pieces that split the final blank line, as a stream may.
      const text = asked.length === 1 ? big : "listen_port=1\nerrno=0\n\n";
      const cut = text.length - 1;
      socket.write(text.slice(0, cut));
      setTimeout(() => socket.write(text.slice(cut)), 20);
    });
    const uapi = new UapiSocket(dir);
    expect((await uapi.read("wg0"))?.toString()).toBe(big);
    expect((await uapi.read("wg0"))?.toString()).toBe("listen_port=1\nerrno=0\n\n");
    expect(asked).toEqual(["get=1\n\n", "get=1\n\n"]);
  });

  it("reads one at a time: two reads asked at once each get their own whole answer", async () => {
    await serve("wg0", (socket) => {
      const n = asked.length;
      setTimeout(() => socket.write(`listen_port=${n}\n${"x=y\n".repeat(20_000 * n)}errno=0\n\n`), 10);
    });
    const uapi = new UapiSocket(dir);
    const [first, second] = await Promise.all([
      uapi.read("wg0").then((a) => a?.toString()),
      uapi.read("wg0").then((a) => a?.toString()),
    ]);
    expect(first?.startsWith("listen_port=1\n")).toBe(true);
    expect(first?.length).toBe(`listen_port=1\n${"x=y\n".repeat(20_000)}errno=0\n\n`.length);
    expect(second?.startsWith("listen_port=2\n")).toBe(true);
  });

  it("answers null without a socket, or with a stale one nobody listens on (the kernel's interface then)", async () => {
    const uapi = new UapiSocket(dir);
    expect(await uapi.read("wg0")).toBeNull();
    // A socket file left by a wireguard-go that was killed.
    await serve("stale", () => {});
    const stale = server as Server | null;
    await new Promise<void>((resolve) => stale?.close(() => resolve()));
    server = null;
    writeFileSync(join(dir, "stale.sock"), "");
    expect(await uapi.read("stale")).toBeNull();
  });

  it("fails clearly on an errno, an answer cut short, or no answer", async () => {
    await serve("wg0", (socket) => {
      if (asked.length === 1) socket.end("errno=19\n\n");
      else if (asked.length === 2) socket.end("listen_port=1\n");
      // The third: silence.
    });
    const uapi = new UapiSocket(dir, 200);
    await expect(uapi.read("wg0")).rejects.toThrow(/wg0's WireGuard socket answered errno 19/);
    await expect(uapi.read("wg0")).rejects.toThrow(/closed before its answer ended/);
    await expect(uapi.read("wg0")).rejects.toThrow(/did not answer/);
  });
});
