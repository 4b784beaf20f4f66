// What `tunnelbore run` loads before it knows it needs it: prom-client (--metrics) and yaml (--config)
// cost ~13 and ~9 MiB of RSS in every process that loads them, the privileged parent included.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const execFileAsync = promisify(execFile);

/** The CommonJS packages (prom-client and yaml are) loaded once `modules` are imported, in a fresh node. */
async function packagesLoadedBy(modules: string[]): Promise<string[]> {
  const script = `
    import { createRequire } from "node:module";
    for (const m of ${JSON.stringify(modules)}) await import(m);
    const names = Object.keys(createRequire(import.meta.url).cache)
      .map((f) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(f)?.[1])
      .filter(Boolean);
    console.log(JSON.stringify([...new Set(names)]));`;
  const { stdout } = await execFileAsync(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "-e", script],
    {
      cwd: process.cwd(),
    },
  );
  return JSON.parse(stdout) as string[];
}

describe("run's footprint", () => {
  it("loads neither prom-client nor yaml until metrics or a config file are asked for", async () => {
    const loaded = await packagesLoadedBy(["./src/commands/run.ts", "./src/all-interfaces/run-all.ts"]);
    expect(loaded).toContain("pino"); // the probe sees CommonJS packages run.ts does load
    expect(loaded).not.toContain("prom-client");
    expect(loaded).not.toContain("yaml");
  });

  it("loads them when they are used", async () => {
    const loaded = await packagesLoadedBy(["./src/metrics/run-metrics.ts"]);
    expect(loaded).toContain("prom-client");
  });
});
