// A GSO run the kernel refuses (a path MTU below the segment size: EMSGSIZE) goes out datagram by
// datagram, and the socket sends without GSO from then on: nothing is lost. In a namespace of its own
// (the MTU is set on its loopback route), never on the host's.
import { fileURLToPath } from "node:url";
import { afterAll, expect, it } from "vitest";
import { createNamespace, nsRun, spawnInNamespace, teardownAll, uniqueTag } from "../lab/netns.js";

const CHILD = fileURLToPath(new URL("./batched-udp-gso-child.ts", import.meta.url));

afterAll(async () => {
  await teardownAll();
});

it("sends a refused GSO run one datagram at a time, all of it intact", async () => {
  const ns = await createNamespace(`tbt-gso-${uniqueTag()}`);
  await nsRun(ns, "ip", [
    ...["route", "replace", "local", "127.0.0.0/8", "dev", "lo", "table", "local"],
    ...["proto", "kernel", "scope", "host", "src", "127.0.0.1", "mtu", "lock", "1300"],
  ]);
  const child = spawnInNamespace(ns, process.execPath, ["--import", "tsx", CHILD]);
  expect(await child.exited).toBe(0);
  const line = child.output().trim().split("\n").pop() ?? "";
  expect(JSON.parse(line)).toEqual({ received: 100, intact: 100, errors: [] });
});
