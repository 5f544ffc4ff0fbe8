/**
 * The errors of the limits. Every one names the setting (`details.setting`, e.g. `limits.maxSeriesPerRequest`),
 * its configured value (`details.limit`) and, where a request field is at fault, the field. Category:
 * INVALID_ARGUMENT when the request itself is too big (retrying it unchanged cannot succeed: split it),
 * RESOURCE_EXHAUSTED with `retryAfterMs` when waiting helps (rates, concurrency). Status mapping stays in
 * src/errors/status.ts.
 */
import { TidemarkError } from '../errors/index.js';
import type { LimitName } from './metrics.js';

/** The request is too large for a limit; the client must split it. */
export function requestTooLarge(
  limit: LimitName,
  value: number,
  field: string,
  reason: string,
  message: string,
): TidemarkError {
  return new TidemarkError('INVALID_ARGUMENT', reason, message, {
    field,
    setting: `limits.${limit}`,
    limit: value,
  });
}

/** A rate or concurrency limit: retry after `retryAfterMs`. */
export function limitExhausted(
  limit: LimitName,
  value: number,
  reason: string,
  message: string,
  retryAfterMs: number,
  extra: Record<string, unknown> = {},
): TidemarkError {
  return new TidemarkError('RESOURCE_EXHAUSTED', reason, message, {
    ...extra,
    setting: `limits.${limit}`,
    limit: value,
    retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)),
  });
}

/** Per-sample rejection reasons of the series limits (WriteResult.rejected[].reason). */
export const NEW_SERIES_RATE_LIMITED = 'new_series_rate_limited';
export const SERIES_PER_METRIC_LIMIT = 'series_per_metric_limit';
