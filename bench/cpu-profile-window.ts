// Where a process spent its CPU in one time window of a V8 CPU profile (node --cpu-prof), by function
// (self time) and by module: a benchmark's measured window, not the whole run a profile covers.
//   npx tsx bench/cpu-profile-window.ts FILE.cpuprofile FROM_S TO_S [TOP]
// FROM_S and TO_S are seconds since the profile started (the process's start, near enough: bench
// logs such as lazy-peers' TBT_BENCH_LAZY_PROFILE windows give them).
import { readFileSync } from "node:fs";
import { basename } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time (ms) by label in [fromS, toS), and the window's length in ms. */
export function selfTimeInWindow(
  profile: CpuProfile,
  fromS: number,
  toS: number,
  labelOf: (node: ProfileNode) => string,
): Map<string, number> {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  let atUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    atUs += profile.timeDeltas[i] ?? 0;
    const s = atUs / 1e6;
    if (s < fromS || s >= toS) continue;
    // A sample's time is the gap to the next one.
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const node = nodes.get(profile.samples[i] ?? -1);
    if (!node) continue;
    const label = labelOf(node);
    totals.set(label, (totals.get(label) ?? 0) + ms);
  }
  return totals;
}

function byFunction(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  return `${functionName || "(anonymous)"} ${url ? `${basename(url)}:${lineNumber + 1}` : ""}`.trim();
}

function byModule(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  if (!url) return functionName; // (garbage collector), (program), (idle)
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `npm:${pkg[1]}`;
  if (url.startsWith("node:")) return url;
  const own = /\/(src|intro-server|bench)\/(.*)$/.exec(url);
  return own ? `${own[1]}/${own[2]}` : url;
}

function print(title: string, totals: Map<string, number>, windowMs: number, top: number): void {
  const rows = [...totals].filter(([label]) => label !== "(idle)").sort((a, b) => b[1] - a[1]);
  const busy = rows.reduce((sum, [, ms]) => sum + ms, 0);
  process.stdout.write(
    `\n${title}: ${busy.toFixed(0)} ms busy of ${windowMs.toFixed(0)} ms (${((100 * busy) / windowMs).toFixed(2)} % of a core, main thread)\n`,
  );
  for (const [label, ms] of rows.slice(0, top))
    process.stdout.write(
      `${ms.toFixed(1).padStart(9)} ms ${((100 * ms) / windowMs).toFixed(3).padStart(7)} %  ${label}\n`,
    );
}

if (process.argv[1] && import.meta.url.endsWith(basename(process.argv[1]))) {
  const [file, from, to, top] = process.argv.slice(2);
  if (!file || from === undefined || to === undefined) {
    process.stderr.write("usage: cpu-profile-window.ts FILE FROM_S TO_S [TOP]\n");
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const fromS = Number(from);
  const toS = Number(to);
  const windowMs = (toS - fromS) * 1000;
  const n = Number(top ?? 25);
  print("by module", selfTimeInWindow(profile, fromS, toS, byModule), windowMs, n);
  print("by function", selfTimeInWindow(profile, fromS, toS, byFunction), windowMs, n);
}
