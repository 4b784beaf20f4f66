// RFC 8445 section 7.3 / RFC 5389 section 10.1.2: a connectivity check is a Binding request whose
// USERNAME is "<our ufrag>:<their ufrag>" and whose MESSAGE-INTEGRITY is an HMAC-SHA1 keyed with our
// password. werift-ice 0.2.3 checks neither on requests: it acts on a request's ICE-CONTROLLING /
// ICE-CONTROLLED before looking at USERNAME, and never verifies a request's MESSAGE-INTEGRITY. This
// verifies the raw datagram, so that werift only ever sees requests the peer signed.
import { createHmac, timingSafeEqual } from "node:crypto";
import { crc32 } from "node:zlib";

const HEADER_LENGTH = 20;
const MAGIC_COOKIE = 0x2112a442;
const BINDING_REQUEST = 0x0001;
const ATTR_USERNAME = 0x0006;
const ATTR_MESSAGE_INTEGRITY = 0x0008;
const ATTR_FINGERPRINT = 0x8028;
const INTEGRITY_LENGTH = 20;
const FINGERPRINT_LENGTH = 4;
const FINGERPRINT_XOR = 0x5354554e;

/** What a check must match: this generation's credentials. */
export interface CheckCredentials {
  readonly localUfrag: string;
  /** The peer's ufrag; undefined until its offer or answer arrived (then any "<ours>:x" may sign). */
  readonly remoteUfrag: string | undefined;
  readonly localPassword: string;
}

/** Why a request is refused; "ok" when it is a Binding request the peer signed. */
export type CheckVerdict =
  | "ok"
  /** Not a STUN Binding request (another method, or broken framing). */
  | "not-binding"
  /** Attributes overrun the message, or MESSAGE-INTEGRITY/FINGERPRINT misplaced or repeated. */
  | "malformed"
  /** USERNAME missing or not "<our ufrag>:<their ufrag>". */
  | "wrong-username"
  | "no-integrity"
  | "bad-integrity"
  | "bad-fingerprint";

interface Layout {
  username: Buffer | undefined;
  /** Offset of the MESSAGE-INTEGRITY attribute (its header), or -1. */
  integrityAt: number;
  /** Offset of the FINGERPRINT attribute (its header), or -1. */
  fingerprintAt: number;
}

/** Walks the attributes; null when they do not tile the message or MI/FINGERPRINT are out of place. */
function layoutOf(data: Buffer): Layout | null {
  const layout: Layout = { username: undefined, integrityAt: -1, fingerprintAt: -1 };
  let pos = HEADER_LENGTH;
  while (pos < data.length) {
    if (pos + 4 > data.length || layout.fingerprintAt >= 0) return null; // nothing may follow FINGERPRINT
    const type = data.readUInt16BE(pos);
    const length = data.readUInt16BE(pos + 2);
    const end = pos + 4 + length;
    if (end + ((4 - (length % 4)) % 4) > data.length) return null;
    if (type === ATTR_FINGERPRINT) {
      if (length !== FINGERPRINT_LENGTH) return null;
      layout.fingerprintAt = pos;
    } else if (layout.integrityAt >= 0) {
      // RFC 5389 15.4: only FINGERPRINT may follow MESSAGE-INTEGRITY. werift would still act on an
      // ICE-CONTROLLING appended to a sniffed request, so such a message is refused outright.
      return null;
    } else if (type === ATTR_MESSAGE_INTEGRITY) {
      if (length !== INTEGRITY_LENGTH) return null;
      layout.integrityAt = pos;
    } else if (type === ATTR_USERNAME) {
      if (layout.username) return null;
      layout.username = data.subarray(pos + 4, end);
    }
    pos = end + ((4 - (length % 4)) % 4);
  }
  return layout;
}

/** The header's first 4 bytes with the length field set as if the message ended `extra` bytes after `at`. */
function adjustedHead(data: Buffer, at: number, extra: number): Buffer {
  const head = Buffer.allocUnsafe(4);
  data.copy(head, 0, 0, 2);
  head.writeUInt16BE(at - HEADER_LENGTH + extra, 2);
  return head;
}

function namesUs(username: Buffer | undefined, credentials: CheckCredentials): boolean {
  if (!username) return false;
  const { localUfrag, remoteUfrag } = credentials;
  if (remoteUfrag !== undefined) return username.equals(Buffer.from(`${localUfrag}:${remoteUfrag}`, "utf8"));
  const prefix = Buffer.from(`${localUfrag}:`, "utf8");
  return username.length > prefix.length && username.subarray(0, prefix.length).equals(prefix);
}

/** RFC 5389 15.4: HMAC-SHA1 over the message up to MESSAGE-INTEGRITY, its length counting MI. */
function integrityHolds(data: Buffer, at: number, password: string): boolean {
  const mac = createHmac("sha1", Buffer.from(password, "utf8"))
    .update(adjustedHead(data, at, 4 + INTEGRITY_LENGTH))
    .update(data.subarray(4, at))
    .digest();
  return timingSafeEqual(mac, data.subarray(at + 4, at + 4 + INTEGRITY_LENGTH));
}

/** RFC 5389 15.5: CRC-32 of the message up to FINGERPRINT (its length counting FINGERPRINT), XOR 0x5354554e. */
function fingerprintHolds(data: Buffer, at: number): boolean {
  const crc = crc32(data.subarray(4, at), crc32(adjustedHead(data, at, 4 + FINGERPRINT_LENGTH)));
  return (crc ^ FINGERPRINT_XOR) >>> 0 === data.readUInt32BE(at + 4);
}

/** Whether `data` is a Binding request signed for these credentials, and if not, why not. */
export function verifyCheck(data: Buffer, credentials: CheckCredentials): CheckVerdict {
  if (
    data.length < HEADER_LENGTH ||
    data.readUInt16BE(0) !== BINDING_REQUEST ||
    data.readUInt32BE(4) !== MAGIC_COOKIE ||
    data.readUInt16BE(2) !== data.length - HEADER_LENGTH
  ) {
    return "not-binding";
  }
  const layout = layoutOf(data);
  if (!layout) return "malformed";
  // The cheap comparisons first: a wrong ufrag costs no HMAC.
  if (!namesUs(layout.username, credentials)) return "wrong-username";
  if (layout.integrityAt < 0) return "no-integrity";
  if (layout.fingerprintAt >= 0 && !fingerprintHolds(data, layout.fingerprintAt)) return "bad-fingerprint";
  if (!integrityHolds(data, layout.integrityAt, credentials.localPassword)) return "bad-integrity";
  return "ok";
}
