/**
 * OpenTSDB `/api/put` JSON: one datapoint object or an array of them,
 * `{"metric": "sys.cpu", "timestamp": 1700000000, "value": 42.5, "tags": {"host": "a"}}`.
 * Each datapoint is validated on its own (OpenTSDB-shaped per-point errors); good points go into the
 * batch builder. Semantics and deviations from OpenTSDB: docs/ingest.md.
 */
import { invalidArgument, isTidemarkError, type TidemarkError } from '../errors/index.js';
import { MAX_TIMESTAMP_MS, makeSeries } from '../model/index.js';
import type { SampleBatch } from '../storage/store.js';
import { BatchBuilder, type BatchLimits, limitExceeded, sized } from './batch.js';

export interface OpenTsdbPutOptions {
  /** Most datapoints per request (default 100,000); more → the whole request is rejected. */
  maxPoints?: number;
  /** Add to this builder instead of a new one. */
  builder?: BatchBuilder;
  /** Limits for the builder created when `builder` is not given. */
  limits?: BatchLimits;
}

/** One rejected datapoint, as OpenTSDB reports it with `details`. */
export interface OpenTsdbPointError {
  /** The datapoint exactly as it was sent. */
  datapoint: unknown;
  error: string;
}

export interface OpenTsdbPutResult {
  batch: SampleBatch;
  success: number;
  failed: number;
  errors: OpenTsdbPointError[];
}

export const DEFAULT_MAX_PUT_POINTS = 100_000;
/** OpenTSDB: a timestamp with any of these bits set is in milliseconds, otherwise in seconds. */
const SECONDS_LIMIT = 2 ** 32;
/** OpenTSDB: the largest millisecond timestamp (13 digits). */
const MAX_MS = 9_999_999_999_999;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const INTEGER_RE = /^[-+]?[0-9]+$/;
const DECIMAL_RE = /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/;

