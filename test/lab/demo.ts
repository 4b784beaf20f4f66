// `npm run demo`: two WireGuard peers behind two NATs find each other through Tunnelbore.
// Builds a lab of network namespaces (hosts, NAT routers, a public segment with the introduction
// server and coturn), pings through WireGuard, shows `tunnelbore status`, and removes everything.

import { cleanupStale } from "./lab-housekeeping.js";
import { nsRun, teardownAll } from "./netns.js";
import { CLI } from "./tunnelbore.js";
import { ProductLab } from "./tunnelbore-lab.js";

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function statusOf(lab: ProductLab, name: string): Promise<string> {
  const host = lab.host(name);
  const runDir = host.tunnelbore?.runDir ?? "";
  return nsRun(host.ns, process.execPath, [CLI, "status", "--interface", host.wg.name, "--run-dir", runDir]);
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    say("The demo builds network namespaces and runs WireGuard: run it as root (sudo npm run demo).");
    return 2;
  }
  await cleanupStale();
  say("Building the lab: host A behind NAT 1, host B behind NAT 2 (both endpoint-independent),");
  say(
    "an introduction server and a TURN server on the public segment, wireguard-go and Tunnelbore on A and B...",
  );
  const started = Date.now();
  const lab = await ProductLab.create({
    hosts: [
      { name: "a", nat: "eim" },
      { name: "b", nat: "eim" },
    ],
  });
  try {
    const a = lab.lab.host("a");
    const b = lab.lab.host("b");
    say(`  A: LAN ${a.lanAddress}, public ${a.publicAddress}, tunnel ${lab.host("a").tunnelAddress}`);
    say(`  B: LAN ${b.lanAddress}, public ${b.publicAddress}, tunnel ${lab.host("b").tunnelAddress}`);
    say(`  introduction server ${lab.introUrl}, TURN ${lab.coturn.url}`);
    say(`  ready in ${Date.now() - started} ms; neither WireGuard knows where the other one is.`);
    say("");
    say(`Pinging B's tunnel address from A through WireGuard...`);
    const ms = await lab.waitForPing("a", "b", 30_000);
    say(`  first reply after ${ms} ms`);
    const result = await nsRun(a.ns, "ping", ["-c", "3", "-i", "0.2", lab.host("b").tunnelAddress]);
    say(
      result
        .trim()
        .split("\n")
        .map((l) => `  ${l}`)
        .join("\n"),
    );
    say("");
    say("tunnelbore status on A:");
    say((await statusOf(lab, "a")).replace(/^/gm, "  "));
    say("tunnelbore status on B:");
    say((await statusOf(lab, "b")).replace(/^/gm, "  "));
    const path = await lab.peerStatus("a", "b");
    say(
      path.pathKind === "direct"
        ? "A and B are connected directly through both NATs; WireGuard sends to loopback and never noticed."
        : `A and B are connected over a ${path.pathKind} path.`,
    );
    return 0;
  } finally {
    say("");
    say("Removing the lab...");
    await lab.teardown();
    await teardownAll();
    say("Done.");
  }
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    await teardownAll().catch(() => undefined);
    process.exit(1);
  },
);
