// Where WireGuard's transport data is forwarded: in the kernel (the tc/eBPF fast path) or in user space.
// `auto` (the default) takes the kernel wherever the kernel and our privileges allow it and says once, in
// one log line, why not otherwise; `on` insists (a start that cannot load it is a configuration error,
// exit 2); `off` never loads it. Status shows the outcome, so nobody has to guess from throughput.
import { FastPathProgram } from "../../ebpf/loader.js";
import { ConfigError } from "../errors.js";
import type { Logger } from "../log.js";
import type { FastPathControl } from "../privsep/privileged-ops.js";
import type { UdpIo } from "./batched-udp.js";
import { KernelForwarder } from "./kernel-forwarder.js";

export type KernelFastPathSetting = "auto" | "on" | "off";

export const KERNEL_FAST_PATH_SETTINGS: readonly KernelFastPathSetting[] = ["auto", "on", "off"];

/** What status shows of the choice. */
export interface ForwardingStatus {
  /** What was asked for (`--ebpf`). */
  setting: KernelFastPathSetting;
  /** Where transport data of direct, static and relayed-over-UDP paths goes. */
  mode: "kernel" | "user space";
  /** Why user space, when it is (off by request, or what the kernel or the host refused). */
  reason: string | null;
  /** The interfaces the program is attached to (empty in user space). */
  interfaces: string[];
  /** How Tunnelbore's own sockets on WireGuard's side move datagrams: batched (native) or dgram. */
  userSpaceIo: UdpIo;
}

export interface KernelFastPathChoice {
  program: FastPathControl | null;
  forwarder: KernelForwarder | null;
  /** Why user space, or null when the kernel forwards. */
  reason: string | null;
}

export interface ChooseOptions {
  setting: KernelFastPathSetting;
  wireguardInterface: string;
  logger: Logger;
  /** Loads the program (tests pass one that fails). */
  load?: (wireguardInterface: string) => Promise<FastPathControl>;
}

/** Loads the kernel fast path as `setting` asks; throws a ConfigError only for `on`. */
export async function chooseKernelFastPath(options: ChooseOptions): Promise<KernelFastPathChoice> {
  const { setting, wireguardInterface, logger } = options;
  if (setting === "off") {
    logger.info("forwarding in user space (--ebpf off)");
    return { program: null, forwarder: null, reason: "turned off (--ebpf off)" };
  }
  let program: FastPathControl;
  try {
    program = await (options.load ?? ((name) => FastPathProgram.load(name)))(wireguardInterface);
  } catch (err) {
    const why = (err as Error).message;
    if (setting === "on") {
      throw new ConfigError(
        "ebpf-unavailable",
        `--ebpf on: the kernel fast path cannot be loaded (${why}); use --ebpf auto or off to forward in user space`,
        { interface: wireguardInterface },
        { cause: err },
      );
    }
    // One line, at warn: throughput is about half of the kernel's, and the user may be able to fix it.
    logger.warn({ reason: why }, "kernel fast path unavailable: forwarding in user space");
    return { program: null, forwarder: null, reason: why };
  }
  const forwarder = new KernelForwarder(program, { wireguardInterface, logger });
  logger.info({ tcPreference: program.preference }, "kernel fast path loaded: forwarding in the kernel");
  return { program, forwarder, reason: null };
}

/**
 * Normalises `--ebpf` in argv: alone (its older, boolean form, or followed by another flag) it means
 * `--ebpf=on`; `--ebpf auto|on|off` and `--ebpf=VALUE` pass as they are.
 */
export function normalizeKernelFastPathFlag(argv: string[]): string[] {
  return argv.map((arg, i) => {
    if (arg !== "--ebpf") return arg;
    const next = argv[i + 1];
    return next !== undefined && !next.startsWith("-") ? arg : "--ebpf=on";
  });
}

/** The setting named by `--ebpf`'s value (default auto), or null when it names none. */
export function parseKernelFastPathSetting(value: string | undefined): KernelFastPathSetting | null {
  if (value === undefined) return "auto";
  return (KERNEL_FAST_PATH_SETTINGS as readonly string[]).includes(value)
    ? (value as KernelFastPathSetting)
    : null;
}
