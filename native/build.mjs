// Builds the native addons (native/build/Release/) with node-gyp, at `npm install` and in `npm run
// build`: batched_udp.node (batched UDP I/O) and service_notify.node (sd_notify for systemd). It never
// fails the caller: without them Tunnelbore forwards through Node's dgram (src/proxy/batched-udp.ts
// says so once in its log) and cannot tell systemd it is ready (src/service-notify.ts says so), so a
// failed build is a warning.
//   node native/build.mjs          (TBT_NATIVE_REQUIRED=1 makes a failed build exit 1, for CI)
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** node-gyp as npm runs it for scripts, else npm's own copy next to this node, else one on PATH. */
function nodeGypCommand() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"),
  ];
  for (const candidate of candidates) {
    if (candidate && existsSync(candidate)) return [process.execPath, [candidate]];
  }
  return ["node-gyp", []];
}

if (process.platform !== "linux") {
  console.warn("batched UDP addon: Linux only (recvmmsg/sendmmsg); Tunnelbore will use Node's dgram");
  process.exit(0);
}
/** Node's own headers when they sit next to it (distribution packages, official tarballs): no download. */
function nodeDirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const root = join(dirname(process.execPath), "..");
  return existsSync(join(root, "include/node/node_api.h")) ? [`--nodedir=${root}`] : [];
}

const [command, prefix] = nodeGypCommand();
const result = spawnSync(command, [...prefix, "rebuild", ...nodeDirArgs()], { cwd: here, stdio: "inherit" });
if (result.status !== 0) {
  const why = result.error ? result.error.message : `node-gyp exited with ${result.status ?? result.signal}`;
  console.warn(`native addons not built (${why}); Tunnelbore will forward through Node's dgram`);
  process.exit(process.env.TBT_NATIVE_REQUIRED === "1" ? 1 : 0);
}