/** Parses an `/api/put` body. Invalid JSON or a body of the wrong shape throws INVALID_ARGUMENT (a 400). */
export function parseOpenTsdbPut(
  body: string | Uint8Array,
  options: OpenTsdbPutOptions = {},
): OpenTsdbPutResult {
  let text: string;
  if (typeof body === 'string') text = body;
  else {
    try {
      text = utf8.decode(body);
    } catch {
      throw invalidArgument('body_not_utf8', 'body', 'the body is not valid UTF-8');
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(
      'json_invalid',
      'body',
      `unable to parse the body as JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return putDatapoints(json, options);
}

/** Validates already-parsed JSON (one datapoint object or an array of them) into the builder. */
export function putDatapoints(json: unknown, options: OpenTsdbPutOptions = {}): OpenTsdbPutResult {
  const maxPoints = options.maxPoints ?? DEFAULT_MAX_PUT_POINTS;
  let points: readonly unknown[];
  if (Array.isArray(json)) points = json;
  else if (json !== null && typeof json === 'object') points = [json];
  else
    throw invalidArgument('body_invalid', 'body', 'the body must be a datapoint object or an array of them');
  if (points.length === 0) throw invalidArgument('no_datapoints', 'body', 'no datapoints found in the body');
  if (points.length > maxPoints) {
    throw limitExceeded(
      'too_many_datapoints',
      'maxPoints',
      maxPoints,
      `the body has ${points.length} datapoints, more than ${maxPoints} (limit maxPoints); split it`,
    );
  }
  const builder = options.builder ?? new BatchBuilder(sized(options.limits, points.length));
  builder.ensureRoom(points.length);
  const errors: OpenTsdbPointError[] = [];
  let success = 0;
  const cache = new Map<string, number>();
  for (let i = 0; i < points.length; i++) {
    const dp = points[i];
    const problem = putOne(dp, builder, cache);
    if (problem === undefined) success++;
    else errors.push({ datapoint: dp, error: problem });
  }
  return { batch: builder.build(), success, failed: errors.length, errors };
}

/** Adds one datapoint; returns the error message, or undefined when it was added. */
function putOne(dp: unknown, builder: BatchBuilder, cache: Map<string, number>): string | undefined {
  if (dp === null || typeof dp !== 'object' || Array.isArray(dp)) return 'datapoint must be a JSON object';
  const p = dp as Record<string, unknown>;
  const metric = p.metric;
  if (metric === undefined || metric === null || metric === '') return 'Metric name was empty';
  if (typeof metric !== 'string') return 'Metric name must be a string';
  if (p.timestamp === undefined || p.timestamp === null) return 'Missing timestamp';
  const t = timestampMs(p.timestamp);
  if (typeof t === 'string') return t;
  if (p.value === undefined || p.value === null || p.value === '') return 'Empty value';
  const v = numericValue(p.value);
  if (typeof v === 'string') return v;
  const rawTags = p.tags;
  let tags: Record<string, string> | undefined;
  // Cache key of the raw series: every part length-prefixed, so distinct inputs never collide.
  let key = `${metric.length}:${metric}`;
  if (rawTags !== undefined && rawTags !== null) {
    if (typeof rawTags !== 'object' || Array.isArray(rawTags)) return 'tags must be a JSON object';
    tags = Object.create(null) as Record<string, string>;
    for (const k in rawTags) {
      if (!Object.hasOwn(rawTags, k)) continue;
      const tv = (rawTags as Record<string, unknown>)[k];
      let s: string;
      if (typeof tv === 'string') s = tv;
      else if (typeof tv === 'number' || typeof tv === 'boolean') s = String(tv);
      else return `tag ${JSON.stringify(k)} must have a string value`;
      tags[k] = s;
      key += `,${k.length}:${k}${s.length}:${s}`;
    }
  }
  const ref = cache.get(key);
  if (ref !== undefined) {
    builder.addRef(ref, t, v);
    return undefined;
  }
  try {
    const series = makeSeries(metric, tags);
    const ref = builder.add(series, t, v);
    cache.set(key, ref);
  } catch (err) {
    if (isTidemarkError(err, 'INVALID_ARGUMENT') && err.reason !== 'batch_too_many_series')
      return err.message;
    throw err;
  }
  return undefined;
}

/**
 * OpenTSDB's rule: an integer below 2^32 is in seconds, anything else in milliseconds (at most 13 digits,
 * 9999999999999). Numeric strings are accepted (as OpenTSDB's JSON binding does).
 */
function timestampMs(raw: unknown): number | string {
  let ts: number;
  if (typeof raw === 'number') ts = raw;
  else if (typeof raw === 'string' && INTEGER_RE.test(raw)) ts = Number(raw);
  else return `Invalid timestamp ${JSON.stringify(raw)}: must be an integer (seconds or milliseconds)`;
  if (!Number.isInteger(ts)) return `Invalid timestamp ${ts}: must be an integer (seconds or milliseconds)`;
  if (ts < 0) return `Invalid timestamp ${ts}: negative`;
  if (ts < SECONDS_LIMIT) return ts * 1000;
  if (ts > MAX_MS || ts > MAX_TIMESTAMP_MS)
    return `Invalid timestamp ${ts}: more than 13 digits of milliseconds`;
  return ts;
}

/** A number, or a string holding a decimal number; never NaN or infinite. */
function numericValue(raw: unknown): number | string {
  let v: number;
  if (typeof raw === 'number') v = raw;
  else if (typeof raw === 'string') {
    const s = raw.trim();
    if (INTEGER_RE.test(s)) {
      const digits = s.replace(/^[-+]?0*/, '');
      if (
        digits.length > 19 ||
        (digits.length === 19 && digits > (s[0] === '-' ? '9223372036854775808' : '9223372036854775807'))
      ) {
        return `Value ${JSON.stringify(raw)} is out of the 64-bit integer range`;
      }
    } else if (!DECIMAL_RE.test(s)) return `Unable to parse value to a number: ${JSON.stringify(raw)}`;
    v = Number(s);
  } else return `Unable to parse value to a number: ${JSON.stringify(raw)}`;
  if (!Number.isFinite(v)) return 'Value is NaN or Infinite';
  return v;
}

export interface PutResponseFlags {
  /** `summary` query parameter present. */
  summary?: boolean;
  /** `details` query parameter present (implies the summary counts). */
  details?: boolean;
}

export interface PutResponse {
  status: 200 | 204 | 400;
  body?: unknown;
}

/**
 * The HTTP answer, as OpenTSDB 2.x shapes it: without flags 204 on success, otherwise 400 with an error
 * object; with `summary` `{failed, success}`, with `details` `{errors, failed, success}` — status 200 when
 * nothing failed, 400 when something did (the good points are stored either way).
 */
export function openTsdbPutResponse(result: OpenTsdbPutResult, flags: PutResponseFlags = {}): PutResponse {
  const status = result.failed > 0 ? 400 : 200;
  if (flags.details) {
    return { status, body: { errors: result.errors, failed: result.failed, success: result.success } };
  }
  if (flags.summary) return { status, body: { failed: result.failed, success: result.success } };
  if (result.failed === 0) return { status: 204 };
  return {
    status: 400,
    body: {
      error: {
        code: 400,
        message: 'One or more data points had errors',
        details: 'Please see the TSD logs or append "details" to the put request',
      },
    },
  };
}

/** OpenTSDB's error body for a whole-request failure (bad JSON, too many points): `{error: {code, message}}`. */
export function openTsdbErrorBody(
  err: TidemarkError,
  httpStatus: number,
): { error: { code: number; message: string } } {
  return { error: { code: httpStatus, message: err.message } };
}
