/** Polls until `fn` returns something other than undefined/false, or fails after `timeoutMs`. */
export interface WaitOptions {
  timeoutMs?: number;
  everyMs?: number;
  /** Treat an error thrown by `fn` as "not yet" (and report the last one on timeout) instead of failing at once. */
  retryErrors?: boolean;
}

export async function poll<T>(
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  { timeoutMs = 30_000, everyMs = 10, retryErrors = false }: WaitOptions = {},
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (!retryErrors) throw err;
      lastErr = err;
    }
    if (Date.now() > end) {
      const why = lastErr instanceof Error ? `: ${lastErr.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
