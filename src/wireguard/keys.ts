// WireGuard keys as `wg` prints them: 32 bytes in standard base64 (44 characters, one "=").
import { ConfigError } from "../errors.js";

export const KEY_LENGTH = 32;
const BASE64_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/**
 * Decodes a base64 WireGuard key. Throws ConfigError (code "bad-key") unless it is exactly the
 * canonical encoding of 32 bytes, so that one key never has two spellings in configuration or maps.
 */
export function decodeKey(base64: string): Uint8Array {
  if (typeof base64 !== "string" || !BASE64_KEY.test(base64)) {
    throw new ConfigError("bad-key", "a WireGuard key must be 32 bytes in base64 (44 characters)", {
      length: typeof base64 === "string" ? base64.length : undefined,
    });
  }
  return new Uint8Array(Buffer.from(base64, "base64"));
}

/** Encodes a 32-byte key the way `wg` prints it. */
export function encodeKey(key: Uint8Array): string {
  if (key.length !== KEY_LENGTH) {
    throw new ConfigError("bad-key", "a WireGuard key must be 32 bytes", { length: key.length });
  }
  return Buffer.from(key.buffer, key.byteOffset, key.length).toString("base64");
}

/** Throws ConfigError (code "bad-key") unless `key` is 32 bytes. */
export function checkKey(key: Uint8Array, what = "key"): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
    throw new ConfigError("bad-key", `a WireGuard ${what} must be 32 bytes`, {
      length: key instanceof Uint8Array ? key.length : undefined,
    });
  }
}
