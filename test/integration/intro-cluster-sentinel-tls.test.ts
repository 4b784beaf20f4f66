// --cluster rediss+sentinel://: the Sentinels and the data nodes listen with TLS only (no plain port),
// replicate and monitor over TLS; two node processes meet through them and carry on after the master
// is SIGKILLed. A node given redis+sentinel:// (no TLS), one that does not trust their certificate, or
// one given a master name they do not know or a wrong password, cannot start and exits 1.
import { afterEach, describe, expect, it } from "vitest";
import { SentinelCluster, timeFailover } from "./intro-cluster-sentinel-support.js";

const cluster = new SentinelCluster();
afterEach(() => cluster.stop());

describe("intro-server --cluster rediss+sentinel://", () => {
  it("speaks TLS to the Sentinels and the data nodes, through a failover", async () => {
    const pair = await cluster.pairOnTwoNodes({ tls: true });
    const { engine, alice, bob, aliceHeard, bobHeard } = pair;
    expect(engine.url).toMatch(/^rediss\+sentinel:\/\//);

    await timeFailover(pair, "failover over TLS", "the master's SIGKILL", () =>
      engine.master.kill("SIGKILL"),
    );
    await expect.poll(() => engine.masterPort(), { timeout: 6_000 }).toBe(engine.replica.port);
    await expect.poll(() => aliceHeard.presenceOf(bob.publicKey), { timeout: 5_000 }).toBe(true);
    await expect.poll(() => bobHeard.presenceOf(alice.publicKey), { timeout: 5_000 }).toBe(true);

    // Without TLS, or without trusting the certificate (it is checked): no node.
    const plain = engine.url.replace(/^rediss\+/, "redis+");
    await expect(cluster.node(plain)).rejects.toThrow(/exited with 1: .*cannot reach the cluster engine/s);
    await expect(cluster.node(engine.url)).rejects.toThrow(
      /exited with 1: .*cannot reach the cluster engine/s,
    );
    // A master name the Sentinels do not know, or a wrong password: exit 1 saying which, no password.
    const trust = { NODE_EXTRA_CA_CERTS: engine.certFile! };
    const unknown = cluster.node(engine.url.replace(/tbmaster$/, "nosuchmaster"), trust);
    await expect(unknown).rejects.toThrow(/exited with 1: .*No such master with that name/s);
    const wrong = cluster.node(engine.url.replace(engine.password, "not-the-password"), trust);
    await expect(wrong).rejects.toThrow(/exited with 1: .*WRONGPASS/s);
    await expect(wrong).rejects.not.toThrow(/not-the-password/);
  });
});
