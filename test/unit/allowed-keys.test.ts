// The --allowed-keys file format: one base64 WireGuard public key a line, `#` comments, blank lines.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseAllowedKeys } from "../../intro-server/allowed-keys.js";
import { ConfigError } from "../../src/errors.js";

function key(): string {
  const bytes = randomBytes(32);
  bytes[31]! &= 0x7f;
  return bytes.toString("base64");
}

describe("parseAllowedKeys", () => {
  it("reads keys, skipping comments, blank lines and surrounding spaces", () => {
    const [a, b, c] = [key(), key(), key()];
    const text = `# office\n${a}\n\n   ${b}   # laptop\r\n\t\n#${c}\n${a}\n`;
    expect(parseAllowedKeys(text, "keys.txt")).toEqual(new Set([a, b]));
  });

  it("an empty file (or only comments) allows nobody", () => {
    expect(parseAllowedKeys("", "f").size).toBe(0);
    expect(parseAllowedKeys("# nobody yet\n\n", "f").size).toBe(0);
  });

  it.each([
    ["not base64 at all", "line 3: not a WireGuard public key"],
    [`${key().slice(0, 43)}`, "line 3: not a WireGuard public key"],
    [`${key()} ${key()}`, "line 3: not a WireGuard public key"],
    [Buffer.alloc(31, 1).toString("base64"), "line 3: not a WireGuard public key"],
  ])("names the line of a malformed entry %j", (bad, message) => {
    const text = `${key()}\n# ok so far\n${bad}\n${key()}\n`;
    expect(() => parseAllowedKeys(text, "/etc/tb/keys")).toThrow(ConfigError);
    expect(() => parseAllowedKeys(text, "/etc/tb/keys")).toThrow(`/etc/tb/keys ${message}`);
  });

  it("refuses a key with bit 255 set (a second encoding of another key)", () => {
    const bytes = Buffer.from(key(), "base64");
    bytes[31]! |= 0x80;
    expect(() => parseAllowedKeys(`\n${bytes.toString("base64")}\n`, "f")).toThrow(
      "f line 2: non-canonical public key (bit 255 set)",
    );
  });

  it("does not echo a huge bad line in full", () => {
    const attempt = () => parseAllowedKeys("x".repeat(10_000), "f");
    expect(attempt).toThrow(/line 1/);
    try {
      attempt();
    } catch (error) {
      expect((error as Error).message.length).toBeLessThan(200);
    }
  });
});
