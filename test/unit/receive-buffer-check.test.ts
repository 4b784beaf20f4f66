// The warning about a userspace WireGuard's small socket buffer: one line at start, none for a big
// buffer or the kernel's WireGuard, again only for a new socket (recreated interface, another port),
// never a failure of the interface's read; and the line `tunnelbore status` shows.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { formatStatus, formatWireGuardSocket } from "../../src/commands/status.js";
import {
  formatBufferSize,
  type ReadSockets,
  ReceiveBufferCheck,
  receiveBufferWarning,
} from "../../src/wg/receive-buffer-check.js";
import type { WireGuardSocketStatus } from "../../src/wg/wireguard-sockets.js";
import { statusReportFixture } from "../support/status-fixtures.js";

function socketOf(receiveBufferBytes: number, drops: number | null = 0): WireGuardSocketStatus {
  return {
    port: 51820,
    receiveBufferBytes,
    drops,
    sockets: [{ local: "0.0.0.0:51820", receiveBufferBytes, drops }],
    unknown: null,
  };
}

const UNKNOWN: WireGuardSocketStatus = {
  port: 51820,
  receiveBufferBytes: null,
  drops: null,
  sockets: [],
  unknown: "no UDP socket on port 51820 in this network namespace",
};

/** A check whose socket reads answer `answers` in turn (the last one from then on), and its warnings. */
function harness(answers: Array<WireGuardSocketStatus | null | Error>) {
  const warnings: Array<Record<string, unknown>> = [];
  const log = pino({ level: "warn" }, { write: (line: string) => warnings.push(JSON.parse(line)) });
  const clock = { now: 1_000_000, ifindex: 7 as number | null };
  let reads = 0;
  const read: ReadSockets = async () => {
    const answer = answers[Math.min(reads++, answers.length - 1)];
    if (answer instanceof Error) throw answer;
    return answer ?? null;
  };
  const check = new ReceiveBufferCheck("wg0", log, {
    read,
    index: async () => clock.ifindex,
    now: () => clock.now,
  });
  return { check, warnings, clock, reads: () => reads };
}

describe("ReceiveBufferCheck", () => {
  it("warns once, in one line with the figures, for wireguard-go's default 208 KiB", async () => {
    const h = harness([socketOf(212992, 30123)]);
    for (let i = 0; i < 5; i++) await h.check.afterRead(51820);
    expect(h.reads()).toBe(1); // the polls after the first cost no ss
    expect(h.warnings).toHaveLength(1);
    expect(h.warnings[0]).toMatchObject({
      level: 40,
      interface: "wg0",
      port: 51820,
      receiveBufferBytes: 212992,
      drops: 30123,
    });
    const msg = String(h.warnings[0]?.msg);
    expect(msg).toContain("WireGuard's socket has a 208 KiB receive buffer, under 1 MiB");
    expect(msg).toContain("(30,123 so far)");
    expect(msg).toMatch(/Upgrade wireguard-go .* or raise net\.core\.rmem_default/);
    expect(msg).toContain("Tunnelbore does not touch WireGuard's socket");
    expect(msg).not.toContain("\n");
  });

  it("says nothing for a buffer of 1 MiB or more (current wireguard-go: 14 MiB as the kernel counts)", async () => {
    for (const size of [14 << 20, 1 << 20]) {
      const h = harness([socketOf(size)]);
      await h.check.afterRead(51820);
      expect(h.reads()).toBe(1);
      expect(h.warnings).toEqual([]);
    }
  });

  it("says nothing for the kernel's WireGuard, and reads it no more", async () => {
    const h = harness([null]);
    await h.check.afterRead(51820);
    await h.check.afterRead(51820);
    expect(h.reads()).toBe(1);
    expect(h.warnings).toEqual([]);
  });

  it("looks again at a new socket: the interface recreated, or another listen port", async () => {
    const h = harness([socketOf(212992), socketOf(14 << 20), socketOf(212992)]);
    await h.check.afterRead(51820);
    expect(h.warnings).toHaveLength(1);
    h.clock.ifindex = 9; // recreated, now by a wireguard-go that sizes its buffers
    await h.check.afterRead(51820);
    expect(h.reads()).toBe(2);
    expect(h.warnings).toHaveLength(1);
    await h.check.afterRead(51821); // another port: a new socket, small again
    expect(h.reads()).toBe(3);
    expect(h.warnings).toHaveLength(2);
  });

  it("tries again while no socket is found (the link not up yet): 2 s, then twice as long; then warns", async () => {
    const h = harness([UNKNOWN, UNKNOWN, UNKNOWN, socketOf(212992)]);
    await h.check.afterRead(51820);
    await h.check.afterRead(51820);
    expect(h.reads()).toBe(1);
    h.clock.now += 2000;
    await h.check.afterRead(51820);
    expect(h.reads()).toBe(2);
    h.clock.now += 2000;
    await h.check.afterRead(51820);
    expect(h.reads()).toBe(2); // 4 s now
    h.clock.now += 2000;
    await h.check.afterRead(51820);
    expect(h.reads()).toBe(3);
    expect(h.warnings).toEqual([]);
    // A new socket (recreated) starts at 2 s again, and this one is small.
    h.clock.ifindex = 8;
    await h.check.afterRead(51820);
    expect(h.reads()).toBe(4);
    expect(h.warnings).toHaveLength(1);
  });

  it("never fails the interface's read", async () => {
    const h = harness([new Error("boom"), socketOf(212992)]);
    await expect(h.check.afterRead(51820)).resolves.toBeUndefined();
    h.clock.now += 2000;
    await h.check.afterRead(51820);
    expect(h.warnings).toHaveLength(1);
  });

  it("answers status by the port last read; nothing before a read (or with no port)", async () => {
    const h = harness([socketOf(212992, 5)]);
    expect(await h.check.status()).toBeNull();
    expect(h.reads()).toBe(0);
    await h.check.afterRead(51820);
    expect(await h.check.status()).toEqual(socketOf(212992, 5));
    expect(h.reads()).toBe(2); // status reads anew: its drops are now's
  });

  it("shares a status read younger than 2 s (each read is a process), and reads anew after", async () => {
    const h = harness([socketOf(212992, 5), socketOf(212992, 6), socketOf(212992, 7)]);
    await h.check.afterRead(51820);
    const [first, second] = await Promise.all([h.check.status(), h.check.status()]);
    h.clock.now += 1999;
    expect(await h.check.status()).toEqual(first);
    expect(second).toEqual(socketOf(212992, 6));
    expect(h.reads()).toBe(2);
    h.clock.now += 1;
    expect(await h.check.status()).toEqual(socketOf(212992, 7));
    expect(h.reads()).toBe(3);
  });
});

