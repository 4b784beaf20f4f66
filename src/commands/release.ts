import { readdir } from "node:fs/promises";
import { parseArgs } from "node:util";
import { controlSocketPath, DEFAULT_RUN_DIR, requestRelease } from "../control/control-socket.js";
import { ConfigError, TunnelboreError } from "../errors.js";
import { createLogger } from "../log.js";
import { isLoopbackHost, parseEndpoint } from "../proxy/endpoint.js";
import { restoreEndpoints } from "../wg/endpoint-restore.js";
import { EndpointState } from "../wg/endpoint-state.js";
import { INTERFACE_NAME } from "../wg/interface-set.js";
import { askEveryInterface, runningInterfaces } from "./running-interfaces.js";

export const RELEASE_USAGE = `Usage: tunnelbore release [--interface IF] [--run-dir DIR] [--state-dir DIR]

Gives WireGuard interface IF its peers' real endpoints back (the ones tunnelbore run replaced with
127.x loopback addresses); a running tunnelbore then leaves them alone until the interface is
recreated or it gets SIGHUP. For wg-quick with SaveConfig = true, in the [Interface] section:
  PreDown = tunnelbore release --interface %i
so that wg-quick down saves the real endpoints. Without a running tunnelbore, the endpoints are
restored from its state file. Without --interface: every interface a tunnelbore run serves (or,
when none runs, every interface in the state directory). Exits 0 unless the usage is wrong: a hook
must not stop wg-quick.

Options:
  -i, --interface IF   the WireGuard interface (default: every one)
      --run-dir DIR    where the control sockets live (default ${DEFAULT_RUN_DIR})
      --state-dir DIR  where tunnelbore run keeps replaced endpoints (default /var/lib/tunnelbore)
  -h, --help           this help
`;

export async function releaseCommand(argv: string[]): Promise<number> {
  let values: { interface?: string; "run-dir"?: string; "state-dir"?: string; help?: boolean };
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      options: {
        interface: { type: "string", short: "i" },
        "run-dir": { type: "string" },
        "state-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (err) {
    throw new ConfigError("bad-usage", `${(err as Error).message}\n\n${RELEASE_USAGE}`);
  }
  if (values.help) {
    process.stdout.write(RELEASE_USAGE);
    return 0;
  }
  const runDir = values["run-dir"] ?? DEFAULT_RUN_DIR;
  const stateDir = values["state-dir"] ?? "/var/lib/tunnelbore";
  const name = values.interface;
  if (name === undefined) return releaseEveryInterface(runDir, stateDir);
  if (!INTERFACE_NAME.test(name)) throw new ConfigError("bad-usage", `--interface "${name}" is not valid`);
  try {
    const { restored } = await requestRelease(controlSocketPath(runDir, name));
    process.stdout.write(`tunnelbore released ${name}: ${restored} real endpoint(s) given back\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof TunnelboreError && err.code === "not-running")) {
      process.stderr.write(`tunnelbore release: ${(err as Error).message}\n`);
      return 0;
    }
  }
  await releaseFromState(stateDir, name);
  return 0;
}

/** No tunnelbore runs (it crashed, or was never started): the state file knows the real endpoints. */
async function releaseFromState(stateDir: string, name: string): Promise<void> {
  const state = new EndpointState(stateDir, name);
  const log = createLogger("tunnelbore", "warn");
  try {
    await state.load();
    const restored = await restoreEndpoints(
      name,
      state,
      (_key, endpoint) => endpoint !== null && isLoopbackHost(parseEndpoint(endpoint).host),
      log,
    );
    process.stdout.write(
      `no tunnelbore running for ${name}; ${restored} real endpoint(s) restored from its state\n`,
    );
  } catch (err) {
    process.stderr.write(`tunnelbore release: ${(err as Error).message}\n`);
  }
}

/** Every interface a tunnelbore serves, at once; when none answers, every one the state directory knows. */
async function releaseEveryInterface(runDir: string, stateDir: string): Promise<number> {
  const answers = await askEveryInterface(await runningInterfaces(runDir), (name) =>
    requestRelease(controlSocketPath(runDir, name)),
  );
  for (const answer of answers) {
    if (answer.ok) {
      process.stdout.write(
        `tunnelbore released ${answer.interface}: ${answer.value.restored} real endpoint(s) given back\n`,
      );
    } else if (!answer.stale) process.stderr.write(`tunnelbore release: ${answer.message}\n`);
  }
  if (answers.some((a) => a.ok || !a.stale)) return 0;
  const files = await readdir(stateDir).catch(() => [] as string[]);
  const names = files.flatMap((f) => /^(.+)\.endpoints\.json$/.exec(f)?.[1] ?? []);
  if (names.length === 0) process.stdout.write("no tunnelbore running, and no endpoints remembered\n");
  for (const name of names.filter((n) => INTERFACE_NAME.test(n))) await releaseFromState(stateDir, name);
  return 0;
}
