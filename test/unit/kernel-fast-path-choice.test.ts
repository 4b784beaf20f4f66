import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { FastPathProgram } from "../../ebpf/loader.js";
import { parseRunArgs } from "../../src/commands/run.js";
import { ConfigError } from "../../src/errors.js";
import {
  chooseKernelFastPath,
  normalizeKernelFastPathFlag,
} from "../../src/proxy/kernel-fast-path-choice.js";

const logger = pino({ level: "silent" });
const refused = () => Promise.reject(new Error("BPF program load failed: Operation not permitted"));

describe("--ebpf auto|on|off", () => {
  const ebpfOf = (...flags: string[]) => {
    const config = parseRunArgs(["--interface", "wg0", ...flags]);
    if (config === "help") throw new Error("help");
    return config.ebpf;
  };

  it("defaults to auto; takes auto, on, off, also as --ebpf=VALUE; --ebpf alone means on", () => {
    expect(ebpfOf()).toBe("auto");
    expect(ebpfOf("--ebpf", "off")).toBe("off");
    expect(ebpfOf("--ebpf=auto")).toBe("auto");
    expect(ebpfOf("--ebpf")).toBe("on");
    expect(ebpfOf("--ebpf", "--poll-interval", "500")).toBe("on");
    expect(normalizeKernelFastPathFlag(["--ebpf", "-i", "wg0"])).toEqual(["--ebpf=on", "-i", "wg0"]);
  });

  it("anything else is a usage error naming the choices", () => {
    expect(() => ebpfOf("--ebpf", "yes")).toThrow(/--ebpf "yes" is not one of auto, on, off/);
  });

  it("auto falls back to user space with the reason; on refuses to start; off loads nothing", async () => {
    const auto = await chooseKernelFastPath({
      setting: "auto",
      wireguardInterface: "wg0",
      logger,
      load: refused,
    });
    expect(auto).toMatchObject({ program: null, forwarder: null });
    expect(auto.reason).toMatch(/Operation not permitted/);
    const on = chooseKernelFastPath({ setting: "on", wireguardInterface: "wg0", logger, load: refused });
    await expect(on).rejects.toBeInstanceOf(ConfigError);
    await expect(on).rejects.toThrow(/--ebpf on: .*Operation not permitted/);
    let loads = 0;
    const counting = (): Promise<FastPathProgram> => {
      loads++;
      return refused();
    };
    const off = await chooseKernelFastPath({
      setting: "off",
      wireguardInterface: "wg0",
      logger,
      load: counting,
    });
    expect(off.reason).toMatch(/--ebpf off/);
    expect(loads).toBe(0);
  });
});
