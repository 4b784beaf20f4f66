// The interface crossing from the privileged parent to the worker as what changed (issue 16).
import { describe, expect, it } from "vitest";
import { InterfaceDiffer, InterfaceMirror } from "../../src/privsep/interface-diff.js";
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
});
