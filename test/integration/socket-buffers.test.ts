// The lab's socket-buffers helper changes another process's UDP sockets (as wireguard-go 2023+ sizes its own).
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { defaultSocketBuffer, setUdpSocketBuffers } from "../lab/socket-buffers.js";

// A process with one UDP socket that prints its buffer sizes when asked (a line on stdin).
const CHILD = `
const s = require("node:dgram").createSocket("udp4");
s.bind(0, "127.0.0.1", () => console.log("ready"));
process.stdin.on("data", () => console.log(s.getRecvBufferSize() + " " + s.getSendBufferSize()));
`;

let child: ChildProcess | null = null;
afterEach(() => {
  child?.kill("SIGKILL");
  child = null;
});

async function nextLine(c: ChildProcess): Promise<string> {
  const [chunk] = (await once(c.stdout!, "data")) as [Buffer];
  return chunk.toString().trim();
}

describe("setUdpSocketBuffers", () => {
  it("sets both buffers of another process's UDP socket, past rmem_max, and back", async () => {
    child = spawn(process.execPath, ["-e", CHILD], { stdio: ["pipe", "pipe", "inherit"] });
    expect(await nextLine(child)).toBe("ready");
    const pid = child.pid!;

    expect(await setUdpSocketBuffers(pid, 7 << 20)).toBe(1);
    child.stdin!.write("?\n");
    // The kernel charges twice what setsockopt is given; 14 MiB is past the default rmem_max (4 MiB).
    expect(await nextLine(child)).toBe(`${14 << 20} ${14 << 20}`);

    const initial = defaultSocketBuffer();
    expect(await setUdpSocketBuffers(pid, initial)).toBe(1);
    child.stdin!.write("?\n");
    expect(await nextLine(child)).toBe(`${initial * 2} ${initial * 2}`);
  });

  it("fails for a process without a UDP socket", async () => {
    child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000); console.log('ready')"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    expect(await nextLine(child)).toBe("ready");
    await expect(setUdpSocketBuffers(child.pid!, 1 << 20)).rejects.toThrow();
  });
});
