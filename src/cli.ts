#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { releaseCommand } from "./commands/release.js";
import { runCommand } from "./commands/run.js";
import { statusCommand } from "./commands/status.js";
import { ConfigError, TunnelboreError } from "./errors.js";

const USAGE = `Usage: tunnelbore COMMAND [options]

Commands:
  run            proxy a WireGuard interface's peers (tunnelbore run --help)
  intro-server   run an introduction server (tunnelbore intro-server --help)
  status         show each peer's state (tunnelbore status --help)
  release        give WireGuard its real endpoints back, e.g. before wg-quick saves its
                 configuration (tunnelbore release --help)
  ping           probe the path to a peer: kind, round trip, loss (tunnelbore ping --help)
  netcheck       check the network: NAT mapping behaviour, UDP, TURN over UDP/TCP/TLS
                 (tunnelbore netcheck --help)

Options:
  -h, --help     this help (tunnelbore help COMMAND: that command's help)
  -v, --version  the version
`;

type Command = (argv: string[]) => Promise<number>;

async function loadCommand(name: string): Promise<Command | null> {
  switch (name) {
    case "run":
      return runCommand;
    case "status":
      return statusCommand;
    case "release":
      return releaseCommand;
    case "ping":
      return (await import("./commands/ping.js")).pingCommand;
    case "netcheck":
      return (await import("./netcheck/netcheck-command.js")).netcheckCommand;
    case "intro-server":
      return (await import("../intro-server/cli.js")).introServerCommand;
    default:
      return null;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [first, ...afterFirst] = argv;
  // `tunnelbore help COMMAND` is `tunnelbore COMMAND --help`.
  const helpFor = first === "help" ? afterFirst[0] : undefined;
  const [name, ...rest] = helpFor !== undefined ? [helpFor, "--help"] : argv;
  if (!name || name === "-h" || name === "--help" || name === "help") {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  if (name === "-v" || name === "--version") {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    process.stdout.write(`tunnelbore ${pkg.version}\n`);
    return 0;
  }
  const command = await loadCommand(name);
  if (!command) {
    process.stderr.write(`tunnelbore: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await command(rest);
  } catch (err) {
    if (err instanceof TunnelboreError) {
      process.stderr.write(`tunnelbore ${name}: ${err.message}\n`);
      return err instanceof ConfigError ? 2 : 1;
    }
    process.stderr.write(`tunnelbore ${name}: unexpected failure: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

// Exit explicitly: werift-ice leaves TURN refresh timers behind that would keep the process alive.
process.exit(await main(process.argv.slice(2)));
