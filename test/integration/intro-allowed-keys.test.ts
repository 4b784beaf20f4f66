// `intro-server --allowed-keys FILE` as a real process: a bad file refuses to start, changes are
// picked up without a restart (in place, by rename, on SIGHUP), and a bad edit keeps the old list.
import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CloseCode } from "../../src/signalling/protocol.js";
import { waitFor } from "../support/wait-for.js";
import {
  newKey,
  RawIntroConnection,
  runIntroServerCli,
  type SpawnedIntroServer,
  spawnIntroServerProcess,
  type TestKey,
} from "./intro-support.js";

const dir = mkdtempSync(join(tmpdir(), "tbt-allowed-keys-"));
const servers: SpawnedIntroServer[] = [];
const connections: RawIntroConnection[] = [];

afterEach(async () => {
  for (const raw of connections.splice(0)) raw.close();
  for (const server of servers.splice(0)) await server.stop();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function spawn(file: string): Promise<SpawnedIntroServer> {
  const server = await spawnIntroServerProcess([
    "--listen",
    "127.0.0.1:0",
    "--no-stun",
    "--allowed-keys",
    file,
  ]);
  servers.push(server);
  return server;
}

/** Authenticates `key`: "welcome" if served, else the close code it got. */
async function attempt(url: string, key: TestKey): Promise<"welcome" | number> {
  const raw = await RawIntroConnection.open(url);
  connections.push(raw);
  await raw.authenticate(key.privateKey);
  const outcome = await Promise.race([
    raw.next("welcome", 10_000).then(() => "welcome" as const),
    raw.closed.then((closed) => closed.code),
  ]);
  return outcome;
}

const served = (url: string, key: TestKey) =>
  waitFor(async () => (await attempt(url, key)) === "welcome", {
    what: "the key to be served",
    timeoutMs: 15_000,
    intervalMs: 200,
  });

describe("intro-server --allowed-keys FILE", () => {
  it("refuses to start on a malformed file, naming the line (exit 2)", async () => {
    const file = join(dir, "bad.keys");
    writeFileSync(file, `# members\n${newKey().publicKey}\nnot-a-key\n`);
    const result = await runIntroServerCli(["--listen", "127.0.0.1:0", "--no-stun", "--allowed-keys", file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file} line 3: not a WireGuard public key`);
    const missing = await runIntroServerCli(["--listen", "127.0.0.1:0", "--allowed-keys", join(dir, "nope")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read --allowed-keys .*ENOENT/);
  });

  it("follows edits in place and by rename, and keeps the old list when an edit is malformed", async () => {
    const alice = newKey();
    const bob = newKey();
    const file = join(dir, "members.keys");
    writeFileSync(file, `${alice.publicKey} # alice\n`);
    const { url } = await spawn(file);
    expect(await attempt(url, alice)).toBe("welcome");
    expect(await attempt(url, bob)).toBe(CloseCode.notMember);

    // An editor's save: a new file renamed over the old one.
    writeFileSync(`${file}.tmp`, `${alice.publicKey}\n${bob.publicKey}\n`);
    renameSync(`${file}.tmp`, file);
    await served(url, bob);

    // A broken edit is reported and changes nothing.
    writeFileSync(file, `${alice.publicKey}\nbroken\n`);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await attempt(url, bob)).toBe("welcome");
    expect(servers[0]!.stderr.join("")).toMatch(
      /line 2: not a WireGuard public key.*keeping the previous list/,
    );

    // Bob removed in place: his live connection is closed.
    const live = await RawIntroConnection.open(url);
    connections.push(live);
    await live.authenticate(bob.privateKey);
    await live.next("welcome");
    writeFileSync(file, `${alice.publicKey}\n`);
    const closed = await live.closed;
    expect(closed.code).toBe(CloseCode.notMember);
    expect(await attempt(url, bob)).toBe(CloseCode.notMember);
  }, 60_000);

  it("without the flag, warns at start that the server is public", async () => {
    const server = await spawnIntroServerProcess(["--listen", "127.0.0.1:0", "--no-stun"]);
    servers.push(server);
    await waitFor(() => /public server/.test(server.stderr.join("")), { what: "the public-server warning" });
  });

  it("re-reads on SIGHUP (a file in an unwatched directory, reached by a symlink)", async () => {
    const alice = newKey();
    const elsewhere = mkdtempSync(join(dir, "target-"));
    const target = join(elsewhere, "keys");
    writeFileSync(target, "# nobody yet\n");
    const linkDir = mkdtempSync(join(dir, "link-"));
    const link = join(linkDir, "keys");
    symlinkSync(target, link);
    const server = await spawn(link);
    expect(await attempt(server.url, alice)).toBe(CloseCode.notMember);

    writeFileSync(target, `${alice.publicKey}\n`);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // The watch is on the link's directory: without a signal, nothing has changed.
    expect(await attempt(server.url, alice)).toBe(CloseCode.notMember);
    process.kill(server.process.pid!, "SIGHUP");
    await served(server.url, alice);
  }, 60_000);
});
