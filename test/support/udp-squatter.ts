import { type ChildProcess, spawn } from "node:child_process";

export const NOBODY = 65534;

/** A process of another user (uid 65534 by default) holding UDP ports Tunnelbore wants. */
export interface UdpSquatter {
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Starts a child running as `nobody` that binds every `address:port` of `ports` (udp4, exclusive, no
 * SO_REUSEADDR: what any unprivileged user can do) and resolves once all are bound. `prefix` runs it
 * elsewhere, e.g. ["ip", "netns", "exec", NS].
 */
export async function startUdpSquatter(
  address: string,
  ports: number[],
  prefix: string[] = [],
): Promise<UdpSquatter> {
  const script = `
const dgram = require("node:dgram");
const ports = ${JSON.stringify(ports)};
let left = ports.length;
for (const port of ports) {
  const s = dgram.createSocket("udp4");
  s.on("error", (e) => { console.log("failed " + port + " " + e.code); process.exit(1); });
  s.bind({ address: ${JSON.stringify(address)}, port, exclusive: true }, () => { if (--left === 0) console.log("ready"); });
}
setInterval(() => {}, 1 << 30);
`;
  const asNobody = ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups"];
  const [cmd, ...args] = [...prefix, ...asNobody, process.execPath, "-e", script];
  const child: ChildProcess = spawn(cmd!, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`squatter not ready: ${output}`)), 30_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`squatter exited (${code}): ${output}`));
    });
  });
  const pid = child.pid!;
  return {
    pid,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGKILL");
      await exited;
    },
  };
}
