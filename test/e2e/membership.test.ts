// Membership in the lab: an introduction server with --allowed-keys, real coturn, two Tunnelbores
// behind symmetric NATs (only a TURN relay connects them). A key not listed is refused right after
// authentication: no welcome, so no TURN credentials, and its peer never comes up. Once the key is
// added to the file (no restart), it connects, relays through coturn and WireGuard handshakes.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { teardownAll } from "../lab/netns.js";
import { ProductLab } from "../lab/tunnelbore-lab.js";
import { waitFor } from "../support/wait-for.js";

const dir = mkdtempSync(join(tmpdir(), "tbt-membership-"));
const file = join(dir, "allowed-keys");
let lab: ProductLab | null = null;

afterAll(async () => {
  await lab?.teardown();
  await teardownAll();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes the file as an editor does: a new file renamed over the old one. */
function writeAllowedKeys(lines: string[]): void {
  writeFileSync(`${file}.new`, `${lines.join("\n")}\n`);
  renameSync(`${file}.new`, file);
}

describe("introduction server membership (--allowed-keys) in the lab", () => {
  it("a key not listed gets nothing until it is added, then its peer comes up over TURN", async () => {
    writeFileSync(file, "# the lab's keys are written once they exist\n");
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "symmetric" },
        { name: "b", nat: "symmetric" },
      ],
      allowedKeysFile: file,
      startTunnelbores: false,
    });
    const a = lab.host("a");
    const b = lab.host("b");
    writeAllowedKeys([`${a.keys.publicKey} # a`]);

    await lab.startTunnelbore("a");
    // Generous: should a's first attempt beat the reload, it is retried slowly (not-member).
    await waitFor(async () => (await lab!.status("a")).intro?.state === "connected", {
      what: "a connected to the introduction server",
      timeoutMs: 120_000,
      intervalMs: 250,
    });

    await lab.startTunnelbore("b");
    const refused = await waitFor(
      async () => {
        const intro = (await lab!.status("b")).intro;
        // The client says "not-member" (or, before it knew the code, shows the close: 4013).
        return intro?.state === "not-member" || intro?.lastError?.includes("4013") ? intro : null;
      },
      { what: "b refused as not a member", timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(refused.state).not.toBe("connected");
    expect(refused.lastError).toMatch(/not a member|not allowed/);

    // For a while, nothing: b never gets online, so neither side has a path, and no handshake.
    const until = Date.now() + 10_000;
    while (Date.now() < until) {
      expect((await lab.status("b")).intro?.state).not.toBe("connected");
      expect((await lab.peerStatus("a", "b")).pathKind).toBeNull();
      expect((await lab.peerStatus("b", "a")).pathKind).toBeNull();
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(await lab.ping("a", "b", 1_000)).toBe(false);
    expect(await a.wg.latestHandshakeOf(b.keys.publicKey)).toBe(0);

    // Added without a restart: b is served, gets TURN credentials, and the pair relays through coturn.
    // b's operator reloads it (SIGHUP) rather than wait for its once-a-minute retry: it connects at once.
    writeAllowedKeys([`${a.keys.publicKey} # a`, `${b.keys.publicKey} # b`]);
    // The server reads the file as it changes; a SIGHUP that comes before is answered not-member again,
    // so b is reloaded until it connects, each time given 2 s (its own retry would come after 60 s).
    const connectedSoon = () =>
      waitFor(async () => (await lab!.status("b")).intro?.state === "connected", {
        what: "b connected after SIGHUP",
        timeoutMs: 2_000,
        intervalMs: 100,
      }).then(
        () => true,
        () => false,
      );
    let reloads = 0;
    do {
      b.tunnelbore!.process.child.kill("SIGHUP");
      reloads++;
    } while (!(await connectedSoon()) && reloads < 10);
    expect((await lab.status("b")).intro?.state).toBe("connected");
    await lab.waitForPing("a", "b", 60_000);
    expect((await lab.status("b")).intro?.state).toBe("connected");
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
    expect((await lab.peerStatus("b", "a")).pathKind).toBe("relay");
    expect(await a.wg.latestHandshakeOf(b.keys.publicKey)).toBeGreaterThan(0);
    expect(await b.wg.latestHandshakeOf(a.keys.publicKey)).toBeGreaterThan(0);
  }, 300_000);
});
