// The systemd units in packaging/systemd: systemd-analyze verify accepts them without a warning, and
// the settings the operations issue asks for are there and agree with what `run` and `intro-server` parse.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { introServerOptionsFromArgs } from "../../intro-server/cli.js";
import { parseRunArgs } from "../../src/commands/run.js";

const UNITS = join(import.meta.dirname, "../../packaging/systemd");
const RUN_UNIT = "tunnelbore@.service";
const ALL_UNIT = "tunnelbore.service";
const INTRO_UNIT = "tunnelbore-intro.service";
const TURN_DROP_IN = "tunnelbore-intro-turn.conf";

/** A unit file as section → key → values (in order; an empty assignment resets, as systemd does). */
type Unit = Map<string, Map<string, string[]>>;

function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header?.[1]) {
      section = unit.get(header[1]) ?? new Map<string, string[]>();
      unit.set(header[1], section);
      continue;
    }
    const eq = line.indexOf("=");
    if (!section || eq < 0) throw new Error(`not a unit file line: ${line}`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    section.set(key, value === "" ? [] : [...(section.get(key) ?? []), value]);
  }
  return unit;
}

function readUnit(name: string): Unit {
  return parseUnit(readFileSync(join(UNITS, name), "utf8"));
}

function values(unit: Unit, section: string, key: string): string[] {
  return unit.get(section)?.get(key) ?? [];
}

/** The one value of a key, or throws. */
function value(unit: Unit, section: string, key: string): string {
  const all = values(unit, section, key);
  if (all.length !== 1 || all[0] === undefined) throw new Error(`${section} ${key}: ${JSON.stringify(all)}`);
  return all[0];
}

/** Space-separated words of every assignment of a list setting (After=a b, After=c). */
function words(unit: Unit, section: string, key: string): string[] {
  return values(unit, section, key).flatMap((v) => v.split(/\s+/));
}

/** ExecStart's argv as systemd builds it: specifiers and variables replaced, $VAR split at whitespace. */
function execArgv(line: string, instance: string, env: Record<string, string>): string[] {
  return line
    .replace(/%i/g, instance)
    .split(/\s+/)
    .flatMap((word) => {
      const whole = /^\$([A-Z_]+)$/.exec(word);
      if (whole?.[1]) return (env[whole[1]] ?? "").split(/\s+/).filter(Boolean);
      return [word.replace(/\$\{([A-Z_]+)\}/g, (_, name: string) => env[name] ?? "")];
    });
}

function verify(unitPath: string, units: string[]): { status: number | null; output: string } {
  const result = spawnSync("systemd-analyze", ["verify", "--man=no", ...units], {
    encoding: "utf8",
    // The temporary directory first, then (trailing ":") the system's units: sysinit.target, and
    // wg-quick@.service from wireguard-tools, which the template is bound to.
    env: { ...process.env, SYSTEMD_UNIT_PATH: `${unitPath}:`, SYSTEMD_LOG_LEVEL: "info" },
  });
  if (result.error) throw result.error;
  return { status: result.status, output: `${result.stdout}${result.stderr}`.trim() };
}

