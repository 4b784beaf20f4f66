/**
 * NODE_EXTRA_CA_CERTS (a private CA for wss:// or TURN over TLS) usually names a file only root may
 * read. The worker reads it at its start as its own user, so the parent hands it a copy it can read.
 * Certificates are public; the private keys that go with them never are, and are never copied.
 */
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../log.js";
import type { WorkerUser } from "./privsep-mode.js";

export interface WorkerCaCerts {
  /** The worker's environment: NODE_EXTRA_CA_CERTS names the copy when there is one. */
  env: NodeJS.ProcessEnv;
  /** Removes the copy. */
  remove(): Promise<void>;
}

export async function caCertsForWorker(user: WorkerUser, log: Logger): Promise<WorkerCaCerts> {
  const original = process.env.NODE_EXTRA_CA_CERTS;
  const unchanged = { env: { ...process.env }, remove: async () => undefined };
  if (!original) return unchanged;
  let pem: string;
  try {
    pem = await readFile(original, "utf8");
  } catch (err) {
    log.warn({ err, file: original }, "cannot read NODE_EXTRA_CA_CERTS; the worker gets it as it is");
    return unchanged;
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----") || /PRIVATE KEY-----/.test(pem)) {
    log.warn({ file: original }, "NODE_EXTRA_CA_CERTS holds no certificates (or a private key): not copied");
    return unchanged;
  }
  const dir = await mkdtemp(join(tmpdir(), "tunnelbore-ca-"));
  const copy = join(dir, "ca.pem");
  await writeFile(copy, pem, { mode: 0o400 });
  await chown(copy, user.uid, user.gid);
  await chmod(dir, 0o711);
  return {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: copy },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
