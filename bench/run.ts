// Runs every benchmark in sequence and prints one table each, plus the machine they ran on.
//   npm run bench                 (builds first; about 4 minutes on 2 cores)
//   npm run bench -- forwarding   (only the benchmarks whose name contains the argument)
import { readFileSync } from "node:fs";
import { availableParallelism, loadavg, release, totalmem } from "node:os";
import { benchForwarding } from "./forwarding.js";
import { benchIntro } from "./intro.js";
import { benchIperfStatic } from "./iperf-static.js";
import { benchMac1 } from "./mac1.js";
import { type BenchRow, formatTable } from "./table.js";

const BENCHMARKS: Array<{ name: string; what: string; run: () => Promise<BenchRow[]> }> = [
  { name: "mac1", what: "mac1 key checks and identify", run: benchMac1 },
  { name: "forwarding", what: "forwarding on loopback, proxy vs direct", run: benchForwarding },
  { name: "iperf-static", what: "iperf3 TCP through wireguard-go, static path", run: benchIperfStatic },
  { name: "intro", what: "introduction server", run: benchIntro },
];

/** CPU count and model, memory, kernel, Node version and load, as docs/benchmarks.md records them. */
export function machineLine(): string {
  const model = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown CPU";
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  return `machine: ${availableParallelism()} CPUs (${model}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, Node ${process.version}, load average ${load}`;
}

const filter = process.argv[2];
const selected = BENCHMARKS.filter((b) => !filter || b.name.includes(filter));
if (selected.length === 0) {
  console.error(`no benchmark matches "${filter}"; known: ${BENCHMARKS.map((b) => b.name).join(", ")}`);
  process.exit(2);
}
console.log(machineLine());
let failed = 0;
for (const bench of selected) {
  const started = performance.now();
  console.log(`\n== ${bench.name}: ${bench.what}`);
  try {
    const rows = await bench.run();
    console.log(formatTable(rows));
    console.log(`(${((performance.now() - started) / 1000).toFixed(0)} s)`);
  } catch (err) {
    failed++;
    console.error(`${bench.name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
}
console.log(`\n${machineLine()}`);
process.exit(failed ? 1 : 0);
