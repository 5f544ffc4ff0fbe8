import type { TidemarkError } from '../errors/index.js';

export interface BackoffOptions {
  /** Cap of the first retry's wait, in ms. */
  initialMs: number;
  /** Largest cap, in ms. */
  maxMs: number;
  /** Attempts in all (the first one included). */
  maxAttempts: number;
}

/** Exponential backoff with full jitter: a wait in [0, min(maxMs, initialMs · 2^(attempt-1))). */
export function backoffDelay(o: BackoffOptions, attempt: number, random: () => number): number {
  const cap = Math.min(o.maxMs, o.initialMs * 2 ** Math.min(attempt - 1, 30));
  return Math.floor(random() * cap);
}

/**
 * Errors a retry may cure: NOT_LEADER (another replica leads), UNAVAILABLE (node down, no leader yet, or
 * `outcome_unknown`: safe to retry because writes are idempotent), RESOURCE_EXHAUSTED (overload; not a
 * message that is too large: that never succeeds), CLOSED (a node shutting down).
 */
export function isRetryable(err: TidemarkError): boolean {
  switch (err.code) {
    case 'NOT_LEADER':
    case 'UNAVAILABLE':
    case 'CLOSED':
      return err.reason !== 'cancelled';
    case 'RESOURCE_EXHAUSTED':
      return err.reason !== 'message_too_large';
    default:
      return false;
  }
}

export function realSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