describe("systemd-analyze verify", () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "tbt-systemd-"));
    copyFileSync(join(UNITS, RUN_UNIT), join(dir, RUN_UNIT));
    copyFileSync(join(UNITS, ALL_UNIT), join(dir, ALL_UNIT));
    copyFileSync(join(UNITS, INTRO_UNIT), join(dir, INTRO_UNIT));
    mkdirSync(join(dir, `${INTRO_UNIT}.d`));
    copyFileSync(join(UNITS, TURN_DROP_IN), join(dir, `${INTRO_UNIT}.d`, "turn.conf"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("accepts the template as instance wg0 and the intro server with its TURN drop-in, with no warning", () => {
    // tunnelbore@wg0.service exists nowhere: systemd loads it from the template, as `systemctl start` does.
    const result = verify(dir, [`tunnelbore@wg0.service`, INTRO_UNIT]);
    expect(result.output).toBe("");
    expect(result.status).toBe(0);
  });

  it("accepts the unit for every interface, with no warning", () => {
    const result = verify(dir, [ALL_UNIT]);
    expect(result.output).toBe("");
    expect(result.status).toBe(0);
  });

  it("would report a bad setting in the template and in the drop-in (the check sees these files)", () => {
    const broken = mkdtempSync(join(tmpdir(), "tbt-systemd-broken-"));
    try {
      const run = readFileSync(join(UNITS, RUN_UNIT), "utf8");
      writeFileSync(join(broken, RUN_UNIT), run.replace("Restart=on-failure", "Restart=sometimes"));
      copyFileSync(join(UNITS, INTRO_UNIT), join(broken, INTRO_UNIT));
      mkdirSync(join(broken, `${INTRO_UNIT}.d`));
      const dropIn = readFileSync(join(UNITS, TURN_DROP_IN), "utf8");
      writeFileSync(join(broken, `${INTRO_UNIT}.d`, "turn.conf"), `${dropIn}LoadCredentiall=x:/y\n`);
      const result = verify(broken, [`tunnelbore@wg0.service`, INTRO_UNIT]);
      expect(result.output).toContain(`${join(broken, RUN_UNIT)}:`);
      expect(result.output).toContain("sometimes");
      expect(result.output).toContain("LoadCredentiall");
    } finally {
      rmSync(broken, { recursive: true, force: true });
    }
  });
});

describe("tunnelbore@.service", () => {
  const unit = readUnit(RUN_UNIT);

  it("starts after wg-quick@%i and is bound to it, so it stops (restoring endpoints) before wg-quick saves", () => {
    expect(words(unit, "Unit", "After")).toContain("wg-quick@%i.service");
    expect(words(unit, "Unit", "BindsTo")).toContain("wg-quick@%i.service");
    expect(words(unit, "Install", "WantedBy")).toEqual(
      expect.arrayContaining(["multi-user.target", "wg-quick@%i.service"]),
    );
  });

  it("is restarted on failure, but not after bad usage (exit 2)", () => {
    expect(value(unit, "Service", "Restart")).toBe("on-failure");
    expect(value(unit, "Service", "RestartSec")).toMatch(/^\d+s?$/);
    expect(value(unit, "Service", "RestartPreventExitStatus")).toBe("2");
    expect(value(unit, "Service", "Type")).toBe("notify"); // READY=1 from src/service-notify.ts
    expect(value(unit, "Service", "NotifyAccess")).toBe("main"); // never the unprivileged worker
    expect(value(unit, "Service", "KillMode")).toBe("mixed");
    expect(value(unit, "Service", "ExecReload")).toBe("/bin/kill -HUP $MAINPID");
  });

  it("keeps the root parent to the capabilities it uses, and hardens the rest", () => {
    expect(words(unit, "Service", "CapabilityBoundingSet").sort()).toEqual(
      [
        "CAP_BPF",
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_ADMIN",
        "CAP_PERFMON",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SYS_ADMIN",
      ].sort(),
    );
    expect(values(unit, "Service", "AmbientCapabilities")).toEqual([]);
    expect(values(unit, "Service", "User")).toEqual([]); // root: it must switch the worker to --user
    expect(value(unit, "Service", "NoNewPrivileges")).toBe("yes"); // tested: privilege-separation e2e
    expect(value(unit, "Service", "ProtectSystem")).toBe("strict");
    expect(value(unit, "Service", "ProtectHome")).toBe("yes");
    expect(value(unit, "Service", "PrivateTmp")).toBe("yes");
    expect(value(unit, "Service", "ProtectKernelModules")).toBe("yes");
    // It writes route_localnet, /sys/fs/bpf and a child cgroup under /sys/fs/cgroup.
    expect(value(unit, "Service", "ProtectKernelTunables")).toBe("no");
    expect(value(unit, "Service", "ProtectControlGroups")).toBe("no");
    expect(value(unit, "Service", "Delegate")).toBe("yes");
    expect(words(unit, "Service", "ReadWritePaths")).toEqual(["/sys/fs/bpf", "/sys/fs/cgroup"]);
    expect(value(unit, "Service", "MemoryDenyWriteExecute")).toBe("no");
    expect(words(unit, "Service", "RestrictAddressFamilies")).toContain("AF_NETLINK");
    expect(words(unit, "Service", "SystemCallFilter")).toEqual(
      expect.arrayContaining(["@system-service", "bpf", "seccomp"]),
    );
  });

  it("passes --state-dir and --run-dir that are its StateDirectory and RuntimeDirectory, and the flags parse", () => {
    expect(value(unit, "Service", "StateDirectory")).toBe("tunnelbore");
    expect(value(unit, "Service", "RuntimeDirectory")).toBe("tunnelbore");
    expect(value(unit, "Service", "RuntimeDirectoryMode")).toBe("0700");
    expect(value(unit, "Service", "RuntimeDirectoryPreserve")).toBe("yes"); // shared by all instances
    expect(value(unit, "Service", "EnvironmentFile")).toBe("-/etc/tunnelbore/%i.env");
    const env = { TUNNELBORE_ARGS: "--intro wss://intro.example.com:8443  --log-level debug" };
    const argv = execArgv(value(unit, "Service", "ExecStart"), "wg7", env);
    expect(argv.slice(0, 3)).toEqual(["/usr/bin/env", "tunnelbore", "run"]);
    // Given explicitly (their defaults are the same today, but the unit must not rely on that).
    expect(argv).toEqual(expect.arrayContaining(["--state-dir", "--run-dir"]));
    const config = parseRunArgs(argv.slice(3), {});
    if (config === "help") throw new Error("help");
    expect(config.interfaceName).toBe("wg7");
    expect(config.stateDir).toBe(`/var/lib/${value(unit, "Service", "StateDirectory")}`);
    expect(config.runDir).toBe(`/run/${value(unit, "Service", "RuntimeDirectory")}`);
    expect(config.logLevel).toBe("debug");
    expect(config.intro?.url).toBe("wss://intro.example.com:8443");
    // Without an environment file $TUNNELBORE_ARGS is empty, and run still starts (static endpoints).
    expect(parseRunArgs(execArgv(value(unit, "Service", "ExecStart"), "wg0", {}).slice(3), {})).not.toBe(
      "help",
    );
  });
});

