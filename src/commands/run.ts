import { parseArgs } from "node:util";
import { createInterfaceInstance, instanceService } from "../all-interfaces/interface-instance.js";
import { runAllInterfaces } from "../all-interfaces/run-all.js";
import { type ControlHandlers, DEFAULT_RUN_DIR } from "../control/control-socket.js";
import { ConfigError } from "../errors.js";
import { createLogger, type LogFormat, parseLogFormat, parseLogLevel } from "../log.js";
import { type MetricsAddress, parseMetricsAddress } from "../metrics/metrics-address.js";
import { serveRunMetricsOnDemand } from "../metrics/run-metrics-on-demand.js";
import { describePrivileges } from "../privsep/privilege-status.js";
import { choosePrivileges } from "../privsep/privsep-mode.js";
import { type Endpoint, parseEndpoint } from "../proxy/endpoint.js";
import {
  type KernelFastPathSetting,
  normalizeKernelFastPathFlag,
  parseKernelFastPathSetting,
} from "../proxy/kernel-fast-path-choice.js";
import { DEFAULT_LOOPBACK_PORT_BASE } from "../proxy/loopback-address.js";
import { runService } from "../service-lifecycle.js";
import { ServiceNotifier } from "../service-notify.js";
import type { IntroSettings, Tunnelbore } from "../tunnelbore.js";
import { INTERFACE_NAME } from "../wg/interface-set.js";
import { decodeKey } from "../wireguard/keys.js";
import { hasNetAdmin } from "./capabilities.js";
import { type ConfigRecheck, configRecheck, withConfigRecheck } from "./config-reload.js";
import { type ConfigSourcesSpec, withConfigSources } from "./config-sources.js";
import { parseDuration } from "./duration.js";
import { resolveSecret, type SecretOption } from "./secret-option.js";

/** A week: longer is "never" in all but name (0/off says it). */
const MAX_IDLE_TIMEOUT_MS = 7 * 24 * 3_600_000;

const TURN_PASSWORD: SecretOption = { name: "turn-password", env: "TUNNELBORE_TURN_PASSWORD" };

