// Loading the native addons built at install (native/build/Release/NAME.node, native/build.mjs): each
// is optional, and what is missing says why, for the one log line its user writes.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";

/** The addon's exports, or why there are none (not built at install, or does not load). */
export function loadNativeAddon<T>(name: string): T | string {
  // dist/src/ and src/ are two and one levels below the package root.
  const path = [`../native/build/Release/${name}.node`, `../../native/build/Release/${name}.node`]
    .map((p) => fileURLToPath(new URL(p, import.meta.url)))
    .find((p) => existsSync(p));
  if (!path) return `native/build/Release/${name}.node is missing (not built at install)`;
  try {
    return createRequire(import.meta.url)(path) as T;
  } catch (err) {
    return `cannot load ${path}: ${(err as Error).message}`;
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** "EPERM" for the number an addon returned, or the number when Node does not know it. */
export function errnoName(errno: number): string | number {
  return ERRNO_NAMES.get(errno) ?? errno;
}
