/** `tunnelbore intro-server`: flags, validation, run until SIGINT/SIGTERM. */
import { readFile } from "node:fs/promises";
import { isIPv6 } from "node:net";
import { parseArgs } from "node:util";
import { type ConfigSourcesSpec, withConfigSources } from "../src/commands/config-sources.js";
import { ConfigError, RuntimeError, TunnelboreError } from "../src/errors.js";
import { createLogger, type LogSettings, parseLogFormat, parseLogLevel } from "../src/log.js";
import { type MetricsAddress, parseMetricsAddress } from "../src/metrics/metrics-address.js";
import { MetricsServer } from "../src/metrics/metrics-server.js";
import { ServiceNotifier } from "../src/service-notify.js";
import { installSyscallFilter } from "../src/syscall-filter.js";
import { type AllowedKeysWatcher, loadAllowedKeys, watchAllowedKeys } from "./allowed-keys.js";
import { parseClusterUrl } from "./cluster/cluster-url.js";
import { DEFAULT_LIMITS, type IntroServerLimits } from "./limits.js";
import { type IntroServerOptions, startIntroServer } from "./server.js";
import { PromIntroServerMetrics } from "./server-metrics.js";
import { MAX_TURN_TTL_SECONDS } from "./turn-credentials.js";

/** Server options from the command line, and the allowed-keys file to watch. */
export type IntroServerCliOptions = IntroServerOptions & {
  /** --metrics: where the Prometheus and health HTTP server listens. */
  metricsAddress?: MetricsAddress;
  allowedKeysFile?: string;
  log?: LogSettings;
};

/** The limits a user tunes from the command line, by flag. */
const LIMIT_FLAGS = {
  "max-pending-per-address": "maxPreAuthPerAddress",
  "max-pending": "maxPreAuthTotal",
  "max-conns-per-address": "maxAuthenticatedPerAddress",
  "max-conns": "maxAuthenticatedTotal",
  "max-peers-per-key": "maxDeclaredPeers",
  "max-peers-per-address": "maxDeclaredPeersPerAddress",
  "max-peers-total": "maxDeclaredPeersTotal",
} as const satisfies Record<string, keyof IntroServerLimits>;
type LimitFlag = keyof typeof LIMIT_FLAGS;

export const INTRO_SERVER_USAGE = `Usage: tunnelbore intro-server --listen HOST:PORT [options]

Runs the introduction server: authenticates Tunnelbores by their WireGuard key, tells peers that
declared each other about each other's presence, relays their end-to-end encrypted envelopes,
answers STUN binding requests and hands out TURN credentials.

Options:
  --config FILE           read options from a YAML file: keys are the long flags (listen: 0.0.0.0:8443,
                          turn-url: [..], no-stun: true); also TUNNELBORE_INTRO_SERVER_CONFIG. Every
                          option is also read from TUNNELBORE_INTRO_SERVER_<FLAG> (upper case, - becomes
                          _; a list separated by commas; 1/0 for a switch). A flag beats the
                          environment, which beats the file; a repeatable option from a higher source
                          replaces the lower one's list. The secret goes in turn-secret-file (or
                          TUNNELBORE_INTRO_SERVER_TURN_SECRET), never in the file itself
  --listen HOST:PORT      WebSocket address to listen on, e.g. 0.0.0.0:8443 or [::]:8443 (required)
  --stun-port N           UDP port of the built-in STUN responder (default 3478, same host)
  --stun-alt-port N       a second UDP port it answers on, advertised too, so clients can tell
                          their NAT's mapping behaviour (tunnelbore netcheck; default: a free port)
  --no-stun               do not run the STUN responder
  --turn-url URL          TURN server to tell clients about, e.g. turn:turn.example.com:3478
                          (repeatable); needs --turn-secret or --turn-secret-file
  --turn-secret S         coturn static-auth-secret (use-auth-secret) to sign credentials with
  --turn-secret-file F    read that secret from a file instead (keeps it out of \`ps\`)
  --turn-ttl SECONDS      lifetime of issued TURN credentials (default 3600, at most 86400)
  --tls-cert F            PEM certificate: serve wss:// (needs --tls-key)
  --tls-key F             PEM private key of that certificate
  --public-host NAME      host name to put in STUN URLs (default: the Host the client connected to)
  --allowed-keys FILE     serve only these WireGuard public keys (one base64 key a line, # comments);
                          re-read when the file changes and on SIGHUP. Without it the server is
                          public: any key gets presence, relaying and TURN credentials
  --cluster URL           run as one node of several sharing presence and envelope routing through
                          Redis, e.g. redis://10.0.0.5:6379 (rediss:// for TLS; a password goes in
                          the URL's user part, or use TUNNELBORE_INTRO_SERVER_CLUSTER). A Redis that
                          Sentinel fails over: redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER
                          (the Sentinels, the master's name; the password is the master's;
                          ?sentinel_password=P for Sentinels with their own; rediss+sentinel:// for
                          TLS to the Sentinels and the data nodes). Every node
                          reads the same --allowed-keys; per-address caps count all nodes. SIGTERM
                          tells clients to move (4011) and holds their envelopes until they are back
  --metrics IP:PORT       serve Prometheus metrics at /metrics and health at /healthz over HTTP
                          (no authentication: keep it on loopback or a private address)
  --log-level LEVEL       trace, debug, info, warn, error (default info, or TUNNELBORE_LOG)
  --log-format json|pretty
                          json: one object a line with the level's name (journald, log shippers);
                          pretty: for a human. Default: pretty on a terminal, else json
  -h, --help              show this help

Caps (an address is an IPv4 address or an IPv6 /64; over a cap: HTTP 503 or close 4014/4009):
  --max-pending-per-address N  unauthenticated connections per address (default ${DEFAULT_LIMITS.maxPreAuthPerAddress})
  --max-pending N              unauthenticated connections in all (default ${DEFAULT_LIMITS.maxPreAuthTotal})
  --max-conns-per-address N    authenticated connections per address (default ${DEFAULT_LIMITS.maxAuthenticatedPerAddress})
  --max-conns N                authenticated connections in all (default ${DEFAULT_LIMITS.maxAuthenticatedTotal})
  --max-peers-per-key N        peers one key may declare (default ${DEFAULT_LIMITS.maxDeclaredPeers})
  --max-peers-per-address N    peers declared by all keys of one address (default ${DEFAULT_LIMITS.maxDeclaredPeersPerAddress})
  --max-peers-total N          peers declared on the whole server (default ${DEFAULT_LIMITS.maxDeclaredPeersTotal})

Exit codes: 0 stopped by SIGINT/SIGTERM, 1 runtime failure (e.g. a busy port, the --cluster engine
unreachable at start), 2 bad usage (e.g. --cluster with a scheme other than redis://, rediss:// or
redis+sentinel://, or a Sentinel URL without a master name).
Logs go to stderr.
`;