export const RUN_USAGE = `Usage: tunnelbore run [--interface IF] [options]

Proxies WireGuard interface IF's peers through loopback sockets. Without --interface: every
WireGuard interface of the host, including those created later (and an interface removed is let
go), each with its own catch-all port (kept in the state directory) and control socket IF.sock.

Options:
      --config FILE           read options from a YAML file (keys are the long flags below, e.g.
                              interface: wg0, endpoint: [..], no-manage-endpoints: true); also
                              TUNNELBORE_CONFIG. Every option is also read from TUNNELBORE_<FLAG>
                              (upper case, - becomes _; a list separated by commas; 1/0 for a
                              switch). A flag beats the environment, which beats the file; a
                              repeatable option from a higher source replaces the lower one's list.
                              Secrets never go in the file: turn-password-file or the environment
  -i, --interface IF          the WireGuard interface (default: all of them, followed)
      --intro URL             introduction server (ws://HOST:PORT or wss://...): connects peers
                              behind NATs with ICE; without it only static endpoints are used.
                              Repeatable: one server at a time, from the first; when it goes
                              away, the next at once (a name with several addresses counts as
                              several servers). Servers that are not clustered only introduce
                              peers connected to the same one
      --stun URL              STUN server (stun:HOST:PORT), instead of the introduction server's
                              (repeatable)
      --turn URL              TURN server (turn:HOST:PORT[?transport=tcp], turns:...), instead
                              of the introduction server's; needs --turn-username and a password
      --turn-username U
      --turn-password-file FILE
                              the TURN password, read from FILE (or from TUNNELBORE_TURN_PASSWORD);
                              --turn-password P works too but shows P to every user (ps)
      --exclude-interface IF  never offer this interface's addresses as ICE candidates
                              (repeatable; a trailing * matches a prefix)
      --listen ADDR:PORT      catch-all socket for WireGuard (default 127.0.0.1:51821); without
                              --interface, each interface's is the first free port from PORT up
      --loopback-port-base N  first port of the per-peer loopback sockets (default ${DEFAULT_LOOPBACK_PORT_BASE})
      --no-manage-endpoints   leave WireGuard's peer endpoints alone
      --ebpf auto|on|off      forward WireGuard's data in the kernel (tc/eBPF): auto (default)
                              wherever the kernel and privileges allow it, else user space (one
                              log line says why; status shows the mode); on: fail at start if it
                              cannot load; off: user space. Handshakes stay in Tunnelbore. Needs
                              bpftool and tc; sets net.ipv4.conf.lo.route_localnet=1 while it runs.
                              --ebpf alone means on
      --endpoint KEY=HOST:PORT
                              a peer's real endpoint (repeatable); a hostname is re-resolved
                              at every handshake attempt
      --state-dir DIR         where replaced endpoints are remembered (default /var/lib/tunnelbore)
      --wait-for-interface    wait for a missing interface instead of failing (default when run
                              by systemd); --no-wait-for-interface to fail at once
      --wg-quick-config FILE  the interface's wg-quick file, checked for SaveConfig
                              (default /etc/wireguard/IF.conf)
      --poll-interval MS|auto how often the interface is re-read (default auto: every 2000 ms, and
                              0.5 ms a peer past 4,000 peers, at most 10 s: 5 s at 10,000)
      --idle-timeout DURATION a peer with no traffic either way for this long releases its ICE
                              session and sockets (status: dormant) until WireGuard sends to it
                              again, which connects it within a second; e.g. 90s, 15m, 1h
                              (default 15m; checked at every --poll-interval); 0 or off: never
      --run-dir DIR           where the control socket IF.sock lives (default ${DEFAULT_RUN_DIR})
      --metrics IP:PORT       serve Prometheus metrics at /metrics and health at /healthz over
                              HTTP (no authentication: keep it on loopback or a private address)
      --log-level LEVEL       trace, debug, info, warn, error (default info, or TUNNELBORE_LOG)
      --log-format json|pretty
                              json: one object a line with the level's name (for journald and
                              log shippers); pretty: coloured lines for a human. Default: pretty
                              on a terminal, else json
      --user NAME             the unprivileged user that parses network input (privilege
                              separation; default tunnelbore if it exists, else nobody)
      --no-privsep            run as one privileged process
  -h, --help                  this help

Signals: SIGINT/SIGTERM give WireGuard its real endpoints back and exit 0; SIGHUP reads the
configuration and the interface again. Without --interface, run keeps waiting for interfaces
(also when there is none), and an interface whose instance fails is retried with backoff while the
others carry on.
`;

export interface RunConfig {
  /** --interface; undefined: every interface of the host (src/all-interfaces/). */
  interfaceName: string | undefined;
  intro: IntroSettings | undefined;
  catchAll: { address: string; port: number };
  loopbackPortBase: number;
  manageEndpoints: boolean;
  staticEndpoints: Map<string, Endpoint>;
  stateDir: string;
  runDir: string;
  /** --metrics: where the Prometheus and health HTTP server listens; none without it. */
  metrics: MetricsAddress | undefined;
  pollIntervalMs: number;
  /** --poll-interval auto: reads further apart for big interfaces (InterfaceSync's readInterval); 0 when fixed. */
  pollPerPeerMs: number;
  /** --idle-timeout: no traffic for this long releases a peer's ICE session (0: never). */
  idleTimeoutMs: number;
  logLevel: string;
  /** --log-format: json (level names) or pretty; pretty on a terminal by default. */
  logFormat: LogFormat;
  ebpf: KernelFastPathSetting;
  waitForInterface: boolean;
  wgQuickConfig: string | undefined;
  /** Privilege separation: off with --no-privsep; the worker's user from --user. */
  privsep: { disabled: boolean; user: string | undefined };
  /** What to log as warnings once a logger exists (a secret given in argv, ...); never a secret. */
  warnings: string[];
}