describe("tunnelbore.service (every interface)", () => {
  const unit = readUnit(ALL_UNIT);
  const template = readUnit(RUN_UNIT);

  it("starts after the network is online, bound to no interface, at boot", () => {
    expect(words(unit, "Unit", "After")).toEqual(["network-online.target"]);
    expect(words(unit, "Unit", "Wants")).toEqual(["network-online.target"]);
    expect(values(unit, "Unit", "BindsTo")).toEqual([]);
    expect(words(unit, "Install", "WantedBy")).toEqual(["multi-user.target"]);
  });

  it("has every [Service] setting of tunnelbore@.service (hardening, restarts, directories) but its own command and environment file", () => {
    const own = new Set(["ExecStart", "EnvironmentFile"]);
    const service = unit.get("Service") ?? new Map<string, string[]>();
    const templateService = template.get("Service") ?? new Map<string, string[]>();
    expect([...service.keys()].sort()).toEqual([...templateService.keys()].sort());
    for (const [key, setting] of templateService) {
      if (!own.has(key)) expect({ key, values: service.get(key) }).toEqual({ key, values: setting });
    }
    expect(value(unit, "Service", "EnvironmentFile")).toBe("-/etc/tunnelbore/tunnelbore.env");
    expect(unit.get("Service")?.get("ExecStart")?.join(" ")).not.toContain("%i");
  });

  it("runs `run` without --interface, with its state and run directories, and the flags parse", () => {
    const env = { TUNNELBORE_ARGS: "--intro wss://intro.example.com:8443 --log-level debug" };
    const argv = execArgv(value(unit, "Service", "ExecStart"), "", env);
    expect(argv.slice(0, 3)).toEqual(["/usr/bin/env", "tunnelbore", "run"]);
    const config = parseRunArgs(argv.slice(3), {});
    if (config === "help") throw new Error("help");
    expect(config.interfaceName).toBeUndefined();
    expect(config.stateDir).toBe(`/var/lib/${value(unit, "Service", "StateDirectory")}`);
    expect(config.runDir).toBe(`/run/${value(unit, "Service", "RuntimeDirectory")}`);
    expect(config.intro?.url).toBe("wss://intro.example.com:8443");
  });
});

