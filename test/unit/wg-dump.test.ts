import { describe, expect, it } from "vitest";
import { parseDump } from "../../src/wg/wg-command.js";

const PRIV = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const PUB = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const PEER1 = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const PEER2 = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

describe("parseDump", () => {
  it("reads the interface line and every peer, without the preshared key", () => {
    const text = [
      `${PRIV}\t${PUB}\t51820\toff`,
      `${PEER1}\t(none)\t192.0.2.7:51820\t10.0.0.2/32,10.1.0.0/16\t1700000000\t100\t200\t25`,
      `${PEER2}\tc2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\t(none)\t(none)\t0\t0\t0\toff`,
      "",
    ].join("\n");
    const info = parseDump("wg0", text);
    expect(info).toMatchObject({ name: "wg0", publicKey: PUB, listenPort: 51820, fwmark: 0 });
    expect(info.peers).toEqual([
      {
        publicKey: PEER1,
        endpoint: "192.0.2.7:51820",
        allowedIps: ["10.0.0.2/32", "10.1.0.0/16"],
        latestHandshake: 1700000000,
        rxBytes: 100,
        txBytes: 200,
        persistentKeepalive: 25,
      },
      {
        publicKey: PEER2,
        endpoint: null,
        allowedIps: [],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 0,
      },
    ]);
    expect(JSON.stringify(info)).not.toContain("c2VjcmV0");
  });

  it("reads the fwmark (wg-quick sets one for a full tunnel)", () => {
    expect(parseDump("wg0", `${PRIV}\t${PUB}\t51820\t0xca6c\n`).fwmark).toBe(51820);
  });

  it("rejects output that is not a dump", () => {
    expect(() => parseDump("wg0", "hello")).toThrow(/unexpected output/);
    expect(() => parseDump("wg0", `${PRIV}\t${PUB}\t1\toff\nshort\tline`)).toThrow(/unexpected peer line/);
  });
});
