// The one way tests (and the lab and benches) wait for something: poll a condition until it holds or
// a deadline passes. The deadline bounds a wait, it is not the assertion; what is asserted is that the
// condition became true at all.

/** What a truthy value of T can be (the value `waitFor` resolves with). */
export type Truthy<T> = Exclude<T, false | null | undefined | 0 | 0n | "">;

export interface WaitForOptions {
  /** What is awaited, for the error ("ping through the tunnel"). */
  what: string;
  /** Default 10 s: generous, so that a busy machine does not fail a test whose behaviour is fine. */
  timeoutMs?: number;
  /** Pause between polls (default 20 ms); 0 polls again as soon as a check finished. */
  intervalMs?: number;
}

/**
 * Resolves with the first truthy value `condition` returns, polling it every `intervalMs`; rejects
 * after `timeoutMs`, naming `what` and the last error the condition threw (a throw counts as "not yet").
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  { what, timeoutMs = 10_000, intervalMs = 20 }: WaitForOptions,
): Promise<Truthy<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as Truthy<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  const cause =
    lastError === undefined ? "" : `: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
}
