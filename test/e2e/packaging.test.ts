// What `npm pack` makes is a working `tunnelbore` once installed globally: the build is in it, the
// patched werift-ice travels bundled, and without the optional `bpf` module everything but the kernel
// fast path still works (`--ebpf auto` falls back to user space, saying why).
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const execFileAsync = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

let tmp: string;
let prefix: string;
let installed: string;
let bin: string;

async function run(
  cmd: string,
  args: string[],
  cwd = tmp,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(cmd, args, { cwd, timeout: 60_000, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "tbt-pack-"));
  prefix = join(tmp, "prefix");
  // prepack builds (tsc, eBPF object, native addon): the tarball has dist/ whatever the tree had.
  const { stdout } = await execFileAsync("npm", ["pack", "--json", "--pack-destination", tmp], {
    cwd: ROOT,
    timeout: 180_000,
    maxBuffer: 64 << 20,
  });
  const [packed] = JSON.parse(stdout.slice(stdout.indexOf("["))) as { filename: string }[];
  if (!packed) throw new Error(`npm pack printed no file: ${stdout}`);
  await execFileAsync(
    "npm",
    ["install", "-g", "--no-audit", "--no-fund", "--prefix", prefix, join(tmp, packed.filename)],
    {
      cwd: tmp,
      timeout: 180_000,
      maxBuffer: 64 << 20,
    },
  );
  installed = join(prefix, "lib/node_modules/tunnelbore");
  bin = join(prefix, "bin/tunnelbore");
}, 360_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("npm pack, then npm install -g of the tarball", () => {
  it("gives a tunnelbore that prints its version and a command's help", async () => {
    const version = await run(bin, ["--version"]);
    expect(version).toMatchObject({ code: 0, stdout: `tunnelbore ${VERSION}\n` });
    const help = await run(bin, ["run", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: tunnelbore run \[--interface IF\] \[options\]/);
    expect((await run(bin, ["help", "status"])).stdout).toMatch(/^Usage: tunnelbore status/);
    expect(existsSync(join(installed, "completions/tunnelbore.bash"))).toBe(true);
    expect(existsSync(join(installed, "dist/ebpf/fast-path.bpf.o"))).toBe(true);
  });

  it("uses the patched werift-ice (bundled with the package, not fetched unpatched)", () => {
    const werift = join(installed, "node_modules/werift-ice");
    const transaction = readFileSync(
      join(
        werift,
        JSON.parse(readFileSync(join(werift, "package.json"), "utf8")).main as string,
        "../stun/transaction.js",
      ),
      "utf8",
    );
    expect(transaction).toContain("challengeReceived");
  });

  it("without the bpf module: --version works, and the fast path is unavailable with the reason", async () => {
    // Installed as an optional dependency (the registry is reachable here), then taken away.
    expect(existsSync(join(installed, "node_modules/bpf/package.json"))).toBe(true);
    rmSync(join(installed, "node_modules/bpf"), { recursive: true, force: true });
    expect(existsSync(join(installed, "node_modules/bpf"))).toBe(false);
    expect(await run(bin, ["--version"])).toMatchObject({ code: 0, stdout: `tunnelbore ${VERSION}\n` });
    expect((await run(bin, ["run", "--help"])).code).toBe(0);
    // What `tunnelbore run --ebpf auto` does: chooseKernelFastPath with the real loader.
    const choice = join(installed, "dist/src/proxy/kernel-fast-path-choice.js");
    const script = `
      const { chooseKernelFastPath } = await import(${JSON.stringify(choice)});
      const warnings = [];
      const logger = { info() {}, warn(o, m) { warnings.push([o, m]); } };
      const auto = await chooseKernelFastPath({ setting: "auto", wireguardInterface: "wg-none", logger });
      let on = null;
      try { await chooseKernelFastPath({ setting: "on", wireguardInterface: "wg-none", logger }); }
      catch (err) { on = { name: err.name, message: err.message }; }
      console.log(JSON.stringify({ auto: { program: auto.program, reason: auto.reason }, warnings, on }));`;
    const out = await run(process.execPath, ["--input-type=module", "-e", script], installed);
    expect(out.code).toBe(0);
    const result = JSON.parse(out.stdout) as {
      auto: { program: null; reason: string };
      warnings: [{ reason: string }, string][];
      on: { name: string; message: string } | null;
    };
    expect(result.auto.program).toBeNull();
    expect(result.auto.reason).toMatch(/needs the optional "bpf" module/);
    expect(result.warnings[0]?.[1]).toMatch(/kernel fast path unavailable: forwarding in user space/);
    expect(result.on?.name).toBe("ConfigError");
    expect(result.on?.message).toMatch(/--ebpf on: the kernel fast path cannot be loaded \(.*"bpf" module/);
  });
});
