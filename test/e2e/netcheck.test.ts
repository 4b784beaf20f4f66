// `tunnelbore netcheck` in the NAT lab: the mapping behaviour behind the lab's endpoint-independent and
// symmetric (fully-random) NATs, asked of the running `tunnelbore run` (its control socket answers the
// introduction server's two STUN addresses and TURN credentials); UDP blocked by nftables with TURN
// over TCP and TLS working against real coturn; and `status` saying why a pair behind two symmetric
// NATs is relayed.
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NetcheckReport } from "../../src/netcheck/netcheck.js";
import { type Coturn, makeTestCertificate, startCoturn } from "../lab/coturn.js";
import { teardownAll } from "../lab/netns.js";
import { CLI } from "../lab/tunnelbore.js";
import { ProductLab } from "../lab/tunnelbore-lab.js";
import { waitFor } from "../support/wait-for.js";

let lab: ProductLab;
/** A second coturn next to the lab's, with a TLS listener (the lab's has none unless all TURN is TLS). */
let tlsCoturn: Coturn;
let caCert: string;
const TLS_TURN_PORT = 3490;
const TURNS_PORT = 5350;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI in a host's namespace. */
function cliIn(host: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      "ip",
      ["netns", "exec", lab.host(host).ns, process.execPath, CLI, ...args],
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function netcheckOfRun(host: string): Promise<{ result: CliResult; report: NetcheckReport }> {
  const result = await cliIn(host, ["netcheck", "--run-dir", lab.host(host).dirs.runDir, "--json"]);
  expect(result.stderr).toBe("");
  return { result, report: JSON.parse(result.stdout) as NetcheckReport };
}

beforeAll(async () => {
  lab = await ProductLab.create({
    hosts: [
      { name: "a", nat: "symmetric" },
      { name: "b", nat: "symmetric" },
      { name: "c", nat: "eim" },
      { name: "d", nat: "eim", tunnelbore: false },
    ],
    // a and b are peers (the relayed pair); c runs Tunnelbore for netcheck to ask; d only runs netcheck.
    links: [["a", "b"]],
  });
  const server = lab.lab.server;
  const cert = await makeTestCertificate(server.address);
  caCert = cert.cert;
  tlsCoturn = await startCoturn(server.ns, {
    address: server.address,
    port: TLS_TURN_PORT,
    secret: lab.coturn.secret,
    tls: { ...cert, port: TURNS_PORT },
  });
}, 120_000);

afterAll(async () => {
  await tlsCoturn?.stop().catch(() => undefined);
  await lab?.teardown();
  await teardownAll();
});

describe("tunnelbore netcheck", () => {
  it("behind the endpoint-independent NAT: one mapping for both STUN addresses, TURN over UDP and TCP", async () => {
    const { result, report } = await netcheckOfRun("c");
    expect(result.code).toBe(0);
    expect(report.source).toBe(`tunnelbore run on ${lab.host("c").wg.name}`);
    expect(report.localAddresses).toContain(lab.lab.host("c").lanAddress);
    // The introduction server's two STUN ports, from the running instance.
    const server = lab.lab.server.address;
    expect(report.stun?.servers).toHaveLength(2);
    expect(report.stun?.servers[0]).toBe(`${server}:3478`);
    expect(report.stun?.servers[1]?.startsWith(`${server}:`)).toBe(true);
    const [first, second] = report.stun?.mapped ?? [];
    expect(first?.startsWith(`${lab.lab.host("c").publicAddress}:`)).toBe(true);
    expect(second).toBe(first);
    expect(report.mapping).toBe("endpoint-independent");
    expect(report.udpBlocked).toBe(false);
    // With the credentials the introduction server gave run.
    expect(report.turn.udp).toMatchObject({ status: "ok" });
    expect(report.turn.tcp).toMatchObject({ status: "ok" });
    expect(report.turn.tls).toEqual({ status: "not configured" });
    if (report.turn.udp.status === "ok") expect(report.turn.udp.relayed.startsWith(`${server}:`)).toBe(true);
    // The lab's links are veths (1500); wireguard-go's own MTU is 1420, which fits.
    const wg = lab.host("c").wg.name;
    expect(report.mtu).toEqual({ interface: wg, uplink: 1500, wireguard: 1420, warning: null });

    const text = await cliIn("c", ["netcheck", "--run-dir", lab.host("c").dirs.runDir]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      new RegExp(`^MTU: +uplink 1500, ${wg} 1420: full-size packets leave in one piece$`, "m"),
    );
    expect(text.stdout).toMatch(/^mapping: +endpoint-independent$/m);
    expect(text.stdout).toMatch(/^UDP: +works$/m);
    expect(text.stdout).toMatch(/^TURN over UDP: ok \(udp /m);
  }, 60_000);

  it("behind the symmetric NAT: another mapped port per STUN address", async () => {
    const { result, report } = await netcheckOfRun("a");
    expect(result.code).toBe(0);
    const [first, second] = report.stun?.mapped ?? [];
    const publicAddress = lab.lab.host("a").publicAddress;
    expect(first?.startsWith(`${publicAddress}:`)).toBe(true);
    expect(second?.startsWith(`${publicAddress}:`)).toBe(true);
    expect(second).not.toBe(first);
    expect(report.mapping).toBe("address-and-port-dependent");

    const text = await cliIn("a", ["netcheck", "--run-dir", lab.host("a").dirs.runDir]);
    expect(text.stdout).toMatch(/^mapping: +address-and-port-dependent \(symmetric NAT\)$/m);
  }, 60_000);

  it("with UDP blocked: says so, and TURN over TCP and TLS still allocate on real coturn", async () => {
    await lab.lab.blockUdp("d");
    const server = lab.lab.server.address;
    const { username, password } = lab.coturn.credentials("netcheck");
    const passwordFile = join(lab.host("d").dirs.runDir, "..", "turn-password");
    writeFileSync(passwordFile, password, { mode: 0o600 });
    const flags = [
      "netcheck",
      "--stun",
      `stun:${server}:3478`,
      "--turn",
      tlsCoturn.url,
      "--turn",
      `${tlsCoturn.url}?transport=tcp`,
      "--turn",
      `turns:${server}:${TURNS_PORT}`,
      "--turn-username",
      username,
      "--turn-password-file",
      passwordFile,
      "--timeout",
      "3",
    ];
    const env = { NODE_EXTRA_CA_CERTS: caCert };
    const json = await cliIn("d", [...flags, "--json"], env);
    expect(json.stderr).toBe("");
    const report = JSON.parse(json.stdout) as NetcheckReport;
    expect(report.udpBlocked).toBe(true);
    expect(report.stun?.mapped).toEqual([null]);
    expect(report.turn.udp).toMatchObject({ status: "failed" });
    expect(report.turn.tcp).toMatchObject({ status: "ok" });
    expect(report.turn.tls).toMatchObject({ status: "ok" });
    if (report.turn.tcp.status === "ok") expect(report.turn.tcp.relayed.startsWith(`${server}:`)).toBe(true);
    // TURN over TCP works: not "nothing works".
    expect(json.code).toBe(0);

    const text = await cliIn("d", flags, env);
    expect(text.stdout).toMatch(/^UDP: +blocked \(no STUN answer\)$/m);
    expect(text.stdout).toMatch(/^TURN over TCP: ok \(tcp /m);
    expect(text.stdout).toMatch(/^TURN over TLS: ok \(tls /m);
    expect(text.stdout).toMatch(/^TURN over UDP: failed \(udp /m);

    // A TURN server nothing answers on (TCP is tried on its port too, as run does): nothing works, exit 1.
    const nothing = await cliIn("d", [
      "netcheck",
      "--stun",
      `stun:${server}:3478`,
      "--turn",
      `turn:${server}:9`,
      "--turn-username",
      username,
      "--turn-password-file",
      passwordFile,
      "--timeout",
      "2",
    ]);
    expect(nothing.stdout).toMatch(/^UDP: +blocked/m);
    expect(nothing.stdout).toMatch(/^TURN over TCP: failed \(tcp .*ECONNREFUSED/m);
    expect(nothing.code).toBe(1);
  }, 60_000);
});

describe("status says why a path is not direct", () => {
  it("both behind symmetric NATs: relayed, and status says why, in JSON and text", async () => {
    await lab.waitForPing("a", "b", 40_000);
    for (const [on, peer] of [
      ["a", "b"],
      ["b", "a"],
    ] as const) {
      await waitFor(
        async () =>
          (await lab.peerStatus(on, peer)).notDirectReason === "symmetric NAT on both sides: relayed",
        { what: `${on} explains its relayed path to ${peer}`, timeoutMs: 30_000, intervalMs: 250 },
      );
      expect((await lab.peerStatus(on, peer)).pathKind).toBe("relay");
    }
    const text = await cliIn("a", ["status", "--run-dir", lab.host("a").dirs.runDir]);
    expect(text.code).toBe(0);
    const key = lab.host("b").keys.publicKey.slice(0, 10);
    expect(text.stdout).toContain(`why not direct: ${key}…: symmetric NAT on both sides: relayed`);
  }, 90_000);
});
