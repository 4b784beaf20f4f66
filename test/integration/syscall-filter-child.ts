// For test/integration/syscall-filter.test.ts: installs the worker's syscall filter on this process,
// then does what the worker does (reads files, UDP, a thread, `ip` under setpriv) and runs the probe
// given (test/lab/syscall-probe.c). Prints one JSON line.
import { execFile } from "node:child_process";
import dgram from "node:dgram";
import { readdir, readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { Worker } from "node:worker_threads";
import { installSyscallFilter } from "../../src/syscall-filter.js";

const execFileAsync = promisify(execFile);
const probe = process.argv[2] ?? "";
const filter = installSyscallFilter();

const file = (await readFile("/proc/self/status", "utf8")).length > 0;
const socket = dgram.createSocket("udp4");
await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
const echoed = new Promise<string>((resolve) => socket.once("message", (m) => resolve(m.toString())));
socket.send("hello", socket.address().port, "127.0.0.1");
const udp = (await echoed) === "hello";
socket.close();
const worker = new Worker("require('node:worker_threads').parentPort.postMessage(6 * 7)", { eval: true });
const thread = (await new Promise((resolve) => worker.once("message", resolve))) === 42;
await worker.terminate();
const ip = (await execFileAsync("setpriv", ["--pdeathsig", "TERM", "ip", "-o", "link", "show", "lo"])).stdout;
const calls = Object.fromEntries(
  (await execFileAsync(probe)).stdout
    .trim()
    .split("\n")
    .map((line) => {
      const [name = "", errno = ""] = line.split(" ");
      return [name, Number(errno)];
    }),
);
const threads: number[] = [];
for (const tid of await readdir("/proc/self/task")) {
  const status = await readFile(`/proc/self/task/${tid}/status`, "utf8").catch(() => "");
  const mode = /^Seccomp:\s*(\d)/m.exec(status)?.[1];
  if (mode !== undefined) threads.push(Number(mode));
}
process.stdout.write(
  `${JSON.stringify({ filter, file, udp, thread, ip: ip.includes("lo"), calls, threads })}\n`,
);
