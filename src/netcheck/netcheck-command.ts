// `tunnelbore netcheck`: the command line around netcheck.ts. The servers come from flags, or from the
// running `tunnelbore run` (its control socket answers the servers and TURN credentials it uses), so
// netcheck tests exactly what run uses.
import { readdir } from "node:fs/promises";
import { parseArgs } from "node:util";
import { resolveSecret } from "../commands/secret-option.js";
import { controlSocketPath, DEFAULT_RUN_DIR, requestIceServers } from "../control/control-socket.js";
import { ConfigError, RuntimeError } from "../errors.js";
import { parseIceServerUrl } from "../ice/ice-server-url.js";
import { formatNetcheck } from "./format.js";
import { iceServersAnswerSchema } from "./ice-servers.js";
import { type NetcheckInput, netcheckExitCode, runNetcheck } from "./netcheck.js";

export const NETCHECK_USAGE = `Usage: tunnelbore netcheck [--interface IF | --stun URL.. --turn URL..] [--json]

Checks the network as ICE sees it: this host's addresses, the mapped addresses two STUN servers
see from one local socket and so the NAT's mapping behaviour (no NAT, endpoint-independent, or
address-and-port-dependent: symmetric), whether UDP gets out at all, and a TURN allocation over
UDP, TCP and TLS with the credentials in use.

The servers come from the flags below; without them, from the running \`tunnelbore run\` (the one
named by --interface, or the only one), which answers the STUN/TURN servers and TURN credentials
it uses (the introduction server's) on its control socket (root only).

Options:
  -i, --interface IF          ask the \`tunnelbore run\` of this interface
      --run-dir DIR           where the control sockets live (default ${DEFAULT_RUN_DIR})
      --stun URL              STUN server (stun:HOST:PORT; repeatable: two addresses tell the
                              mapping behaviour, e.g. an introduction server's two STUN ports)
      --turn URL              TURN server (turn:HOST:PORT[?transport=tcp], turns:HOST:PORT;
                              repeatable); TCP is also tried on a turn: URL's server
      --turn-username U
      --turn-password-file FILE
                              the TURN password (or TUNNELBORE_TURN_PASSWORD)
      --timeout SECONDS       per STUN query and TURN allocation (default 4)
      --json                  machine-readable output
  -h, --help                  this help

Exit codes: 0 UDP works (or a TURN allocation does), 1 UDP is blocked and nothing works,
2 bad usage (e.g. no run is active and no servers are given).
`;

const NETCHECK_OPTIONS = {
  interface: { type: "string", short: "i" },
  "run-dir": { type: "string" },
  stun: { type: "string", multiple: true },
  turn: { type: "string", multiple: true },
  "turn-username": { type: "string" },
  "turn-password-file": { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

interface NetcheckValues {
  interface?: string;
  "run-dir"?: string;
  stun?: string[];
  turn?: string[];
  "turn-username"?: string;
  "turn-password-file"?: string;
  timeout?: string;
  json?: boolean;
  help?: boolean;
}

function fromFlags(values: NetcheckValues, env: NodeJS.ProcessEnv, timeoutMs: number): NetcheckInput {
  const stunUrls = values.stun ?? [];
  const turnUrls = values.turn ?? [];
  for (const url of [...stunUrls, ...turnUrls]) parseIceServerUrl(url); // a ConfigError naming a bad one
  if (stunUrls.some((u) => !u.startsWith("stun:")))
    throw new ConfigError("bad-usage", "--stun takes stun: URLs (TURN servers go in --turn)");
  if (turnUrls.some((u) => u.startsWith("stun:")))
    throw new ConfigError("bad-usage", "--turn takes turn: or turns: URLs");
  let turn: NetcheckInput["turn"] = null;
  if (turnUrls.length > 0) {
    const password = resolveSecret(
      { name: "turn-password", env: "TUNNELBORE_TURN_PASSWORD" },
      undefined,
      values["turn-password-file"],
      env,
    );
    for (const warning of password.warnings)
      process.stderr.write(`tunnelbore netcheck: warning: ${warning}\n`);
    if (!values["turn-username"] || password.value === undefined) {
      throw new ConfigError(
        "bad-usage",
        "--turn needs --turn-username and a password (--turn-password-file FILE or TUNNELBORE_TURN_PASSWORD)",
      );
    }
    turn = { urls: turnUrls, username: values["turn-username"], credential: password.value };
  }
  return { source: "flags", stunUrls, turn, timeoutMs };
}

/** The interface of the only `tunnelbore run` with a control socket in `runDir`. */
async function onlyInterface(runDir: string): Promise<string> {
  const names = (await readdir(runDir).catch(() => [] as string[]))
    .filter((f) => f.endsWith(".sock"))
    .map((f) => f.slice(0, -5));
  if (names.length === 1 && names[0]) return names[0];
  throw new ConfigError(
    "bad-usage",
    names.length === 0
      ? `no tunnelbore run is active (no control socket in ${runDir}): give --stun/--turn`
      : `several interfaces are running (${names.join(", ")}): name one with --interface`,
  );
}

async function fromRunning(values: NetcheckValues, timeoutMs: number): Promise<NetcheckInput> {
  const runDir = values["run-dir"] ?? DEFAULT_RUN_DIR;
  const name = values.interface ?? (await onlyInterface(runDir));
  const answer = iceServersAnswerSchema.safeParse(await requestIceServers(controlSocketPath(runDir, name)));
  if (!answer.success) {
    throw new RuntimeError("control-bad-answer", `tunnelbore run on ${name} answered no usable ICE servers`, {
      interface: name,
    });
  }
  const { stunUrls, turn } = answer.data;
  return { source: `tunnelbore run on ${name}`, stunUrls, turn, timeoutMs, interfaceName: name };
}

export async function netcheckCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let values: NetcheckValues;
  try {
    values = parseArgs({ args: argv, strict: true, options: NETCHECK_OPTIONS }).values;
  } catch (err) {
    throw new ConfigError("bad-usage", `${(err as Error).message}\n\n${NETCHECK_USAGE}`);
  }
  if (values.help) {
    process.stdout.write(NETCHECK_USAGE);
    return 0;
  }
  const timeoutSeconds = values.timeout === undefined ? 4 : Number(values.timeout);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0 || timeoutSeconds > 60) {
    throw new ConfigError(
      "bad-usage",
      `--timeout wants seconds (0 < s <= 60), got ${JSON.stringify(values.timeout)}`,
    );
  }
  const timeoutMs = Math.round(timeoutSeconds * 1000);
  const flagged = values.stun !== undefined || values.turn !== undefined;
  if (flagged && values.interface !== undefined)
    throw new ConfigError("bad-usage", "give either --interface or --stun/--turn, not both");
  const input = flagged ? fromFlags(values, env, timeoutMs) : await fromRunning(values, timeoutMs);
  if (input.stunUrls.length === 0 && !input.turn)
    throw new ConfigError("bad-usage", `no STUN or TURN server to check (from ${input.source})`);
  const report = await runNetcheck(input);
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatNetcheck(report));
  return netcheckExitCode(report);
}
