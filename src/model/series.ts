import { dataCorruption } from '../errors/index.js';
import { h64Raw } from './hash.js';
import { validateMetric, validateTags } from './validate.js';

/** A series: a metric and its tags. Tags are a plain record; their order never matters. */
export interface Series {
  readonly metric: string;
  readonly tags: Readonly<Record<string, string>>;
}

/** 8-byte big-endian xxh64 of the canonical key. Never held as a JS number (it would lose bits). */
export type SeriesId = Uint8Array;

export const SERIES_ID_BYTES = 8;
const SEP = 0xff; // never occurs in UTF-8, so the key is unambiguous without escaping

const utf8 = new TextEncoder();
const utf8d = new TextDecoder('utf-8', { fatal: true });

/** Validates and normalizes a series from untrusted input. */
export function makeSeries(
  metric: unknown,
  tags?: Iterable<readonly [string, string]> | Readonly<Record<string, string>>,
  field = '',
): Series {
  const prefix = field === '' ? '' : `${field}.`;
  return { metric: validateMetric(metric, `${prefix}metric`), tags: validateTags(tags, `${prefix}tags`) };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * Canonical key: metric, then for each tag sorted by name (UTF-8 byte order, so every language sorts alike):
 * 0xff name 0xff value.
 */
export function canonicalKey(series: Series): Uint8Array {
  const metric = utf8.encode(series.metric);
  const names = Object.keys(series.tags);
  const encoded: [Uint8Array, Uint8Array][] = names.map((n) => [
    utf8.encode(n),
    utf8.encode(series.tags[n]!),
  ]);
  encoded.sort((a, b) => compareBytes(a[0], b[0]));
  let len = metric.length;
  for (const [n, v] of encoded) len += 2 + n.length + v.length;
  const out = new Uint8Array(len);
  out.set(metric, 0);
  let o = metric.length;
  for (const [n, v] of encoded) {
    out[o++] = SEP;
    out.set(n, o);
    o += n.length;
    out[o++] = SEP;
    out.set(v, o);
    o += v.length;
  }
  return out;
}

/** Inverse of canonicalKey, for keys read back from storage. */
export function parseCanonicalKey(key: Uint8Array): Series {
  const parts: string[] = [];
  let start = 0;
  try {
    for (let i = 0; i <= key.length; i++) {
      if (i === key.length || key[i] === SEP) {
        parts.push(utf8d.decode(key.subarray(start, i)));
        start = i + 1;
      }
    }
  } catch (err) {
    throw dataCorruption('series_key_invalid', 'series key is not valid UTF-8', {}, err);
  }
  if (parts.length % 2 !== 1 || parts[0] === '') {
    throw dataCorruption('series_key_invalid', 'series key has a malformed layout');
  }
  const tags: Record<string, string> = Object.create(null);
  for (let i = 1; i < parts.length; i += 2) tags[parts[i]!] = parts[i + 1]!;
  return { metric: parts[0]!, tags };
}

export function seriesIdOfKey(key: Uint8Array): SeriesId {
  const id = new Uint8Array(SERIES_ID_BYTES);
  new DataView(id.buffer).setBigUint64(0, h64Raw(key, 0n));
  return id;
}

export function seriesId(series: Series): SeriesId {
  return seriesIdOfKey(canonicalKey(series));
}

export function seriesIdHex(id: SeriesId): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
}

export function seriesIdFromHex(hex: string): SeriesId {
  if (!/^[0-9a-f]{16}$/i.test(hex)) throw new RangeError(`series id must be 16 hex digits, got ${hex}`);
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** Human-readable form, OpenTSDB style: metric{a=1,b=2}. */
export function formatSeries(series: Series): string {
  const tags = Object.keys(series.tags)
    .sort()
    .map((k) => `${k}=${series.tags[k]}`)
    .join(',');
  return `${series.metric}{${tags}}`;
}
