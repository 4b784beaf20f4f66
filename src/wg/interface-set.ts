// The set of WireGuard interfaces on this host (this network namespace), for `tunnelbore run` without
// --interface: what `wg show interfaces` lists, and what changed since the last look.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { interfaceIndex } from "./interface-watch.js";
import { wgFailure } from "./wg-command.js";

const execFileAsync = promisify(execFile);

/** A name `wg` and the kernel accept as an interface name (the same check as --interface's). */
export const INTERFACE_NAME = /^[A-Za-z0-9_.=+-]{1,15}$/;

/**
 * The WireGuard interfaces of this network namespace, sorted. `wg show interfaces` also lists every
 * userspace (wireguard-go) interface whose UAPI socket is in /var/run/wireguard, which all namespaces
 * share: only names that are also a network device here count, or another namespace's interface would
 * be taken over (and a stale socket of a dead wireguard-go would look like an interface).
 */
export async function listWireGuardInterfaces(): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync("wg", ["show", "interfaces"]));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    throw wgFailure("(all)", ["show", "interfaces"], e.code, e.stderr?.trim() ?? "", e.message);
  }
  const names = [...new Set(stdout.split(/\s+/).filter((name) => INTERFACE_NAME.test(name)))];
  const present = await Promise.all(names.map(async (name) => (await interfaceIndex(name)) !== null));
  return names.filter((_, i) => present[i]).sort();
}

/** What changed between two looks at the interface set. */
export interface InterfaceSetChange {
  /** New since the last look, sorted. */
  added: string[];
  /** Gone since the last look, sorted. */
  removed: string[];
}

/** The difference between the interfaces known and the ones seen now. */
export function diffInterfaceSet(known: Iterable<string>, seen: Iterable<string>): InterfaceSetChange {
  const before = new Set(known);
  const now = new Set(seen);
  return {
    added: [...now].filter((name) => !before.has(name)).sort(),
    removed: [...before].filter((name) => !now.has(name)).sort(),
  };
}

/**
 * Decides which interfaces are gone for good: one missing from a look is only absent; it is removed
 * once it has been missing for `graceMs` (a WireGuard restart recreates its interface within moments,
 * and the instance serving it already knows how to carry on across that). Pure, with an injected time.
 */
export class InterfaceSetTracker {
  private readonly present = new Set<string>();
  private readonly missingSince = new Map<string, number>();

  constructor(private readonly graceMs: number) {}

  /** The interfaces being served: seen, or missing for less than the grace. */
  get known(): string[] {
    return [...this.present].sort();
  }

  /** Takes one look's result; returns the interfaces to start and the ones to stop. */
  update(seen: Iterable<string>, now: number): InterfaceSetChange {
    const seenSet = new Set(seen);
    const { added, removed } = diffInterfaceSet(this.present, seenSet);
    for (const name of added) this.present.add(name);
    for (const name of seenSet) this.missingSince.delete(name);
    const gone: string[] = [];
    for (const name of removed) {
      const since = this.missingSince.get(name) ?? now;
      this.missingSince.set(name, since);
      if (now - since >= this.graceMs) gone.push(name);
    }
    for (const name of gone) {
      this.present.delete(name);
      this.missingSince.delete(name);
    }
    return { added, removed: gone };
  }
}
