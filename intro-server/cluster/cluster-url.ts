/** `--cluster URL`: which engine, checked before anything starts. */
import { ConfigError } from "../../src/errors.js";

/** Where a Sentinel listens. */
export interface SentinelAddress {
  host: string;
  port: number;
}

/**
 * The engine a node connects to: one Redis by its URL (handed to ioredis as it is), or the master that
 * a set of Sentinels name, found again through them after a failover.
 */
export type ClusterEngine =
  | { kind: "redis"; url: string }
  | {
      kind: "sentinel";
      sentinels: SentinelAddress[];
      masterName: string;
      /** AUTH for the master (and replicas): the URL's user part. */
      username?: string;
      password?: string;
      /** AUTH for the Sentinels themselves (`?sentinel_password=`, `&sentinel_username=`), when they ask. */
      sentinelUsername?: string;
      sentinelPassword?: string;
      /** rediss+sentinel://: TLS to the Sentinels and to the data nodes they name. */
      tls: boolean;
    };

/** The port Sentinel listens on unless told otherwise. */
const SENTINEL_DEFAULT_PORT = 26379;

const SENTINEL_FORM =
  "redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTERNAME[?sentinel_password=P[&sentinel_username=U]]";

/** The query options a Sentinel URL takes (the names redis-py's and other clients' Sentinel URLs use). */
const SENTINEL_OPTIONS = {
  sentinel_username: "sentinelUsername",
  sentinel_password: "sentinelPassword",
} as const;

/**
 * Accepts redis:// and rediss:// (Redis was measured the better fit: docs/decisions.md), and
 * redis+sentinel:// or rediss+sentinel:// for a Redis that Sentinel fails over. nats:// is a usage error
 * naming the reason, so that a configuration written from the text fails clearly. Returns the
 * text as given (server options carry it as a string; the bus reads it with parseClusterEngine).
 */
export function parseClusterUrl(text: string): string {
  parseClusterEngine(text);
  return text;
}

/** The engine `text` names; ConfigError "intro-usage" (no password in it) if it names none. */
export function parseClusterEngine(text: string): ClusterEngine {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (scheme === "redis+sentinel" || scheme === "rediss+sentinel") return parseSentinelUrl(text, scheme);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usage(
      `--cluster wants a URL such as redis://127.0.0.1:6379, got ${JSON.stringify(redactClusterUrl(text))}`,
    );
  }
  if (url.protocol === "redis:" || url.protocol === "rediss:") return { kind: "redis", url: text };
  if (url.protocol === "nats:") {
    throw usage(
      "--cluster nats:// is not supported: the cluster runs on Redis (see docs/decisions.md); give redis://HOST:PORT",
    );
  }
  throw usage(
    `--cluster wants redis://HOST:PORT, rediss://HOST:PORT or ${SENTINEL_FORM}, got ${url.protocol}//...`,
  );
}

