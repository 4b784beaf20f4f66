// Two (or three) Tunnelbores behind real nftables NATs find each other through the introduction server
// and ICE; every case pings through real wireguard-go and checks the path kind `status` reports.
import { afterEach, describe, expect, it } from "vitest";
import { teardownAll } from "../lab/netns.js";
import { ProductLab } from "../lab/tunnelbore-lab.js";

let lab: ProductLab | null = null;

afterEach(async () => {
  await lab?.teardown();
  lab = null;
  await teardownAll();
});

describe("NAT traversal between Tunnelbores", () => {
  it("both behind endpoint-independent NATs: direct path", async () => {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", nat: "eim" },
      ],
    });
    await lab.waitForPing("a", "b");
    expect(await lab.ping("b", "a")).toBe(true);
    const ab = await lab.peerStatus("a", "b");
    const ba = await lab.peerStatus("b", "a");
    expect(ab).toMatchObject({ pathKind: "direct", state: "connected(direct)" });
    expect(ba.pathKind).toBe("direct");
    // Direct means through the other NAT's public address, not the relay.
    expect(ab.remote?.startsWith(`${lab.lab.host("b").publicAddress}:`)).toBe(true);
  }, 90_000);
});