/** Turns argv into a RunConfig, or throws a ConfigError that says what to fix. */
export function parseRunArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): RunConfig | "help" {
  const { values, sources } = resolveRunOptions(argv, env);
  try {
    return runConfig(values, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new ConfigError(err.code, sources.explain(err.message), err.context, { cause: err });
  }
}

/** run's options as argv, TUNNELBORE_* and --config FILE resolve them (flag name -> value). */
function resolveRunOptions(argv: string[], env: NodeJS.ProcessEnv) {
  const sources = withConfigSources(normalizeKernelFastPathFlag(argv), RUN_SOURCES, env);
  try {
    return { values: parse(sources.argv).values, sources };
  } catch (err) {
    throw new ConfigError("bad-usage", `${sources.explain((err as Error).message)}\n\n${RUN_USAGE}`);
  }
}

/**
 * SIGHUP's look at the configuration: which options changed since the start, or why the file no longer
 * parses (values are not checked again). Made before the TURN password is read from the environment
 * (and deleted): the environment is kept as it was then, the password's presence without its value,
 * so that what it overrides in the file resolves alike at every look.
 */
export function runConfigRecheck(argv: string[], env: NodeJS.ProcessEnv = process.env): () => ConfigRecheck {
  const atStart: NodeJS.ProcessEnv = { ...env };
  if (atStart[TURN_PASSWORD.env]) atStart[TURN_PASSWORD.env] = "(set at start)";
  const resolve = () => ({ ...resolveRunOptions(argv, atStart).values });
  return configRecheck(resolve, resolve(), ["turn-password"]);
}

function runConfig(values: ReturnType<typeof parse>["values"], env: NodeJS.ProcessEnv): RunConfig | "help" {
  if (values.help) return "help";
  if (values.interface !== undefined && !INTERFACE_NAME.test(values.interface)) {
    throw new ConfigError("bad-usage", `--interface "${values.interface}" is not a valid interface name`);
  }
  if (values.interface === undefined && values["wg-quick-config"] !== undefined) {
    throw new ConfigError("bad-usage", "--wg-quick-config names one interface's file: it needs --interface");
  }
  const listen = parseEndpoint(values.listen ?? "127.0.0.1:51821");
  const portBase = integer(
    "--loopback-port-base",
    values["loopback-port-base"],
    DEFAULT_LOOPBACK_PORT_BASE,
    1,
    65000,
  );
  const staticEndpoints = new Map<string, Endpoint>();
  for (const item of values.endpoint ?? []) {
    const eq = item.indexOf("=", 44); // a base64 key is 44 characters and ends in "="
    const key = eq > 0 ? item.slice(0, eq) : "";
    try {
      decodeKey(key);
    } catch {
      throw new ConfigError(
        "bad-usage",
        `--endpoint "${item}" must be PUBLICKEY=HOST:PORT with a base64 WireGuard key`,
      );
    }
    staticEndpoints.set(key, parseEndpoint(item.slice(eq + 1)));
  }
  const warnings: string[] = [];
  const intro = introSettings(values, warnings, env);
  const level = parseLogLevel(values["log-level"], "bad-usage", env);
  const logFormat = parseLogFormat(values["log-format"], "bad-usage");
  return {
    interfaceName: values.interface,
    intro,
    catchAll: { address: listen.host, port: listen.port },
    loopbackPortBase: portBase,
    manageEndpoints: !values["no-manage-endpoints"],
    ebpf: kernelFastPathSetting(values.ebpf),
    staticEndpoints,
    stateDir: values["state-dir"] ?? "/var/lib/tunnelbore",
    runDir: values["run-dir"] ?? DEFAULT_RUN_DIR,
    metrics: values.metrics === undefined ? undefined : parseMetricsAddress(values.metrics, "bad-usage"),
    ...pollCadence(values["poll-interval"]),
    idleTimeoutMs: parseDuration("--idle-timeout", values["idle-timeout"] ?? "15m", MAX_IDLE_TIMEOUT_MS),
    logLevel: level,
    logFormat,
    waitForInterface:
      values["wait-for-interface"] ?? (values["no-wait-for-interface"] ? false : runBySystemd(env)),
    wgQuickConfig: values["wg-quick-config"],
    privsep: { disabled: values["no-privsep"] === true, user: values.user },
    warnings,
  };
}

function kernelFastPathSetting(value: string | undefined): KernelFastPathSetting {
  const setting = parseKernelFastPathSetting(value);
  if (!setting) throw new ConfigError("bad-usage", `--ebpf "${value}" is not one of auto, on, off`);
  return setting;
}

/** systemd sets INVOCATION_ID for the processes of a unit: a service must survive its boot order. */
function runBySystemd(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env.INVOCATION_ID);
}

