// Options from --config FILE (YAML) and TUNNELBORE_* for run and intro-server: flag > env > file.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { introServerOptionsFromArgs } from "../../intro-server/cli.js";
import { closest, envName } from "../../src/commands/config-sources.js";
import { parseRunArgs, type RunConfig } from "../../src/commands/run.js";
import { ConfigError } from "../../src/errors.js";

const KEY_A = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const KEY_B = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tbt-config-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function file(text: string, name = "tunnelbore.yaml"): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function run(argv: string[], env: NodeJS.ProcessEnv = {}): RunConfig {
  const config = parseRunArgs(argv, env);
  if (config === "help") throw new Error("help");
  return config;
}

function runError(argv: string[], env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseRunArgs(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("no error");
}

describe("run: each source alone", () => {
  it("reads options from the file", () => {
    const config = run([
      "--config",
      file(
        [
          "interface: wg7",
          "intro: ws://intro.example:8443",
          "ebpf: off",
          "no-manage-endpoints: true",
          "poll-interval: 5000",
          `endpoint: ["${KEY_A}=192.0.2.1:51820", "${KEY_B}=192.0.2.2:51820"]`,
          "exclude-interface:",
          "  - docker*",
          "",
        ].join("\n"),
      ),
    ]);
    expect(config.interfaceName).toBe("wg7");
    expect(config.intro?.url).toBe("ws://intro.example:8443");
    expect(config.intro?.excludeInterfaces).toEqual(["docker*"]);
    expect(config.ebpf).toBe("off");
    expect(config.manageEndpoints).toBe(false);
    expect(config.pollIntervalMs).toBe(5000);
    expect([...config.staticEndpoints.keys()]).toEqual([KEY_A, KEY_B]);
  });

  it("reads options from the environment (1/0 for switches, commas for lists)", () => {
    const config = run([], {
      TUNNELBORE_INTERFACE: "wg8",
      TUNNELBORE_INTRO: "wss://intro.example",
      TUNNELBORE_NO_MANAGE_ENDPOINTS: "1",
      TUNNELBORE_EBPF: "on",
      TUNNELBORE_ENDPOINT: `${KEY_A}=192.0.2.1:1, ${KEY_B}=192.0.2.2:2`,
      TUNNELBORE_WAIT_FOR_INTERFACE: "0",
      INVOCATION_ID: "x",
    });
    expect(config.interfaceName).toBe("wg8");
    expect(config.intro?.url).toBe("wss://intro.example");
    expect(config.manageEndpoints).toBe(false);
    expect(config.ebpf).toBe("on");
    expect(config.staticEndpoints.get(KEY_B)).toMatchObject({ port: 2 });
    expect(config.staticEndpoints.size).toBe(2);
    expect(config.waitForInterface).toBe(false);
  });

  it("without file or environment the flags alone decide, and the defaults stay", () => {
    const config = run(["-i", "wg9", "--listen", "127.0.0.1:6000"]);
    expect(config.interfaceName).toBe("wg9");
    expect(config.catchAll.port).toBe(6000);
    expect(config.manageEndpoints).toBe(true);
    expect(config.ebpf).toBe("auto");
    expect(config.intro).toBeUndefined();
  });

  it("reads the interface at the auto cadence unless a number of ms is given", () => {
    expect(run(["-i", "wg0"])).toMatchObject({ pollIntervalMs: 2000, pollPerPeerMs: 0.5 });
    expect(run(["-i", "wg0", "--poll-interval", "auto"])).toMatchObject({
      pollIntervalMs: 2000,
      pollPerPeerMs: 0.5,
    });
    expect(run(["-i", "wg0", "--poll-interval", "2000"])).toMatchObject({
      pollIntervalMs: 2000,
      pollPerPeerMs: 0,
    });
    expect(() => run(["-i", "wg0", "--poll-interval", "fast"])).toThrow(
      /--poll-interval must be auto or a whole number/,
    );
  });

  it("finds the file through TUNNELBORE_CONFIG too", () => {
    expect(run([], { TUNNELBORE_CONFIG: file("interface: wg3\n") }).interfaceName).toBe("wg3");
  });
});

describe("run: precedence flag > env > file", () => {
  it("single-valued options", () => {
    const config = file("interface: wgfile\nlisten: 127.0.0.1:7001\npoll-interval: 3000\n");
    const env = { TUNNELBORE_INTERFACE: "wgenv", TUNNELBORE_LISTEN: "127.0.0.1:7002" };
    expect(run(["--config", config]).interfaceName).toBe("wgfile");
    const fromEnv = run(["--config", config], env);
    expect(fromEnv.interfaceName).toBe("wgenv");
    expect(fromEnv.catchAll.port).toBe(7002);
    expect(fromEnv.pollIntervalMs).toBe(3000);
    expect(fromEnv.pollPerPeerMs).toBe(0); // a number is kept as given
    const fromFlag = run(["--config", config, "-i", "wgflag"], env);
    expect(fromFlag.interfaceName).toBe("wgflag");
    expect(fromFlag.catchAll.port).toBe(7002);
  });

  it("a repeatable option from a higher source replaces the lower one's list, never merges", () => {
    const config = file(`interface: wg0\nendpoint:\n  - ${KEY_A}=192.0.2.1:1\n  - ${KEY_B}=192.0.2.2:2\n`);
    const env = { TUNNELBORE_ENDPOINT: `${KEY_B}=192.0.2.20:20` };
    expect(run(["--config", config]).staticEndpoints.size).toBe(2);
    const fromEnv = run(["--config", config], env).staticEndpoints;
    expect([...fromEnv.keys()]).toEqual([KEY_B]);
    expect(fromEnv.get(KEY_B)).toMatchObject({ host: "192.0.2.20", port: 20 });
    const fromFlag = run(["--config", config, "--endpoint", `${KEY_A}=192.0.2.9:9`], env).staticEndpoints;
    expect([...fromFlag.keys()]).toEqual([KEY_A]);
    expect(fromFlag.get(KEY_A)).toMatchObject({ host: "192.0.2.9", port: 9 });
  });

  it("a switch and its --no- form are one setting: the higher source wins either way", () => {
    const yes = file("interface: wg0\nwait-for-interface: true\n", "yes.yaml");
    expect(run(["--config", yes]).waitForInterface).toBe(true);
    expect(run(["--config", yes, "--no-wait-for-interface"]).waitForInterface).toBe(false);
    expect(run(["--config", yes], { TUNNELBORE_NO_WAIT_FOR_INTERFACE: "1" }).waitForInterface).toBe(false);
    const no = file("interface: wg0\nwait-for-interface: false\n", "no.yaml");
    expect(run(["--config", no], { INVOCATION_ID: "systemd" }).waitForInterface).toBe(false);
    expect(run(["--config", no, "--wait-for-interface"]).waitForInterface).toBe(true);
  });

  it("the TURN password: file key refused, TUNNELBORE_TURN_PASSWORD beats the file's -file key", () => {
    const turn = "interface: wg0\nintro: ws://h:1\nturn: turn:192.0.2.1:3478\nturn-username: u\n";
    const refused = runError(["--config", file(`${turn}turn-password: hunter2\n`)]);
    expect(refused.message).toMatch(/tunnelbore\.yaml:5: "turn-password" is a secret .*turn-password-file/);
    expect(refused.message).not.toContain("hunter2");
    const secretFile = file("from-file\n", "secret");
    const config = file(`${turn}turn-password-file: ${secretFile}\n`, "turn.yaml");
    expect(run(["--config", config]).intro?.turn?.credential).toBe("from-file");
    const fromEnv = run(["--config", config], { TUNNELBORE_TURN_PASSWORD: "from-env" });
    expect(fromEnv.intro?.turn?.credential).toBe("from-env");
    expect(fromEnv.warnings).toEqual([]);
  });
});

describe("run: a bad file or environment says what to fix, with the line", () => {
  it.each([
    [
      "interface: wg0\nintro: ws://h:1\ninterfce: wg1\n",
      /:3: unknown key "interfce": did you mean "interface"\?/,
    ],
    ["interface: wg0\nfrobnicate: 1\n", /:2: unknown key "frobnicate" \(keys are the long flags/],
    [
      "interface: wg0\n\nno-manage-endpoints: yes\n",
      /:3: "no-manage-endpoints" wants true or false, not "yes"/,
    ],
    ["interface: [wg0, wg1]\n", /:1: "interface" wants a string or a number, not a list/],
    [
      "interface: wg0\nendpoint:\n  - a\n  - {x: 1}\n",
      /:4: "endpoint" wants a list of strings \(or one string\), not a mapping/,
    ],
    ["interface: wg0\nintro: a: b\n", /:2: not valid YAML: Nested mappings/],
    ["interface: wg0\n\tlisten: x\n", /:2: not valid YAML: Tabs are not allowed/],
    ["interface: wg0\ninterface: wg1\n", /:2: not valid YAML: Map keys must be unique/],
    ["- interface\n", /:1: wants a mapping of option: value/],
    ["interface: wg0\nhelp: true\n", /:2: unknown key "help"/],
  ])("%j", (text, message) => {
    const err = runError(["--config", file(text)]);
    expect(err.code).toBe("bad-usage");
    expect(err.message).toMatch(message);
    expect(err.message).toContain(join(dir, "tunnelbore.yaml"));
  });

  it("a value the command rejects names where it came from", () => {
    expect(runError(["--config", file("interface: wg0\n\nlisten: nowhere\n")]).message).toMatch(
      /is not HOST:PORT.*\(set by .*tunnelbore\.yaml line 3\)/,
    );
    expect(runError(["-i", "wg0"], { TUNNELBORE_POLL_INTERVAL: "0" }).message).toMatch(
      /--poll-interval must be auto or a whole number .*\(set by TUNNELBORE_POLL_INTERVAL\)/,
    );
    // From the command line: no origin added.
    expect(runError(["-i", "wg0", "--poll-interval", "0"]).message).not.toMatch(/set by/);
  });

  it("a missing file, and a switch variable that is not 1 or 0", () => {
    expect(runError(["--config", join(dir, "absent.yaml")]).message).toMatch(
      /cannot read --config .*absent\.yaml \(ENOENT\)/,
    );
    expect(runError(["-i", "wg0"], { TUNNELBORE_NO_PRIVSEP: "maybe" }).message).toMatch(
      /TUNNELBORE_NO_PRIVSEP="maybe": a switch wants 1 or 0/,
    );
  });

  it("an empty file or empty variables change nothing", () => {
    expect(run(["--config", file(""), "-i", "wg0"], { TUNNELBORE_LISTEN: "" }).catchAll.port).toBe(51821);
  });
});

describe("intro-server: file and environment", () => {
  const env = (values: NodeJS.ProcessEnv) => values;
  async function intro(argv: string[], environment: NodeJS.ProcessEnv = {}) {
    const options = await introServerOptionsFromArgs(argv, environment);
    if (options === "help") throw new Error("help");
    return options;
  }

  it("each source alone", async () => {
    const fromFile = await intro([
      "--config",
      file(
        "listen: 127.0.0.1:8443\nno-stun: true\nmax-conns: 7\nturn-url: [turn:a:3478, turn:b:3478]\n" +
          `turn-secret-file: ${file("s3cret\n", "secret")}\n`,
      ),
    ]);
    expect(fromFile).toMatchObject({
      host: "127.0.0.1",
      port: 8443,
      stun: false,
      limits: { maxAuthenticatedTotal: 7 },
    });
    expect(fromFile.turn).toMatchObject({ urls: ["turn:a:3478", "turn:b:3478"], secret: "s3cret" });
    const fromEnv = await intro(
      [],
      env({
        TUNNELBORE_INTRO_SERVER_LISTEN: "0.0.0.0:9000",
        TUNNELBORE_INTRO_SERVER_STUN_PORT: "3479",
        TUNNELBORE_INTRO_SERVER_TURN_URL: "turn:c:3478",
        TUNNELBORE_INTRO_SERVER_TURN_SECRET: "env-secret",
      }),
    );
    expect(fromEnv).toMatchObject({ host: "0.0.0.0", port: 9000, stun: { port: 3479 } });
    expect(fromEnv.turn).toMatchObject({ urls: ["turn:c:3478"], secret: "env-secret" });
    // run's variables are not the intro server's: TUNNELBORE_LISTEN belongs to run.
    expect(await intro(["--listen", "127.0.0.1:1"], { TUNNELBORE_LISTEN: "0.0.0.0:2" })).toMatchObject({
      port: 1,
    });
  });

  it("flag > env > file, and repeatable --turn-url replaces", async () => {
    const config = file(
      `listen: 127.0.0.1:1\nstun-port: 4000\nturn-url: [turn:file:1, turn:file:2]\nturn-secret-file: ${file("x\n", "s")}\n`,
    );
    const e = {
      TUNNELBORE_INTRO_SERVER_LISTEN: "127.0.0.1:2",
      TUNNELBORE_INTRO_SERVER_TURN_URL: "turn:env:1",
    };
    expect(await intro(["--config", config])).toMatchObject({
      port: 1,
      turn: { urls: ["turn:file:1", "turn:file:2"] },
    });
    expect(await intro(["--config", config], e)).toMatchObject({ port: 2, turn: { urls: ["turn:env:1"] } });
    const flags = await intro(
      ["--config", config, "--listen", "127.0.0.1:3", "--turn-url", "turn:flag:1", "--no-stun"],
      e,
    );
    expect(flags).toMatchObject({ port: 3, stun: false, turn: { urls: ["turn:flag:1"] } });
  });

  it("a bad file: exit-2 errors with the line; the secret key is refused", async () => {
    const fail = (text: string) => introServerOptionsFromArgs(["--config", file(text)], {});
    await expect(fail("listen: 127.0.0.1:1\nmax-con: 3\n")).rejects.toThrow(
      /:2: unknown key "max-con": did you mean "max-conns"\?/,
    );
    await expect(fail("listen: 127.0.0.1:1\nturn-secret: abc\n")).rejects.toThrow(
      /:2: "turn-secret" is a secret .*turn-secret-file/,
    );
    await expect(fail("listen: 127.0.0.1:1\nno-stun: 1\n")).rejects.toThrow(
      /:2: "no-stun" wants true or false, not 1/,
    );
    await expect(fail("listen: 127.0.0.1:1\nturn-ttl: 5\n")).rejects.toThrow(
      /--turn-ttl wants seconds.*line 2/,
    );
  });
});

describe("helpers", () => {
  it("envName and closest", () => {
    expect(envName("TUNNELBORE_", "no-manage-endpoints")).toBe("TUNNELBORE_NO_MANAGE_ENDPOINTS");
    expect(closest("endpionts", ["endpoint", "interface"])).toBe("endpoint");
    expect(closest("zzzzzz", ["endpoint", "interface"])).toBeUndefined();
  });
});
