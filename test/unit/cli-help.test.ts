// `tunnelbore help COMMAND`, and the bash completion kept in step with every command's --help.
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT, runCliSource } from "../support/cli-source.js";

const execFileAsync = promisify(execFile);
const COMPLETION = join(ROOT, "completions/tunnelbore.bash");
const COMMANDS = ["run", "intro-server", "status", "release", "ping", "netcheck"];

/** Every long and short flag a help text names, descriptions included (e.g. --no-wait-for-interface). */
function flagsOf(help: string): string[] {
  return [...new Set(help.match(/(?<![\w-])--?[A-Za-z][a-z0-9-]*/g) ?? [])].filter(
    (f) => !/^-[A-Za-z]{2,}$/.test(f),
  );
}

const tmp = mkdtempSync(join(tmpdir(), "tbt-completion-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs the completion function as bash would for `line` (the last word is the one completed). */
async function complete(words: string[], path = process.env.PATH ?? ""): Promise<string[]> {
  const script = `source ${JSON.stringify(COMPLETION)}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")})
COMP_CWORD=${words.length - 1}
_tunnelbore
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const { stdout } = await execFileAsync("bash", ["--norc", "--noprofile", "-c", script], {
    env: { ...process.env, PATH: path },
  });
  return stdout.split("\n").filter((l) => l !== "");
}

describe("tunnelbore help COMMAND", () => {
  it.each(COMMANDS)("help %s prints what %s --help prints, exit 0", async (command) => {
    const viaHelp = await runCliSource(["help", command]);
    const viaFlag = await runCliSource([command, "--help"]);
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.stdout).toMatch(new RegExp(`^Usage: tunnelbore ${command} `));
    expect(viaHelp.stdout).toBe(viaFlag.stdout);
  });

  it("help with an unknown command says so and exits 2; help alone is the general usage", async () => {
    const unknown = await runCliSource(["help", "frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
    const general = await runCliSource(["help"]);
    expect(general.code).toBe(0);
    expect(general.stdout).toMatch(/^Usage: tunnelbore COMMAND/);
  });
});

describe("bash completion", () => {
  const script = readFileSync(COMPLETION, "utf8");

  it.each(COMMANDS)("names every flag of %s --help in that command's list", async (command) => {
    const help = (await runCliSource([command, "--help"])).stdout;
    const flags = flagsOf(help);
    expect(flags).toContain("--help");
    // The command's own branch of the case statement: from `command)` to its `;;`.
    const branch = script.match(new RegExp(`\\n\\s+${command}\\)\\n([\\s\\S]*?);;`))?.[1] ?? "";
    expect(branch).not.toBe("");
    const listed = new Set(branch.match(/--?[A-Za-z][a-z0-9-]*/g));
    expect(flags.filter((f) => !listed.has(f))).toEqual([]);
    // And what bash offers after `tunnelbore COMMAND -` is exactly that list.
    expect((await complete(["tunnelbore", command, "-"])).sort()).toEqual([...listed].sort());
  });

  it("completes commands, and WireGuard interfaces after --interface (from wg show interfaces)", async () => {
    expect(await complete(["tunnelbore", "st"])).toEqual(["status"]);
    expect(await complete(["tunnelbore", "help", "re"])).toEqual(["release"]);
    const bin = join(tmp, "bin");
    rmSync(bin, { recursive: true, force: true });
    await execFileAsync("mkdir", ["-p", bin]);
    writeFileSync(
      join(bin, "wg"),
      '#!/bin/sh\n[ "$1 $2" = "show interfaces" ] && echo "wg0 wg-home" && exit 0\nexit 1\n',
    );
    chmodSync(join(bin, "wg"), 0o755);
    const path = `${bin}:${process.env.PATH ?? ""}`;
    expect(await complete(["tunnelbore", "run", "--interface", ""], path)).toEqual(["wg0", "wg-home"]);
    expect(await complete(["tunnelbore", "status", "-i", "wg-"], path)).toEqual(["wg-home"]);
    expect(await complete(["tunnelbore", "run", "--ebpf", ""])).toEqual(["auto", "on", "off"]);
    // ping's -i is its interval, not an interface; -c a count: values only the user knows.
    expect(await complete(["tunnelbore", "ping", "--interface", ""], path)).toEqual(["wg0", "wg-home"]);
    expect(await complete(["tunnelbore", "ping", "-i", ""], path)).toEqual([]);
    expect(await complete(["tunnelbore", "ping", "-c", ""], path)).toEqual([]);
    expect(await complete(["tunnelbore", "run", "--log-format", ""])).toEqual(["json", "pretty"]);
  });
});