describe("receiveBufferWarning", () => {
  it("is for a small, known buffer only", () => {
    expect(receiveBufferWarning(socketOf(212992))).toContain("208 KiB");
    expect(receiveBufferWarning(socketOf(212992, null))).not.toContain("so far");
    expect(receiveBufferWarning(socketOf(212992, 0))).toContain("it drops datagrams and TCP");
    expect(receiveBufferWarning(socketOf(1 << 20))).toBeNull();
    expect(receiveBufferWarning(UNKNOWN)).toBeNull();
  });
});

describe("the status line", () => {
  it("shows the buffer and the drops, with advice when the buffer is small", () => {
    expect(formatWireGuardSocket(socketOf(212992, 30123))).toBe(
      "wireguard socket: 208 KiB receive buffer, 30,123 dropped (under 1 MiB: drops datagrams at speed; upgrade wireguard-go or raise net.core.rmem_default)",
    );
    expect(formatWireGuardSocket(socketOf(14 << 20, 0))).toBe(
      "wireguard socket: 14 MiB receive buffer, 0 dropped",
    );
    expect(formatWireGuardSocket(socketOf(14 << 20, null))).toBe(
      "wireguard socket: 14 MiB receive buffer, drops unknown",
    );
    expect(formatWireGuardSocket(UNKNOWN)).toBe(
      "wireguard socket: unknown (no UDP socket on port 51820 in this network namespace)",
    );
  });

  it("is in status for a userspace WireGuard only (null: the kernel's)", () => {
    const report = statusReportFixture();
    const userspace = formatStatus({ ...report, wireguardSocket: socketOf(212992, 30123) });
    expect(userspace.split("\n")).toContain(formatWireGuardSocket(socketOf(212992, 30123)));
    expect(formatStatus({ ...report, wireguardSocket: null })).not.toContain("wireguard socket");
    expect(formatStatus(report)).not.toContain("wireguard socket");
  });

  it("sizes", () => {
    expect(formatBufferSize(212992)).toBe("208 KiB");
    expect(formatBufferSize(14680064)).toBe("14 MiB");
    expect(formatBufferSize(1572864)).toBe("1.5 MiB");
    expect(formatBufferSize(4096)).toBe("4 KiB");
    expect(formatBufferSize(1000)).toBe("1000 bytes");
  });
});
