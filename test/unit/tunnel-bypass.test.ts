// The full tunnel's mark: where Tunnelbore's cgroup goes (mountinfo, /proc/self/cgroup), its name, and
// what status says when the mark cannot be set up. The mechanism itself runs in test/e2e/full-tunnel.test.ts.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import {
  cgroupDirectory,
  cgroupName,
  formatMark,
  type MountEntry,
  parseMountInfo,
  parseOwnCgroup,
  TunnelBypass,
} from "../../src/wg/tunnel-bypass.js";

const HYBRID = [
  "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
  "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
  "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
  "50 23 0:40 / /mnt/with\\040space rw - ext4 /dev/sdb1 rw",
].join("\n");

describe("parseMountInfo", () => {
  it("reads root, mount point and type, unescaping octal escapes", () => {
    expect(parseMountInfo(HYBRID)).toEqual([
      { root: "/", mountPoint: "/sys/fs/cgroup", fsType: "tmpfs" },
      { root: "/", mountPoint: "/sys/fs/cgroup/cpu", fsType: "cgroup" },
      { root: "/", mountPoint: "/sys/fs/cgroup/unified", fsType: "cgroup2" },
      { root: "/", mountPoint: "/mnt/with space", fsType: "ext4" },
    ]);
  });
});

describe("parseOwnCgroup", () => {
  it("takes the cgroup v2 line of /proc/self/cgroup", () => {
    expect(parseOwnCgroup("9:name=systemd:/\n4:memory:/x\n0::/system.slice/tunnelbore.service\n")).toBe(
      "/system.slice/tunnelbore.service",
    );
    expect(parseOwnCgroup("0::/\n")).toBe("/");
    expect(parseOwnCgroup("4:memory:/x\n")).toBeNull();
  });
});

describe("cgroupDirectory", () => {
  const unified: MountEntry = { root: "/", mountPoint: "/sys/fs/cgroup/unified", fsType: "cgroup2" };
  it("finds the cgroup under a cgroup2 mount of the whole hierarchy", () => {
    expect(cgroupDirectory([unified], "/")).toBe("/sys/fs/cgroup/unified/");
    expect(cgroupDirectory([unified], "/tbt-l1-cg")).toBe("/sys/fs/cgroup/unified/tbt-l1-cg");
  });
  it("maps through a mount of a subtree (a container's), and refuses a cgroup it does not show", () => {
    const sub: MountEntry = { root: "/lxc/c1", mountPoint: "/sys/fs/cgroup", fsType: "cgroup2" };
    expect(cgroupDirectory([sub], "/lxc/c1/init")).toBe("/sys/fs/cgroup/init");
    expect(cgroupDirectory([sub], "/lxc/c10")).toBeNull();
    expect(cgroupDirectory([{ ...unified, fsType: "cgroup" }], "/")).toBeNull();
  });
});

describe("names", () => {
  it("one cgroup per interface and network namespace", () => {
    expect(cgroupName("wg0", "net:[4026531840]")).toBe("tunnelbore-wg0-4026531840");
    expect(formatMark(51820)).toBe("0xca6c");
  });
});

describe("TunnelBypass without its program", () => {
  const bypass = () =>
    new TunnelBypass({
      interfaceName: "wg0",
      logger: pino({ level: "silent" }),
      objectPath: "/nonexistent/tunnel-mark.bpf.o",
    });

  it("says at start that full tunnels would not work, and sets nothing up", async () => {
    const b = bypass();
    await b.start(0);
    expect(b.status()).toMatchObject({ state: "unavailable", fwmark: 0, mark: 0, cgroup: null });
    expect(b.status().reason).toMatch(/not built/);
  });

  it("with an fwmark: unavailable, no socket renewal asked for, not tried again for the same mark", async () => {
    const b = bypass();
    await b.start(0xca6c);
    expect(b.status()).toMatchObject({ state: "unavailable", fwmark: 0xca6c, mark: 0 });
    expect(await b.follow(0xca6c)).toBe(false);
    expect(b.mark).toBe(0);
    await b.close();
  });

  it("an interface without fwmark needs nothing", async () => {
    const b = bypass();
    expect(await b.follow(0)).toBe(false);
    expect(b.status()).toMatchObject({ state: "inactive", reason: null });
  });
});
