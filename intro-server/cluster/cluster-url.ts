/** `--cluster URL`: which engine, checked before anything starts. */
import { ConfigError } from "../../src/errors.js";

/**
 * Accepts redis:// and rediss:// (Redis was measured the better fit: docs/decisions.md). nats:// is a
 * usage error naming the reason, so that a configuration written from the text fails clearly.
 */
export function parseClusterUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(
      "intro-usage",
      `--cluster wants a URL such as redis://127.0.0.1:6379, got ${JSON.stringify(text)}`,
    );
  }
  if (url.protocol === "redis:" || url.protocol === "rediss:") return text;
  if (url.protocol === "nats:") {
    throw new ConfigError(
      "intro-usage",
      "--cluster nats:// is not supported: the cluster runs on Redis (see docs/decisions.md); give redis://HOST:PORT",
    );
  }
  throw new ConfigError(
    "intro-usage",
    `--cluster wants redis://HOST:PORT or rediss://HOST:PORT, got ${url.protocol}//...`,
  );
}
