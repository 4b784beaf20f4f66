// A tiny DNS server for a lab namespace: answers A and AAAA queries for the names it is given (an empty
// answer for a family a name has no address of, anything else NXDOMAIN) and prints each query, so a
// test sees from where a resolver asked. It listens on both families (a dual-stack socket), so an
// IPv6-only host asks it too. Hosts use it through /etc/netns/NS/resolv.conf (`ip netns exec` puts it
// over /etc/resolv.conf).
import { mkdir, rm, writeFile } from "node:fs/promises";
import { isIPv4, isIPv6 } from "node:net";
import { waitFor } from "../support/wait-for.js";
import { onTeardown, type SpawnedProcess, spawnInNamespace } from "./netns.js";

const SERVER_SOURCE = `
import { createSocket } from "node:dgram";
const [recordsJson] = process.argv.slice(-1);
// name -> { 1: [hex of each IPv4 address], 28: [hex of each IPv6 address] }
const records = JSON.parse(recordsJson);
const socket = createSocket({ type: "udp6", ipv6Only: false });
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
  const client = from.address.replace(/^::ffff:(?=\\d+\\.)/, "");
  console.log(JSON.stringify({ name, type, from: client }));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(known ? 0x8180 : 0x8183, 2);
  header.writeUInt16BE(1, 4);
  const answers = [];
  for (const hex of (known && records[name][type]) || []) {
    const data = Buffer.from(hex, "hex");
    const answer = Buffer.alloc(12 + data.length);
    answer.writeUInt16BE(0xc00c, 0);
    answer.writeUInt16BE(type, 2);
    answer.writeUInt16BE(1, 4);
    answer.writeUInt32BE(0, 6);
    answer.writeUInt16BE(data.length, 10);
    data.copy(answer, 12);
    answers.push(answer);
  }
  header.writeUInt16BE(answers.length, 6);
  socket.send(Buffer.concat([header, query.subarray(12, questionEnd), ...answers]), from.port, from.address);
});
socket.bind(53, "::", () => console.log("listening"));
`;

/** An address's bytes as hex (IPv4 dotted, or IPv6 with at most one "::"). */
function addressHex(address: string): string {
  if (isIPv4(address)) return Buffer.from(address.split(".").map(Number)).toString("hex");
  if (!isIPv6(address) || address.includes("."))
    throw new Error(`${address}: not an address the lab DNS serves`);
  const [head = "", tail = ""] = address.split("::");
  const groups = (part: string) => (part === "" ? [] : part.split(":"));
  const known = [...groups(head), ...groups(tail)];
  const middle = address.includes("::") ? Array(8 - known.length).fill("0") : [];
  return [...groups(head), ...middle, ...groups(tail)].map((g) => g.padStart(4, "0")).join("");
}

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
  /** Makes `ns` resolve through this server, at `nameserver` (default: its address); drops the file at teardown. */
  useFrom(ns: string, nameserver?: string): Promise<void>;
}

/**
 * Starts the server on port 53 of `ns` (every address, both families), answering `records` (name ->
 * its IPv4 and IPv6 addresses). `address` is the one clients are told to ask (`useFrom`).
 */
export async function startDnsServer(
  ns: string,
  address: string,
  records: Record<string, string | string[]>,
): Promise<LabDnsServer> {
  const encoded = Object.fromEntries(
    Object.entries(records).map(([name, value]) => {
      const addresses = typeof value === "string" ? [value] : value;
      return [
        name.toLowerCase(),
        {
          1: addresses.filter((a) => isIPv4(a)).map(addressHex),
          28: addresses.filter((a) => isIPv6(a)).map(addressHex),
        },
      ];
    }),
  );
  const proc = spawnInNamespace(ns, process.execPath, [
    "--input-type=module",
    "-e",
    SERVER_SOURCE,
    JSON.stringify(encoded),
  ]);
  await waitFor(() => proc.child.exitCode !== null || proc.output().includes("listening"), {
    what: `DNS server in ${ns}`,
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
    async useFrom(client: string, nameserver = address) {
      const dir = `/etc/netns/${client}`;
      await mkdir(dir, { recursive: true });
      onTeardown(() => rm(dir, { recursive: true, force: true }));
      await writeFile(`${dir}/resolv.conf`, `nameserver ${nameserver}\noptions timeout:1 attempts:2\n`);
      // No hosts file of the host's own: names are the server's alone.
      await writeFile(`${dir}/hosts`, "127.0.0.1 localhost\n");
    },
  };
}
