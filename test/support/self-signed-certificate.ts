// A self-signed certificate (its own CA) for tests of TLS: written by openssl to the files given.
import { execFileSync } from "node:child_process";

/** `subjectAltName` as openssl takes it, e.g. "IP:127.0.0.1,DNS:localhost"; `cn` the subject's CN. */
export function writeSelfSignedCertificate(
  files: { cert: string; key: string },
  subject: { cn: string; subjectAltName: string },
  days = 2,
): void {
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      String(days),
      "-subj",
      `/CN=${subject.cn}`,
      "-addext",
      `subjectAltName=${subject.subjectAltName}`,
      "-keyout",
      files.key,
      "-out",
      files.cert,
    ],
    { stdio: "ignore" },
  );
}
