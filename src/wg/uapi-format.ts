// The answer of a userspace WireGuard (wireguard-go, boringtun) to `get=1` on its UAPI socket, the
// protocol `wg` itself speaks to them: "key=value" lines, the interface's own first, then a block per
// peer from its public_key line, ended by errno. Keys are hex. Parsed into what `wg show dump` gives.
import { RuntimeError } from "../errors.js";
import { publicKeyOf } from "../signalling/signalling-crypto.js";
import type { WireGuardInterfaceInfo, WireGuardPeerInfo } from "./wg-command.js";

const ZERO_KEY = "0".repeat(64);

/** The interface's own fields (its lines before the first peer's). */
export function parseUapiHead(name: string, text: string): Omit<WireGuardInterfaceInfo, "peers"> {
  let privateKey: string | null = null;
  let listenPort = 0;
  let fwmark = 0;
  forEachField(text, (key, value) => {
    if (key === "private_key") privateKey = value === ZERO_KEY ? null : hexKey(name, value);
    else if (key === "listen_port") listenPort = Number(value) || 0;
    else if (key === "fwmark") fwmark = Number(value) >>> 0;
  });
  // UAPI has no public key: it is the private key's (what `wg show` prints is computed so too).
  const publicKey = privateKey ? publicKeyOf(Buffer.from(privateKey, "base64")) : null;
  return { name, privateKey, publicKey, listenPort, fwmark };
}

/** One peer's block (its preshared key is not kept). */
export function parseUapiPeer(name: string, text: string): WireGuardPeerInfo {
  const peer: WireGuardPeerInfo = {
    publicKey: "",
    endpoint: null,
    allowedIps: [],
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 0,
  };
  forEachField(text, (key, value) => {
    if (key === "public_key") peer.publicKey = hexKey(name, value);
    else if (key === "endpoint") peer.endpoint = value || null;
    else if (key === "allowed_ip") peer.allowedIps.push(value);
    else if (key === "last_handshake_time_sec") peer.latestHandshake = Number(value) || 0;
    else if (key === "rx_bytes") peer.rxBytes = Number(value) || 0;
    else if (key === "tx_bytes") peer.txBytes = Number(value) || 0;
    else if (key === "persistent_keepalive_interval") peer.persistentKeepalive = Number(value) || 0;
  });
  if (!peer.publicKey) throw malformed(name);
  return peer;
}

/** A hex key from the socket as WireGuard's base64. */
function hexKey(name: string, hex: string): string {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw malformed(name);
  return Buffer.from(hex, "hex").toString("base64");
}

/** Each "key=value" line, scanned in place (no array of lines: 10,000 blocks at a hub's start). */
function forEachField(text: string, field: (key: string, value: string) => void): void {
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const eq = text.indexOf("=", start);
    if (eq > start && eq < end) field(text.slice(start, eq), text.slice(eq + 1, end));
    start = end + 1;
  }
}

function malformed(name: string): RuntimeError {
  return new RuntimeError("bad-dump", `unexpected answer from ${name}'s WireGuard socket`, {
    interface: name,
  });
}
