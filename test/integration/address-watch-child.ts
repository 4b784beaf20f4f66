// Runs an AddressWatch until killed and prints its `ip monitor` child's PID (for address-watch-orphan).
import { createLogger } from "../../src/log.js";
import { AddressWatch } from "../../src/wg/address-watch.js";

const watch = new AddressWatch({
  ignoreInterfaces: [],
  wireguardInterface: "tbt-none0",
  logger: createLogger("address-watch-child", "silent"),
});
await watch.start();
setInterval(() => {}, 1000);
process.stdout.write("ready\n");
