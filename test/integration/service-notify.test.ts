// sd_notify from the process itself: the datagrams systemd would read, received by socat on a Unix
// datagram socket (a path, and the abstract namespace systemd itself uses).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { Logger } from "../../src/log.js";
import { ServiceNotifier } from "../../src/service-notify.js";
import { waitFor } from "../support/wait-for.js";

const children: ChildProcess[] = [];
const dirs: string[] = [];

afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** socat printing every datagram it receives on `address` (UNIX-RECV:path or ABSTRACT-RECV:name). */
function receiver(address: string): { received: () => string } {
  let out = "";
  const child = spawn("socat", ["-u", address, "-"], { stdio: ["ignore", "pipe", "inherit"] });
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  children.push(child);
  return { received: () => out };
}

function capture(): { lines: Array<{ level: number; msg: string }>; logger: Logger } {
  const lines: Array<{ level: number; msg: string }> = [];
  return {
    lines,
    logger: pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l)) }),
  };
}

describe("ServiceNotifier", () => {
  it("does nothing outside systemd", () => {
    expect(ServiceNotifier.fromEnvironment(capture().logger, {})).toBeNull();
  });

  it("sends READY, STATUS, RELOADING and STOPPING to NOTIFY_SOCKET, and hides it from children", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tbt-notify-"));
    dirs.push(dir);
    const socket = join(dir, "notify");
    const { received } = receiver(`UNIX-RECV:${socket}`);
    await waitFor(() => existsSync(socket), { what: "socat's socket" });
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: socket };
    const { lines, logger } = capture();
    const notifier = ServiceNotifier.fromEnvironment(logger, env);
    expect(env.NOTIFY_SOCKET).toBeUndefined();
    notifier!.ready("2 peers");
    notifier!.reloading();
    notifier!.stopping();
    await waitFor(() => received().includes("STOPPING=1"), { what: "three notifications" });
    expect(received()).toBe("READY=1\nSTATUS=2 peersRELOADING=1STOPPING=1");
    expect(lines).toEqual([]);
  });

  it("reaches an abstract socket (@name), as systemd's own", async () => {
    const name = `tbt-notify-${process.pid}-${Date.now()}`;
    const { received } = receiver(`ABSTRACT-RECV:${name}`);
    const { logger } = capture();
    const notifier = ServiceNotifier.fromEnvironment(logger, { NOTIFY_SOCKET: `@${name}` })!;
    await waitFor(
      () => {
        notifier.status("starting");
        return received().includes("STATUS=starting");
      },
      { what: "the datagram" },
    );
  });

  it("a socket nobody listens on is a warning, not a failure", () => {
    const { lines, logger } = capture();
    ServiceNotifier.fromEnvironment(logger, { NOTIFY_SOCKET: "/nonexistent/tbt-notify" })!.ready();
    expect(lines.map((l) => [l.level, l.msg])).toEqual([[40, "cannot notify systemd"]]);
  });
});
