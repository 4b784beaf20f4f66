// The interface crossing from the privileged parent to the worker as what changed (issue 16).
import { describe, expect, it } from "vitest";
import { InterfaceDiffer, InterfaceMirror } from "../../src/privsep/interface-diff.js";
import { InterfaceReader } from "../../src/wg/interface-reader.js";
import type { WireGuardInterfaceInfo, WireGuardPeerInfo } from "../../src/wg/wg-command.js";

function peer(n: number, over: Partial<WireGuardPeerInfo> = {}): WireGuardPeerInfo {
  return {
    publicKey: `key${n}`,
    endpoint: `192.0.2.${n}:51820`,
    allowedIps: [`10.0.0.${n}/32`],
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 0,
    ...over,
  };
}

function info(peers: WireGuardPeerInfo[], listenPort = 51820): WireGuardInterfaceInfo {
  return { name: "wg0", privateKey: null, publicKey: "pub", listenPort, fwmark: 0, peers };
}

const byKey = (i: WireGuardInterfaceInfo) =>
  [...i.peers].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1));

describe("InterfaceDiffer and InterfaceMirror", () => {
  it("sends everything first, then only changed and removed peers; the mirror is the interface each time", () => {
    const differ = new InterfaceDiffer();
    const mirror = new InterfaceMirror();
    const reads = [
      info([peer(1), peer(2), peer(3)]),
      info([peer(1), peer(2), peer(3)]),
      info([peer(1), peer(2, { rxBytes: 5 }), peer(4)], 51821),
      info([peer(2, { rxBytes: 5 }), peer(4)]),
    ];
    const sent: number[] = [];
    for (const read of reads) {
      const answer = JSON.parse(JSON.stringify(differ.changes(read, mirror.since)));
      sent.push(answer.changed.length + answer.removed.length);
      const rebuilt = mirror.apply(answer);
      expect(byKey(rebuilt)).toEqual(byKey(read));
      expect(rebuilt.listenPort).toBe(read.listenPort);
    }
    // 3 at first; nothing when nothing changed; peer 2 changed, 4 added, 3 removed; 1 removed.
    expect(sent).toEqual([3, 0, 3, 1]);
  });

  it("sends everything again to a worker that missed an answer (or is new)", () => {
    const differ = new InterfaceDiffer();
    const mirror = new InterfaceMirror();
    mirror.apply(differ.changes(info([peer(1), peer(2)]), mirror.since));
    differ.changes(info([peer(1)]), mirror.since); // lost on the way
    const answer = differ.changes(info([peer(1), peer(3)]), mirror.since);
    expect(answer.full).toBe(true);
    expect(byKey(mirror.apply(answer))).toEqual([peer(1), peer(3)]);
    const fresh = new InterfaceMirror();
    expect(differ.changes(info([peer(1), peer(3)]), fresh.since).full).toBe(true);
  });

  it("answers from what each read changed (InterfaceReader), and compares again when a read was skipped", () => {
    const key = (n: number) => `${String(n).padStart(43, "k")}=`;
    const line = (n: number, rx = 0) =>
      `${key(n)}\t(none)\t192.0.2.${n}:51820\t10.0.0.${n}/32\t0\t${rx}\t0\toff`;
    const dump = (...lines: string[]) => Buffer.from(`priv\tpub\t51820\toff\n${lines.join("\n")}\n`);
    const reader = new InterfaceReader("wg0");
    const differ = new InterfaceDiffer();
    const mirror = new InterfaceMirror();
    const answer = (text: Buffer) => {
      const read = reader.readDump(text);
      const out = differ.changes(read, mirror.since, reader.changes);
      expect(byKey(mirror.apply(JSON.parse(JSON.stringify(out))))).toEqual(byKey(read));
      return out;
    };
    expect(answer(dump(line(1), line(2), line(3))).changed).toHaveLength(3);
    expect(answer(dump(line(3), line(1), line(2)))).toMatchObject({ changed: [], removed: [] });
    const next = answer(dump(line(1), line(2, 7), line(4)));
    expect(next.changed.map((p) => p.publicKey)).toEqual([key(2), key(4)]);
    expect(next.removed).toEqual([key(3)]);
    // A read the worker was not answered from: the next answer compares against the last one sent.
    reader.readDump(dump(line(1), line(2, 9), line(4)));
    const after = answer(dump(line(1), line(2, 9), line(4)));
    expect(after.changed.map((p) => p.publicKey)).toEqual([key(2)]);
  });

  it("the mirror tells a changed list as a delta from the one before; what crosses never carries one", () => {
    const differ = new InterfaceDiffer();
    const mirror = new InterfaceMirror();
    const first = mirror.apply(differ.changes(info([peer(1), peer(2), peer(3)]), mirror.since));
    expect(first.delta).toBeUndefined();
    const read = {
      ...info([peer(1), peer(2, { rxBytes: 9 }), peer(4)]),
      delta: { from: [], changed: [], removed: [] },
    };
    const answer = differ.changes(read, mirror.since);
    expect(answer.head).not.toHaveProperty("delta");
    expect(JSON.stringify(answer)).not.toContain("delta");
    const second = mirror.apply(answer);
    expect(second.delta?.from).toBe(first.peers);
    expect(second.delta?.changed.map((p) => p.publicKey).sort()).toEqual(["key2", "key4"]);
    expect(second.delta?.removed).toEqual(["key3"]);
    expect(second.peers.find((p) => p.publicKey === "key1")).toBe(
      first.peers.find((p) => p.publicKey === "key1"),
    );
    // A full answer (a worker that missed one) starts over: no delta.
    mirror.reset();
    expect(mirror.apply(differ.changes(read, mirror.since)).delta).toBeUndefined();
  });

  it("the mirror hands out the very same list while nothing changed, a new one when something did", () => {
    const differ = new InterfaceDiffer();
    const mirror = new InterfaceMirror();
    const a = peer(1);
    const first = mirror.apply(differ.changes(info([a, peer(2)]), mirror.since)).peers;
    const second = mirror.apply(differ.changes(info([a, peer(2)]), mirror.since)).peers;
    expect(second).toBe(first);
    const third = mirror.apply(differ.changes(info([a, peer(2, { rxBytes: 9 })]), mirror.since)).peers;
    expect(third).not.toBe(first);
    expect(third).toHaveLength(2);
    mirror.reset();
    expect(mirror.apply(differ.changes(info([a, peer(2, { rxBytes: 9 })]), mirror.since)).peers).not.toBe(
      third,
    );
  });
});
