// A tiny DNS server for a lab namespace: answers A queries for the names it is given (AAAA with no
// records, anything else NXDOMAIN) and prints each query, so a test sees from where a resolver asked.
// Hosts use it through /etc/netns/NS/resolv.conf (`ip netns exec` puts it over /etc/resolv.conf).
import { mkdir, rm, writeFile } from "node:fs/promises";
import { waitFor } from "../support/wait-for.js";
import { onTeardown, type SpawnedProcess, spawnInNamespace } from "./netns.js";

const SERVER_SOURCE = `
import { createSocket } from "node:dgram";
const [address, recordsJson] = process.argv.slice(-2);
const records = JSON.parse(recordsJson);
const socket = createSocket("udp4");
socket.on("message", (query, from) => {
  if (query.length < 17) return;
  let offset = 12;
  const labels = [];
  while (offset < query.length && query[offset] !== 0) {
    const n = query[offset];
    labels.push(query.subarray(offset + 1, offset + 1 + n).toString());
    offset += n + 1;
  }
  const questionEnd = offset + 5;
  if (questionEnd > query.length) return;
  const name = labels.join(".").toLowerCase();
  const type = query.readUInt16BE(offset + 1);
  const known = Object.hasOwn(records, name);
  console.log(JSON.stringify({ name, type, from: from.address }));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(known ? 0x8180 : 0x8183, 2);
  header.writeUInt16BE(1, 4);
  const answers = [];
  if (known && type === 1) {
    const answer = Buffer.alloc(16);
    answer.writeUInt16BE(0xc00c, 0);
    answer.writeUInt16BE(1, 2);
    answer.writeUInt16BE(1, 4);
    answer.writeUInt32BE(0, 6);
    answer.writeUInt16BE(4, 10);
    records[name].split(".").forEach((b, i) => answer.writeUInt8(Number(b), 12 + i));
    answers.push(answer);
  }
  header.writeUInt16BE(answers.length, 6);
  socket.send(Buffer.concat([header, query.subarray(12, questionEnd), ...answers]), from.port, from.address);
});
socket.bind(53, address, () => console.log("listening"));
`;

export interface DnsQuery {
  name: string;
  /** 1: A, 28: AAAA. */
  type: number;
  /** The address the query came from. */
  from: string;
}

export interface LabDnsServer {
  readonly process: SpawnedProcess;
  /** The queries seen so far. */
  queries(): DnsQuery[];
  /** Makes `ns` resolve through this server (and drops the file at teardown). */
  useFrom(ns: string): Promise<void>;
}

/** Starts the server on `address`:53 in `ns`, answering `records` (name -> IPv4 address). */
export async function startDnsServer(
  ns: string,
  address: string,
  records: Record<string, string>,
): Promise<LabDnsServer> {
  const proc = spawnInNamespace(ns, process.execPath, [
    "--input-type=module",
    "-e",
    SERVER_SOURCE,
    address,
    JSON.stringify(records),
  ]);
  await waitFor(() => proc.child.exitCode !== null || proc.output().includes("listening"), {
    what: `DNS server on ${address}`,
  });
  if (proc.child.exitCode !== null) throw new Error(`DNS server exited: ${proc.output()}`);
  return {
    process: proc,
    queries: () =>
      proc
        .output()
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as DnsQuery),
    async useFrom(client: string) {
      const dir = `/etc/netns/${client}`;
      await mkdir(dir, { recursive: true });
      onTeardown(() => rm(dir, { recursive: true, force: true }));
      await writeFile(`${dir}/resolv.conf`, `nameserver ${address}\noptions timeout:1 attempts:2\n`);
      // No hosts file of the host's own: names are the server's alone.
      await writeFile(`${dir}/hosts`, "127.0.0.1 localhost\n");
    },
  };
}
