/** Where the connection to the introduction server stands, for status. */
export interface IntroConnectionStatus {
  /** The server in use, or being tried (one of `servers`). */
  url: string;
  /** The address its host name resolved to (null: an IP literal, or not resolved). */
  address?: string | null;
  /** Every server, in the order they are tried (`URL (address)` for each address of a name). */
  servers?: string[];
  /**
   * "retrying": the last attempt or connection failed and the next one waits for its backoff.
   * "not-member": the server does not serve our key (not in its --allowed-keys); retried once a minute,
   * and at once on SIGHUP.
   */
  state: "connected" | "connecting" | "retrying" | "not-member" | "stopped";
  /** Since when (unix ms) in this state; while retrying, since the first failure of the streak. */
  since: number;
  /** Consecutive failed attempts (0 once connected). */
  failures: number;
  /** The last failure: errno (ECONNREFUSED, ...) or close code and reason; null if none yet. */
  lastError: string | null;
  lastErrorAt: number;
}
