// What every benchmark in the namespace lab checks first: root with network namespaces, the built CLI
// (the lab runs dist/), and no lab left behind by a killed run.
import { existsSync } from "node:fs";
import { cleanupStale, labSupported } from "../test/lab/lab-housekeeping.js";
import { CLI } from "../test/lab/tunnelbore.js";

/** Throws, naming the benchmark, when it cannot run here; clears what a killed run left. */
export async function labPreflight(benchmark: string): Promise<void> {
  if (!(await labSupported()))
    throw new Error(`the ${benchmark} benchmark builds network namespaces: run it as root`);
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  await cleanupStale();
}
