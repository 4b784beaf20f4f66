// `status` and `release` without --interface: every interface a `tunnelbore run` serves, found by the
// control sockets IF.sock in the run directory.
import { readdir } from "node:fs/promises";
import { TunnelboreError } from "../errors.js";

/** The interfaces with a control socket IF.sock in the run directory, sorted. */
export async function runningInterfaces(runDir: string): Promise<string[]> {
  const files = await readdir(runDir).catch(() => [] as string[]);
  return files
    .filter((f) => f.endsWith(".sock"))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** One interface's answer, or why there is none (`stale`: a socket nobody serves any more). */
export type InterfaceAnswer<T> =
  | { interface: string; ok: true; value: T }
  | { interface: string; ok: false; stale: boolean; message: string };

/** Asks every interface at once; one that cannot answer does not keep the others' answers back. */
export function askEveryInterface<T>(
  names: string[],
  ask: (name: string) => Promise<T>,
): Promise<InterfaceAnswer<T>[]> {
  return Promise.all(
    names.map(async (name): Promise<InterfaceAnswer<T>> => {
      try {
        return { interface: name, ok: true, value: await ask(name) };
      } catch (err) {
        const stale = err instanceof TunnelboreError && err.code === "not-running";
        return { interface: name, ok: false, stale, message: (err as Error).message };
      }
    }),
  );
}
