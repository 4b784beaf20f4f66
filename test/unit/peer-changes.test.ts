// Which peers of `wg show dump` need applying again (issue 16: a hub's idle peers, read every 2 s).
import { describe, expect, it } from "vitest";
import { PeerChanges } from "../../src/wg/peer-changes.js";
import type { WireGuardPeerInfo } from "../../src/wg/wg-command.js";

function peer(n: number, over: Partial<WireGuardPeerInfo> = {}): WireGuardPeerInfo {
  return {
    publicKey: `key${n}`,
    endpoint: `127.1.0.${n}:51822`,
    allowedIps: [`10.0.0.${n}/32`],
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 0,
    ...over,
  };
}

describe("PeerChanges", () => {
  it("gives every peer at first, then only those whose line changed, field by field", () => {
    const changes = new PeerChanges();
    const first = [peer(1), peer(2), peer(3)];
    expect(changes.changed(first, "c")).toEqual(first);
    for (const p of first) changes.markApplied(p);
    // The same lines, read again (new objects, as every read makes): nothing to do.
    expect(changes.changed([peer(1), peer(2), peer(3)], "c")).toEqual([]);
    const edits: Partial<WireGuardPeerInfo>[] = [
      { endpoint: "192.0.2.1:51820" },
      { endpoint: null },
      { latestHandshake: 5 },
      { rxBytes: 1 },
      { txBytes: 1 },
      { persistentKeepalive: 25 },
      { allowedIps: ["10.0.0.2/32", "10.1.0.0/16"] },
      { allowedIps: ["10.9.0.2/32"] },
    ];
    for (const edit of edits) expect(changes.changed([peer(1), peer(2, edit)], "c")).toEqual([peer(2, edit)]);
  });

  it("gives a peer not marked applied again (its endpoint change is under way or failed)", () => {
    const changes = new PeerChanges();
    changes.changed([peer(1)], "c");
    expect(changes.changed([peer(1)], "c")).toEqual([peer(1)]);
    changes.markApplied(peer(1));
    changes.forget("key1");
    expect(changes.changed([peer(1)], "c")).toEqual([peer(1)]);
  });

  it("gives every peer again when the context changed (released, recreated, reloaded)", () => {
    const changes = new PeerChanges();
    changes.changed([peer(1), peer(2)], "a");
    changes.markApplied(peer(1));
    changes.markApplied(peer(2));
    expect(changes.changed([peer(1), peer(2)], "a")).toEqual([]);
    expect(changes.changed([peer(1), peer(2)], "b")).toEqual([peer(1), peer(2)]);
  });

  it("a read told as a delta from the list settled last: only its changed peers are looked at", () => {
    const changes = new PeerChanges();
    const list = [peer(1), peer(2), peer(3)];
    for (const p of changes.changed(list, "c")) changes.markApplied(p);
    changes.settle(list);
    const moved = peer(2, { rxBytes: 7 });
    const next = [list[0] as WireGuardPeerInfo, moved, peer(4)];
    const delta = { from: list, changed: [moved, peer(4)], removed: ["key3"] };
    expect(changes.continues(delta, "c")).toBe(true);
    expect(changes.continues(delta, "other")).toBe(false); // a context change looks at everything
    expect(changes.continues({ ...delta, from: [...list] }, "c")).toBe(false); // not from the settled list
    expect(changes.continues(undefined, "c")).toBe(false);
    expect(changes.changedOf(delta)).toEqual([moved, peer(4)]);
    changes.forget("key3");
    changes.markApplied(moved);
    // peer 4 not applied (its endpoint change failed): not settled, the next read looks at everything.
    changes.settleDelta(next, delta);
    expect(changes.isSettled(next)).toBe(false);
    expect(changes.changed(next, "c")).toEqual([peer(4)]);
    changes.markApplied(next[2] as WireGuardPeerInfo);
    changes.settleDelta(next, delta);
    expect(changes.isSettled(next)).toBe(true);
    // A delta's peer whose line equals the one applied (applied by an earlier read) is not given again.
    const again = [...next];
    expect(changes.changedOf({ from: next, changed: [peer(4)], removed: [] })).toEqual([]);
    changes.settleDelta(again, { from: next, changed: [peer(4)], removed: [] });
    expect(changes.isSettled(again)).toBe(true);
  });

  it("a list settled once needs no look when handed out again, until a context change, a forget or a new list", () => {
    const changes = new PeerChanges();
    const list = [peer(1), peer(2)];
    expect(changes.changed(list, "c")).toEqual(list);
    changes.markApplied(list[0] as WireGuardPeerInfo);
    // One peer not applied (its endpoint is being taken over): not settled, looked at again.
    changes.settle(list);
    expect(changes.isSettled(list)).toBe(false);
    expect(changes.changed(list, "c")).toEqual([list[1]]);
    changes.markApplied(list[1] as WireGuardPeerInfo);
    changes.settle(list);
    expect(changes.isSettled(list)).toBe(true);
    expect(changes.changed(list, "c")).toEqual([]);
    // The same peers in a new list are compared again (and found unchanged).
    expect(changes.isSettled([...list])).toBe(false);
    expect(changes.changed([...list], "c")).toEqual([]);
    changes.forget("key1");
    expect(changes.isSettled(list)).toBe(false);
    expect(changes.changed(list, "c")).toEqual([list[0]]);
    changes.markApplied(list[0] as WireGuardPeerInfo);
    changes.settle(list);
    expect(changes.changed(list, "other")).toEqual(list);
    expect(changes.isSettled(list)).toBe(false);
    changes.settle(null);
    expect(changes.isSettled(list)).toBe(false);
  });
});