function parseSentinelUrl(text: string, scheme: "redis+sentinel" | "rediss+sentinel"): ClusterEngine {
  const shown = JSON.stringify(redactClusterUrl(text));
  const fail = (what: string) => usage(`--cluster ${shown}: ${what}; the form is ${SENTINEL_FORM}`);
  const whole = text.slice(scheme.length + 3);
  // The options first, so that an @ in the Sentinels' password is not taken for the end of the user part.
  const optionsAt = whole.search(/\?sentinel_(?:username|password)=/);
  const rest = optionsAt < 0 ? whole : whole.slice(0, optionsAt);
  const sentinelCredentials = optionsAt < 0 ? {} : parseSentinelOptions(whole.slice(optionsAt + 1), fail);
  // The last @ ends the user part: an unescaped @ in a password stays in it rather than in a host.
  const at = rest.lastIndexOf("@");
  const userInfo = at >= 0 ? rest.slice(0, at) : undefined;
  const location = at >= 0 ? rest.slice(at + 1) : rest;
  const slash = location.indexOf("/");
  if (slash < 0) throw fail("no master name (the Sentinels' name for it, after the hosts and a /)");
  const hosts = location.slice(0, slash);
  const masterName = decode(location.slice(slash + 1), fail);
  if (masterName === "") throw fail("no master name after the /");
  if (!/^[^\s/?#]+$/.test(masterName)) throw fail(`master name ${JSON.stringify(masterName)} is not a name`);
  if (hosts === "") throw fail("no Sentinel HOST:PORT");
  const sentinels = hosts.split(",").map((item) => parseSentinelAddress(item, fail));
  const credentials = userInfo === undefined ? {} : parseUserInfo(userInfo, fail);
  return {
    kind: "sentinel",
    sentinels,
    masterName,
    ...credentials,
    ...sentinelCredentials,
    tls: scheme === "rediss+sentinel",
  };
}

function parseSentinelOptions(
  query: string,
  fail: (what: string) => ConfigError,
): { sentinelUsername?: string; sentinelPassword?: string } {
  const options: { sentinelUsername?: string; sentinelPassword?: string } = {};
  for (const pair of query.split("&")) {
    const equals = pair.indexOf("=");
    const name = equals < 0 ? pair : pair.slice(0, equals);
    // Not echoed: it may be the tail of a password with an unescaped &.
    if (!Object.hasOwn(SENTINEL_OPTIONS, name)) {
      throw fail(
        "an option other than sentinel_password and sentinel_username (write a & in a password as %26)",
      );
    }
    const value = equals < 0 ? "" : decode(pair.slice(equals + 1), fail);
    if (value === "") throw fail(`${name} is empty`);
    options[SENTINEL_OPTIONS[name as keyof typeof SENTINEL_OPTIONS]] = value;
  }
  return options;
}

function parseSentinelAddress(item: string, fail: (what: string) => ConfigError): SentinelAddress {
  // [v6]:port, host:port, or a host alone (Sentinel's default port).
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+))(?::(.*))?$/.exec(item);
  if (!match) throw fail(`${JSON.stringify(item)} is not a HOST:PORT`);
  const host = match[1] ?? match[2]!;
  const portText = match[3];
  if (portText === undefined) return { host, port: SENTINEL_DEFAULT_PORT };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535)
    throw fail(`${JSON.stringify(item)} has no port 1-65535`);
  return { host, port: Number(portText) };
}

function parseUserInfo(
  userInfo: string,
  fail: (what: string) => ConfigError,
): { username?: string; password?: string } {
  const colon = userInfo.indexOf(":");
  // A lone word is ambiguous (a user or a password?): say which, as redis:// URLs do.
  if (colon < 0) throw fail("the part before @ must be USER:PASSWORD or :PASSWORD");
  const username = decode(userInfo.slice(0, colon), fail);
  const password = decode(userInfo.slice(colon + 1), fail);
  return { ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

function decode(text: string, fail: (what: string) => ConfigError): string {
  try {
    return decodeURIComponent(text);
  } catch {
    // Not quoted: the text may be a password.
    throw fail("a %-escape in it is malformed");
  }
}

function usage(message: string): ConfigError {
  return new ConfigError("intro-usage", message);
}

/** The URL with its passwords replaced, for logs and errors: whatever the scheme, and if it does not parse. */
export function redactClusterUrl(text: string): string {
  // Up to the next option this parser knows, not the next &: a password's unescaped & stays hidden too.
  return redactUserInfo(text.replace(/([?&]sentinel_password=).*?(?=&sentinel_username=|$)/g, "$1***"));
}

function redactUserInfo(text: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(text)?.[0];
  if (!scheme) return text.includes("@") ? "(a URL with a password)" : text;
  const rest = text.slice(scheme.length);
  const at = rest.lastIndexOf("@");
  if (at < 0) return text;
  const userInfo = rest.slice(0, at);
  const colon = userInfo.indexOf(":");
  const user = colon < 0 ? "" : userInfo.slice(0, colon);
  return `${scheme}${user}:***@${rest.slice(at + 1)}`;
}