describe("tunnelbore-intro.service", () => {
  const unit = readUnit(INTRO_UNIT);

  it("runs as a dynamic user with no capabilities, fully hardened except W^X (Node's JIT)", () => {
    expect(value(unit, "Service", "DynamicUser")).toBe("yes");
    expect(value(unit, "Service", "Type")).toBe("notify");
    expect(value(unit, "Service", "NoNewPrivileges")).toBe("yes");
    expect(values(unit, "Service", "CapabilityBoundingSet")).toEqual([]);
    expect(unit.get("Service")?.has("CapabilityBoundingSet")).toBe(true);
    expect(value(unit, "Service", "ProtectSystem")).toBe("strict");
    expect(value(unit, "Service", "PrivateDevices")).toBe("yes");
    expect(words(unit, "Service", "RestrictAddressFamilies").sort()).toEqual([
      "AF_INET",
      "AF_INET6",
      "AF_UNIX",
    ]);
    // seccomp() for the server's own filter (src/syscall-filter.ts), which would otherwise get EPERM.
    expect(values(unit, "Service", "SystemCallFilter")[0]).toBe("@system-service seccomp");
    expect(value(unit, "Service", "MemoryDenyWriteExecute")).toBe("no");
    expect(value(unit, "Service", "Restart")).toBe("on-failure");
    expect(value(unit, "Service", "ExecReload")).toBe("/bin/kill -HUP $MAINPID");
    // allowed-keys is re-read on change: read in place (directory), not a credential copy.
    expect(value(unit, "Service", "ReadOnlyPaths")).toBe("-/etc/tunnelbore");
  });

  it("listens on 8443 by default and its ExecStart parses", async () => {
    const argv = execArgv(value(unit, "Service", "ExecStart"), "", {});
    expect(argv.slice(0, 3)).toEqual(["/usr/bin/env", "tunnelbore", "intro-server"]);
    const options = await introServerOptionsFromArgs(argv.slice(3));
    expect(options).not.toBe("help");
    expect(argv.slice(3, 5)).toEqual(["--listen", "[::]:8443"]);
  });

  it("with the TURN drop-in reads the secret from its credential", async () => {
    const dropIn = parseUnit(readFileSync(join(UNITS, TURN_DROP_IN), "utf8"));
    expect(value(dropIn, "Service", "LoadCredential")).toBe("turn-secret:/etc/tunnelbore/turn-secret");
    const credentials = mkdtempSync(join(tmpdir(), "tbt-credentials-"));
    try {
      writeFileSync(join(credentials, "turn-secret"), "s3cret\n");
      const env = {
        CREDENTIALS_DIRECTORY: credentials,
        TUNNELBORE_INTRO_ARGS: "--turn-url turn:turn.example.com:3478",
      };
      // "ExecStart=" first resets the unit's command; the drop-in's own is the one that runs.
      const argv = execArgv(value(dropIn, "Service", "ExecStart"), "", env);
      expect(argv).toContain(`${credentials}/turn-secret`);
      const options = await introServerOptionsFromArgs(argv.slice(3));
      if (options === "help") throw new Error("help");
      expect(JSON.stringify(options)).toContain("s3cret");
    } finally {
      rmSync(credentials, { recursive: true, force: true });
    }
  });
});
