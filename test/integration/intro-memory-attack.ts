// The red team's memory attack on the introduction server: N authenticated connections, each
// declaring K keys (1,000 a message). Reports the server process's resident memory before and after.
// Run directly to measure any server: `tsx test/integration/intro-memory-attack.ts [cwd-of-server]`.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { newKey, projectRoot, RawIntroConnection, sleep } from "./intro-support.js";

export interface MemoryAttackResult {
  rssBeforeMiB: number;
  rssAfterMiB: number;
  /** Connections the server closed during the attack. */
  closed: number;
  uploadedBytes: number;
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]);
  return Math.round((kb / 1024) * 10) / 10;
}

function randomKeys(count: number): string[] {
  return Array.from({ length: count }, () => {
    const bytes = randomBytes(32);
    bytes[31]! &= 0x7f;
    return bytes.toString("base64");
  });
}

export async function runMemoryAttack(
  options: { serverRoot?: string; connections?: number; keysEach?: number } = {},
): Promise<MemoryAttackResult> {
  const { serverRoot = projectRoot, connections = 40, keysEach = 16_000 } = options;
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "intro-server/main.ts", "--listen", "127.0.0.1:0", "--no-stun"],
    {
      cwd: serverRoot,
      stdio: ["ignore", "pipe", "ignore"],
      env: { ...process.env, TUNNELBORE_LOG: "error" },
    },
  );
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const match = /listening on (ws:\/\/\S+)/.exec(out);
        if (match) resolve(match[1]!);
      });
      child.once("exit", (code) => reject(new Error(`server exited ${code}`)));
    });
    await sleep(1_000);
    const rssBeforeMiB = rssMiB(child.pid!);
    let closed = 0;
    let uploadedBytes = 0;
    const raws: RawIntroConnection[] = [];
    for (let i = 0; i < connections; i++) {
      const raw = await RawIntroConnection.open(url);
      raws.push(raw);
      void raw.closed.then(() => closed++);
      await raw.authenticate(newKey().privateKey);
      await raw.next("welcome");
      const keys = randomKeys(keysEach);
      for (let k = 0; k < keys.length; k += 1_000) {
        const frame = JSON.stringify({
          type: "peers",
          op: k === 0 ? "replace" : "add",
          peers: keys.slice(k, k + 1_000),
        });
        if (raw.ws.readyState !== raw.ws.OPEN) break;
        raw.send(frame);
        uploadedBytes += frame.length;
      }
      // Let the server take it in (as the attacker would, to stay under the rate limit).
      raw.send({ type: "ping" });
      await Promise.race([raw.next("pong", 20_000), raw.closed]);
    }
    await sleep(2_000);
    const rssAfterMiB = rssMiB(child.pid!);
    for (const raw of raws) raw.close();
    return { rssBeforeMiB, rssAfterMiB, closed, uploadedBytes };
  } finally {
    if (child.exitCode === null) process.kill(child.pid!, "SIGKILL");
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runMemoryAttack({ serverRoot: process.argv[2] });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
