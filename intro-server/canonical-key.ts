/**
 * X25519 ignores bit 255 of a public key (RFC 7748 §5), so a key with that bit set proves exactly
 * like the key without it: two names for one identity. WireGuard and every X25519 implementation
 * emit keys with the bit clear, so the server accepts only that encoding.
 */

/** True when `publicKeyBase64` (already schema-checked: 32 bytes) has bit 255 clear. */
export function isCanonicalPublicKey(publicKeyBase64: string): boolean {
  const bytes = Buffer.from(publicKeyBase64, "base64");
  return bytes.length === 32 && (bytes[31]! & 0x80) === 0;
}

export const NON_CANONICAL_KEY_REASON = "non-canonical public key (bit 255 set)";