function introSettings(
  values: ReturnType<typeof parse>["values"],
  warnings: string[],
  env: NodeJS.ProcessEnv,
): IntroSettings | undefined {
  const urls = values.intro ?? [];
  const url = urls[0];
  const needsIntro = ["stun", "turn", "exclude-interface"] as const;
  const password = resolveSecret(TURN_PASSWORD, values["turn-password"], values["turn-password-file"], env);
  warnings.push(...password.warnings);
  if (!url) {
    const stray = needsIntro.find((flag) => values[flag] !== undefined);
    if (stray) throw new ConfigError("bad-usage", `--${stray} needs --intro (NAT traversal)`);
    return undefined;
  }
  for (const each of urls) {
    if (!/^wss?:\/\/[^/\s]+/.test(each) || !URL.canParse(each)) {
      throw new ConfigError("bad-usage", `--intro "${each}" must be a ws:// or wss:// URL`);
    }
  }
  for (const stun of values.stun ?? []) {
    if (!/^stun:[^\s]+:\d+$/.test(stun))
      throw new ConfigError("bad-usage", `--stun "${stun}" must be stun:HOST:PORT`);
  }
  let turn: IntroSettings["turn"];
  if (values.turn) {
    if (!/^turns?:[^\s]+:\d+(\?transport=(udp|tcp))?$/.test(values.turn)) {
      throw new ConfigError(
        "bad-usage",
        `--turn "${values.turn}" must be turn:HOST:PORT[?transport=udp|tcp] or turns:...`,
      );
    }
    if (!values["turn-username"] || password.value === undefined) {
      throw new ConfigError(
        "bad-usage",
        `--turn needs --turn-username and a password (--turn-password-file FILE or ${TURN_PASSWORD.env})`,
      );
    }
    turn = { urls: [values.turn], username: values["turn-username"], credential: password.value };
  }
  return {
    url,
    urls,
    stunUrls: values.stun,
    turn,
    excludeInterfaces: values["exclude-interface"] ?? [],
  };
}

const RUN_OPTIONS = {
  config: { type: "string" },
  interface: { type: "string", short: "i" },
  intro: { type: "string", multiple: true },
  stun: { type: "string", multiple: true },
  turn: { type: "string" },
  "turn-username": { type: "string" },
  "turn-password": { type: "string" },
  "turn-password-file": { type: "string" },
  "exclude-interface": { type: "string", multiple: true },
  listen: { type: "string" },
  "loopback-port-base": { type: "string" },
  "no-manage-endpoints": { type: "boolean" },
  ebpf: { type: "string" },
  endpoint: { type: "string", multiple: true },
  "state-dir": { type: "string" },
  "run-dir": { type: "string" },
  metrics: { type: "string" },
  "poll-interval": { type: "string" },
  "idle-timeout": { type: "string" },
  "log-level": { type: "string" },
  "log-format": { type: "string" },
  "wait-for-interface": { type: "boolean" },
  "no-wait-for-interface": { type: "boolean" },
  "wg-quick-config": { type: "string" },
  user: { type: "string" },
  "no-privsep": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** run's options from --config FILE and TUNNELBORE_*: see config-sources.ts. */
const RUN_SOURCES: ConfigSourcesSpec = {
  command: "run",
  errorCode: "bad-usage",
  envPrefix: "TUNNELBORE_",
  options: RUN_OPTIONS,
  groups: [
    ["wait-for-interface", "no-wait-for-interface"],
    ["turn-password", "turn-password-file"],
  ],
  secrets: { "turn-password": `use turn-password-file: FILE (chmod 600) or ${TURN_PASSWORD.env}` },
  // resolveSecret reads (and deletes) TUNNELBORE_TURN_PASSWORD itself: in argv it would warn.
  envReadByCommand: ["turn-password"],
};

function parse(argv: string[]) {
  return parseArgs({
    args: normalizeKernelFastPathFlag(argv),
    strict: true,
    allowPositionals: false,
    options: RUN_OPTIONS,
  });
}

/** --poll-interval: "auto" (the default) scales with the peers read; a number of ms is kept as given. */
function pollCadence(text: string | undefined): { pollIntervalMs: number; pollPerPeerMs: number } {
  if (text === undefined || text === "auto")
    return { pollIntervalMs: 2000, pollPerPeerMs: AUTO_POLL_PER_PEER_MS };
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < 100 || ms > 600_000)
    throw new ConfigError(
      "bad-usage",
      `--poll-interval must be auto or a whole number of ms from 100 to 600000, not "${text}"`,
    );
  return { pollIntervalMs: ms, pollPerPeerMs: 0 };
}