function parsePort(text: string, flag: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new ConfigError("intro-usage", `${flag} wants a port number 0-65535, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

export function parseListen(text: string): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  const plain = /^([^:[\]]+):(\d+)$/.exec(text);
  const match = bracketed ?? plain;
  if (!match || (bracketed && !isIPv6(match[1]!))) {
    throw new ConfigError(
      "intro-usage",
      `--listen wants HOST:PORT (e.g. 0.0.0.0:8443 or [::]:8443), got ${JSON.stringify(text)}`,
    );
  }
  return { host: match[1]!, port: parsePort(match[2]!, "--listen") };
}

const INTRO_SERVER_OPTIONS = {
  config: { type: "string" },
  listen: { type: "string" },
  "stun-port": { type: "string" },
  "no-stun": { type: "boolean" },
  "stun-alt-port": { type: "string" },
  "turn-url": { type: "string", multiple: true },
  "turn-secret": { type: "string" },
  "turn-secret-file": { type: "string" },
  "turn-ttl": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "public-host": { type: "string" },
  "allowed-keys": { type: "string" },
  cluster: { type: "string" },
  metrics: { type: "string" },
  "log-level": { type: "string" },
  "log-format": { type: "string" },
  ...(Object.fromEntries(Object.keys(LIMIT_FLAGS).map((flag) => [flag, { type: "string" }])) as Record<
    LimitFlag,
    { type: "string" }
  >),
  help: { type: "boolean", short: "h" },
} as const;

/**
 * The intro server's options from --config FILE and TUNNELBORE_INTRO_SERVER_* (its own prefix: run's
 * TUNNELBORE_LISTEN must not move an intro server on the same host). See src/commands/config-sources.ts.
 */
const INTRO_SERVER_SOURCES: ConfigSourcesSpec = {
  command: "intro-server",
  errorCode: "intro-usage",
  envPrefix: "TUNNELBORE_INTRO_SERVER_",
  options: INTRO_SERVER_OPTIONS,
  groups: [
    ["stun-port", "stun-alt-port", "no-stun"],
    ["turn-secret", "turn-secret-file"],
  ],
  secrets: { "turn-secret": "use turn-secret-file: FILE (chmod 600) or TUNNELBORE_INTRO_SERVER_TURN_SECRET" },
};

/** Turns argv (after --config FILE and the environment) into server options; ConfigError says what to fix. */
export async function introServerOptionsFromArgs(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<IntroServerCliOptions | "help"> {
  const sources = withConfigSources(argv, INTRO_SERVER_SOURCES, env);
  try {
    return await optionsFrom(sources.argv);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(error.code, sources.explain(error.message), error.context, { cause: error });
  }
}

async function optionsFrom(argv: string[]): Promise<IntroServerCliOptions | "help"> {
  let parsed: ReturnType<typeof parse>;
  function parse() {
    return parseArgs({ args: argv, strict: true, allowPositionals: false, options: INTRO_SERVER_OPTIONS });
  }
  try {
    parsed = parse();
  } catch (error) {
    throw new ConfigError("intro-usage", `${(error as Error).message} (see --help)`, {}, { cause: error });
  }
  const flags = parsed.values;
  if (flags.help) return "help";
  if (!flags.listen) throw new ConfigError("intro-usage", "--listen HOST:PORT is required (see --help)");
  const { host, port } = parseListen(flags.listen);
  const log: LogSettings = {
    level: parseLogLevel(flags["log-level"], "intro-usage"),
    format: parseLogFormat(flags["log-format"], "intro-usage"),
  };
  const options: IntroServerCliOptions = { host, port, log };

  if (flags["no-stun"] && (flags["stun-port"] !== undefined || flags["stun-alt-port"] !== undefined)) {
    throw new ConfigError("intro-usage", "give either --stun-port/--stun-alt-port or --no-stun, not both");
  }
  options.stun = flags["no-stun"]
    ? false
    : {
        port: flags["stun-port"] !== undefined ? parsePort(flags["stun-port"], "--stun-port") : 3478,
        altPort:
          flags["stun-alt-port"] !== undefined ? parsePort(flags["stun-alt-port"], "--stun-alt-port") : 0,
      };

  const turnUrls = flags["turn-url"] ?? [];
  for (const url of turnUrls) {
    if (!/^turns?:[^\s]+$/.test(url)) {
      throw new ConfigError(
        "intro-usage",
        `--turn-url wants turn:HOST[:PORT] or turns:HOST[:PORT], got ${url}`,
      );
    }
  }
  if (flags["turn-secret"] !== undefined && flags["turn-secret-file"] !== undefined) {
    throw new ConfigError("intro-usage", "give either --turn-secret or --turn-secret-file, not both");
  }
  let secret = flags["turn-secret"];
  if (flags["turn-secret-file"] !== undefined) {
    try {
      secret = (await readFile(flags["turn-secret-file"], "utf8")).trim();
    } catch (error) {
      throw new ConfigError(
        "intro-usage",
        `cannot read --turn-secret-file ${flags["turn-secret-file"]}: ${(error as NodeJS.ErrnoException).code}`,
        {},
        { cause: error },
      );
    }
  }
  const hasSecret = secret !== undefined;
  if (turnUrls.length > 0 !== hasSecret) {
    throw new ConfigError("intro-usage", "--turn-url and --turn-secret (or --turn-secret-file) go together");
  }
  if (hasSecret && secret === "") throw new ConfigError("intro-usage", "the TURN secret is empty");
  let ttlSeconds = 3600;
  if (flags["turn-ttl"] !== undefined) {
    if (
      !/^\d+$/.test(flags["turn-ttl"]) ||
      Number(flags["turn-ttl"]) < 60 ||
      Number(flags["turn-ttl"]) > MAX_TURN_TTL_SECONDS
    ) {
      throw new ConfigError("intro-usage", `--turn-ttl wants seconds between 60 and ${MAX_TURN_TTL_SECONDS}`);
    }
    if (!hasSecret) throw new ConfigError("intro-usage", "--turn-ttl needs --turn-url and --turn-secret");
    ttlSeconds = Number(flags["turn-ttl"]);
  }
  if (secret !== undefined) options.turn = { urls: turnUrls, secret, ttlSeconds };

  const certFile = flags["tls-cert"];
  const keyFile = flags["tls-key"];
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError("intro-usage", "--tls-cert and --tls-key go together");
  }
  if (certFile !== undefined && keyFile !== undefined) {
    const read = async (file: string, flag: string) => {
      try {
        return await readFile(file);
      } catch (error) {
        throw new ConfigError(
          "intro-usage",
          `cannot read ${flag} ${file}: ${(error as NodeJS.ErrnoException).code}`,
          {},
          { cause: error },
        );
      }
    };
    options.tls = { cert: await read(certFile, "--tls-cert"), key: await read(keyFile, "--tls-key") };
  }
  if (flags["public-host"] !== undefined) {
    if (!/^(?:[A-Za-z0-9.-]{1,253}|[0-9A-Fa-f:.]{2,45})$/.test(flags["public-host"])) {
      throw new ConfigError(
        "intro-usage",
        `--public-host wants a host name or address, got ${flags["public-host"]}`,
      );
    }
    options.publicHost = flags["public-host"];
  }
  if (flags.cluster !== undefined) options.cluster = { url: parseClusterUrl(flags.cluster) };
  if (flags.metrics !== undefined) options.metricsAddress = parseMetricsAddress(flags.metrics, "intro-usage");
  const allowedKeysFile = flags["allowed-keys"];
  if (typeof allowedKeysFile === "string") {
    options.allowedKeys = await loadAllowedKeys(allowedKeysFile);
    options.allowedKeysFile = allowedKeysFile;
  }
  const limits: Partial<IntroServerLimits> = {};
  for (const [flag, limit] of Object.entries(LIMIT_FLAGS) as Array<[LimitFlag, keyof IntroServerLimits]>) {
    const text = (flags as Record<string, unknown>)[flag];
    if (typeof text !== "string") continue;
    if (!/^\d{1,9}$/.test(text) || Number(text) < 1) {
      throw new ConfigError(
        "intro-usage",
        `--${flag} wants a whole number from 1, got ${JSON.stringify(text)}`,
      );
    }
    limits[limit] = Number(text);
  }
  if (Object.keys(limits).length > 0) options.limits = limits;
  return options;
}

export async function introServerCommand(argv: string[]): Promise<number> {
  let options: IntroServerCliOptions | "help";
  try {
    options = await introServerOptionsFromArgs(argv);
  } catch (error) {
    process.stderr.write(`tunnelbore intro-server: ${(error as Error).message}\n`);
    return error instanceof ConfigError ? 2 : 1;
  }
  if (options === "help") {
    process.stdout.write(INTRO_SERVER_USAGE);
    return 0;
  }

  const logger = createLogger("intro-server", options.log?.level, options.log?.format);
  const notifier = ServiceNotifier.fromEnvironment(logger);
  if (argv.some((arg) => arg === "--turn-secret" || arg.startsWith("--turn-secret="))) {
    logger.warn(
      "--turn-secret shows the secret to every user of this host (ps): use --turn-secret-file FILE",
    );
  }
  // Before any network input is read: what this process may ask of the kernel (src/syscall-filter.ts).
  const filter = installSyscallFilter();
  if (filter.on) logger.info("syscall filter on (seccomp)");
  else logger.warn({ reason: filter.reason }, "running without a syscall filter");
  let server: Awaited<ReturnType<typeof startIntroServer>>;
  const metrics = options.metricsAddress ? new PromIntroServerMetrics() : undefined;
  let metricsServer: MetricsServer | undefined;
  try {
    // First: a busy metrics port (exit 2) stops the start before the server listens.
    if (metrics && options.metricsAddress)
      metricsServer = await MetricsServer.start(options.metricsAddress, metrics, logger);
    server = await startIntroServer({ ...options, logger, metrics });
  } catch (error) {
    await metricsServer?.close();
    process.stderr.write(`tunnelbore intro-server: ${(error as Error).message}\n`);
    if (error instanceof ConfigError) return 2;
    if (error instanceof TunnelboreError) return 1;
    return 1;
  }
  let allowedKeys: AllowedKeysWatcher | undefined;
  const reloadOnHangup = () => void allowedKeys?.reload();
  if (options.allowedKeysFile !== undefined && options.allowedKeys !== undefined) {
    const running = server;
    allowedKeys = watchAllowedKeys(
      options.allowedKeysFile,
      options.allowedKeys,
      (keys) => running.setAllowedKeys(keys),
      logger,
    );
    process.on("SIGHUP", reloadOnHangup);
  }
  const stunAlt = server.stunAltPort !== undefined ? ` (STUN alternate udp ${server.stunAltPort})` : "";
  const stun =
    server.stunPort !== undefined ? ` (STUN udp ${options.host}:${server.stunPort})${stunAlt}` : "";
  if (metrics) metrics.serving = true;
  process.stdout.write(`tunnelbore intro-server: listening on ${server.url}${stun}\n`);
  notifier?.ready(`listening on ${server.url}`);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  logger.info({ signal }, "shutting down");
  notifier?.stopping();
  process.off("SIGHUP", reloadOnHangup);
  allowedKeys?.close();
  if (metrics) metrics.serving = false;
  try {
    await server.close();
    await metricsServer?.close();
  } catch (error) {
    const failure = new RuntimeError("intro-close", "failed to close cleanly", {}, { cause: error });
    process.stderr.write(`tunnelbore intro-server: ${failure.message}: ${(error as Error).message}\n`);
    return 1;
  }
  return 0;
}
