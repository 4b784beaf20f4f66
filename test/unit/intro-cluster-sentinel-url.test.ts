// --cluster URLs: redis:// as before, redis+sentinel:// and rediss+sentinel:// read into a typed engine,
// bad ones refused as usage errors that never carry the password; and what ioredis is given for each.
import { describe, expect, it } from "vitest";
import {
  parseClusterEngine,
  parseClusterUrl,
  redactClusterUrl,
} from "../../intro-server/cluster/cluster-url.js";
import { sentinelOptions } from "../../intro-server/cluster/redis-cluster-bus.js";
import { ConfigError } from "../../src/errors.js";

const PASSWORD = "s3cr%40t-pw";

/** The ConfigError parseClusterEngine throws for `text`. */
function refusal(text: string): ConfigError {
  try {
    parseClusterEngine(text);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe("intro-usage");
    return error as ConfigError;
  }
  throw new Error(`${text} was accepted`);
}

describe("--cluster redis:// (unchanged)", () => {
  it("passes redis:// and rediss:// to ioredis as given", () => {
    for (const url of ["redis://127.0.0.1:6379", "rediss://:pw@redis.example:6380/2"]) {
      expect(parseClusterEngine(url)).toEqual({ kind: "redis", url });
      expect(parseClusterUrl(url)).toBe(url);
    }
  });

  it("refuses nats:// and other schemes; a URL that does not parse is shown without its password", () => {
    expect(refusal("nats://127.0.0.1:4222").message).toMatch(/nats:\/\/ is not supported/);
    expect(refusal("http://127.0.0.1:6379").message).toMatch(/redis\+sentinel:\/\//);
    const broken = refusal(`redis://:${PASSWORD}@127.0.0.1:notaport`);
    expect(broken.message).not.toContain(PASSWORD);
    expect(broken.message).not.toContain("s3cr");
    expect(broken.message).toContain("redis://:***@127.0.0.1:notaport");
  });
});

describe("--cluster redis+sentinel://", () => {
  it("reads the Sentinels, the master's name and the credentials", () => {
    expect(parseClusterEngine("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,[::1]:26381/mymaster")).toEqual(
      {
        kind: "sentinel",
        sentinels: [
          { host: "10.0.0.1", port: 26379 },
          { host: "10.0.0.2", port: 26380 },
          { host: "::1", port: 26381 },
        ],
        masterName: "mymaster",
        tls: false,
      },
    );
    expect(parseClusterEngine(`rediss+sentinel://intro:${PASSWORD}@sentinel.example/cache-01`)).toEqual({
      kind: "sentinel",
      sentinels: [{ host: "sentinel.example", port: 26379 }],
      masterName: "cache-01",
      username: "intro",
      password: "s3cr@t-pw",
      tls: true,
    });
    expect(parseClusterEngine("REDIS+SENTINEL://:pw@h:1/m")).toMatchObject({ password: "pw", tls: false });
    // An unescaped @ stays in the password: the last @ ends the user part.
    expect(parseClusterEngine("redis+sentinel://:p@ss@h:1/m")).toMatchObject({ password: "p@ss" });
    expect(parseClusterUrl("redis+sentinel://h:1/m")).toBe("redis+sentinel://h:1/m");
  });

  it("reads the Sentinels' own credentials from sentinel_password and sentinel_username", () => {
    expect(parseClusterEngine(`redis+sentinel://:pw@h:1,h:2/m?sentinel_password=${PASSWORD}`)).toEqual({
      kind: "sentinel",
      sentinels: [
        { host: "h", port: 1 },
        { host: "h", port: 2 },
      ],
      masterName: "m",
      password: "pw",
      sentinelPassword: "s3cr@t-pw",
      tls: false,
    });
    expect(
      parseClusterEngine("redis+sentinel://h:1/m?sentinel_username=watcher&sentinel_password=sp"),
    ).toMatchObject({ sentinelUsername: "watcher", sentinelPassword: "sp", masterName: "m" });
    // An unescaped @ in the Sentinels' password is not taken for the end of the user part.
    expect(parseClusterEngine("redis+sentinel://:pw@h:1/m?sentinel_password=a@b")).toMatchObject({
      password: "pw",
      sentinels: [{ host: "h", port: 1 }],
      sentinelPassword: "a@b",
    });
  });

  it("refuses what is not a Sentinel URL, saying what is wrong and never the password", () => {
    const cases: Array<[string, RegExp]> = [
      [`redis+sentinel://:${PASSWORD}@h:26379`, /no master name/],
      [`redis+sentinel://:${PASSWORD}@h:26379/`, /no master name after the \//],
      [`redis+sentinel://:${PASSWORD}@/mymaster`, /no Sentinel HOST:PORT/],
      [`redis+sentinel://:${PASSWORD}@h:26379,/mymaster`, /"" is not a HOST:PORT/],
      [`redis+sentinel://:${PASSWORD}@h:notaport/mymaster`, /"h:notaport" has no port 1-65535/],
      [`redis+sentinel://:${PASSWORD}@h:0/mymaster`, /"h:0" has no port 1-65535/],
      [`redis+sentinel://:${PASSWORD}@h:65536/mymaster`, /"h:65536" has no port/],
      [`redis+sentinel://:${PASSWORD}@h:/mymaster`, /"h:" has no port/],
      [`redis+sentinel://:${PASSWORD}@h:1/my/master`, /is not a name/],
      [`redis+sentinel://:${PASSWORD}@h:1/m?db=2`, /is not a name/],
      [`redis+sentinel://:${PASSWORD}@h:1/m?sentinel_password=`, /sentinel_password is empty/],
      [`redis+sentinel://h:1/m?sentinel_password=${PASSWORD}&db=2`, /an option other than/],
      // A password with an unescaped &: its tail is not echoed as an option's name.
      ["redis+sentinel://h:1/m?sentinel_password=s3cr&zzpw", /an option other than/],
      [`redis+sentinel://${PASSWORD}@h:1/m`, /USER:PASSWORD or :PASSWORD/],
      ["redis+sentinel://:bad%zzpw@h:1/m", /%-escape/],
    ];
    for (const [text, reason] of cases) {
      const { message } = refusal(text);
      expect(message).toMatch(reason);
      expect(message).toContain("the form is redis+sentinel://[USER:PASSWORD@]HOST:PORT");
      expect(message).not.toContain("s3cr");
      expect(message).not.toContain("zzpw");
    }
  });

  it("redacts the password of any cluster URL, parsable or not", () => {
    expect(redactClusterUrl(`redis+sentinel://u:${PASSWORD}@h:1,h:2/m`)).toBe(
      "redis+sentinel://u:***@h:1,h:2/m",
    );
    expect(redactClusterUrl("redis://:pw@127.0.0.1:6379")).toBe("redis://:***@127.0.0.1:6379");
    expect(redactClusterUrl("redis://justapassword@h:1")).toBe("redis://:***@h:1");
    expect(redactClusterUrl("redis+sentinel://h:1/m")).toBe("redis+sentinel://h:1/m");
    expect(redactClusterUrl("pw@nothing")).not.toContain("pw");
    expect(
      redactClusterUrl("redis+sentinel://:pw@h:1/m?sentinel_password=se@c&ret&sentinel_username=u"),
    ).toBe("redis+sentinel://:***@h:1/m?sentinel_password=***&sentinel_username=u");
    expect(redactClusterUrl("redis+sentinel://h:1/m?sentinel_username=u&sentinel_password=x")).toBe(
      "redis+sentinel://h:1/m?sentinel_username=u&sentinel_password=***",
    );
  });
});

describe("the ioredis options of a Sentinel engine", () => {
  const shared = { lazyConnect: true, connectionName: "tunnelbore-intro-test" };

  it("asks the Sentinels for the master by name, with the master's credentials, TLS only for rediss+", () => {
    const engine = parseClusterEngine("redis+sentinel://u:pw@h1:1,h2:2/m");
    if (engine.kind !== "sentinel") throw new Error("not a sentinel engine");
    const options = sentinelOptions(engine, shared);
    expect(options).toMatchObject({
      ...shared,
      sentinels: [
        { host: "h1", port: 1 },
        { host: "h2", port: 2 },
      ],
      name: "m",
      username: "u",
      password: "pw",
      failoverDetector: true,
      disconnectTimeout: 200,
    });
    expect(options.tls).toBeUndefined();
    expect(options.sentinelPassword).toBeUndefined();
    const guarded = parseClusterEngine("redis+sentinel://h1:1/m?sentinel_username=w&sentinel_password=sp");
    if (guarded.kind !== "sentinel") throw new Error("not a sentinel engine");
    expect(sentinelOptions(guarded, shared)).toMatchObject({ sentinelUsername: "w", sentinelPassword: "sp" });
    expect(
      options.reconnectOnError?.(new Error("READONLY You can't write against a read only replica.")),
    ).toBe(2);
    expect(options.reconnectOnError?.(new Error("NOSCRIPT No matching script."))).toBe(false);

    const secure = parseClusterEngine("rediss+sentinel://h1:1/m");
    if (secure.kind !== "sentinel") throw new Error("not a sentinel engine");
    expect(sentinelOptions(secure, shared)).toMatchObject({
      tls: {},
      enableTLSForSentinelMode: true,
      sentinelTLS: {},
    });
  });
});