/** auto: 2 s up to 4,000 peers, then 0.5 ms a peer (a read's cost on both sides grows with them). */
const AUTO_POLL_PER_PEER_MS = 0.5;

function integer(flag: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError("bad-usage", `${flag} must be a whole number from ${min} to ${max}, not "${text}"`);
  }
  return n;
}

/** What the control socket of a Tunnelbore in this process answers (one process, --no-privsep). */
function controlHandlersOf(tunnelbore: Tunnelbore): ControlHandlers {
  return {
    status: () => tunnelbore.statusReport(),
    release: () => tunnelbore.release(),
    ping: (request) => tunnelbore.ping(request),
    iceServers: () => tunnelbore.iceServers(),
  };
}

/**
 * `tunnelbore run`: runs until SIGINT/SIGTERM, then restores the endpoints it changed. SIGHUP reloads.
 * Signals are handled from the start (also while waiting for the interface), and a fatal error still
 * gives WireGuard its endpoints back: WireGuard is never left pointing at a dead loopback socket.
 */
export async function runCommand(argv: string[]): Promise<number> {
  const recheckConfig = runConfigRecheck(argv);
  const config = parseRunArgs(argv);
  if (config === "help") {
    process.stdout.write(RUN_USAGE);
    return 0;
  }
  if (!hasNetAdmin()) {
    throw new ConfigError("not-permitted", "tunnelbore run needs root or CAP_NET_ADMIN (try sudo)");
  }
  const logger = createLogger("tunnelbore", config.logLevel, config.logFormat);
  // Before anything is forked or executed: only this process may speak for the service.
  const notifier = ServiceNotifier.fromEnvironment(logger);
  for (const warning of config.warnings) logger.warn(warning);
  const privileges = await choosePrivileges(config.privsep);
  logger.info(describePrivileges(privileges.status));
  const interfaceName = config.interfaceName;
  if (interfaceName === undefined) {
    return runAllInterfaces({
      config,
      privileges,
      logger,
      controlHandlers: controlHandlersOf,
      notifier,
      recheckConfig,
    });
  }
  const instance = createInterfaceInstance({
    config: { ...config, interfaceName },
    privileges,
    logger,
    controlHandlers: controlHandlersOf,
  });
  const metrics =
    config.metrics &&
    (await serveRunMetricsOnDemand(config.metrics, async () => [await instance.status()], logger));
  const catchAll = `${config.catchAll.address}:${config.catchAll.port}`;
  try {
    return await runService(
      withConfigRecheck(
        instanceService(instance, () => ({
          fields: { interface: interfaceName, catchAll },
          message: "tunnelbore running",
        })),
        recheckConfig,
        logger,
      ),
      logger,
      notifier,
    );
  } finally {
    await metrics?.close();
  }
}
