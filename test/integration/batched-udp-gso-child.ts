// Run by batched-udp-gso.test.ts inside a namespace of its own whose 127.0.0.0/8 route has an MTU of
// 1300: a relay sends 1400-byte datagrams to 127.0.0.2 from inside a delivery (a GSO run the kernel
// refuses), and a sink counts what arrives intact. Prints one JSON line.
import { createLogger } from "../../src/log.js";
import { openBatchedUdpSocket } from "../../src/proxy/batched-udp.js";

const COUNT = 100;
const SIZE = 1400;
const logger = createLogger("gso-child", "silent");
const open = (address: string) =>
  openBatchedUdpSocket({ address, port: 0, role: "gso test", logger, io: "native" });
const datagram = (n: number) => Buffer.alloc(SIZE, n & 0xff);

const [relay, trigger, sink] = [await open("127.0.0.1"), await open("127.0.0.1"), await open("127.0.0.2")];
let received = 0;
let intact = 0;
sink.onBatch = (batch) => {
  for (let i = 0; i < batch.count; i++) {
    if (batch.datagram(i).equals(datagram(received))) intact++;
    received++;
  }
};
const errors: string[] = [];
relay.onError = (err) => errors.push(err.code ?? "unknown");
relay.onBatch = () => {
  for (let n = 0; n < COUNT; n++) relay.send(datagram(n), sink.address().port, "127.0.0.2");
};
trigger.send(Buffer.from("go"), relay.address().port, "127.0.0.1");
const deadline = Date.now() + 5000;
while (received < COUNT && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
console.log(JSON.stringify({ received, intact, errors }));
process.exit(0);
