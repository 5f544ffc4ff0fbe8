/**
 * Shard entry codec, format version 1: the Raft entry payload of a write (a SampleBatch, plus the Kafka
 * partition and offset range it came from) or of a delete. Layout and rules: docs/format/batch.md.
 *
 * Decoding treats its input as untrusted: every length is bounds-checked before anything is allocated,
 * series are re-validated, and any defect is a TidemarkError DATA_CORRUPTION — never another exception.
 */
import { dataCorruption, invalidArgument, type TidemarkError } from '../errors/index.js';
import {
  INTERNED_SERIES_CAPACITY,
  intern,
  internedKey,
  internedSeries,
  keyString,
  MAX_NAME_BYTES,
  MAX_TAGS,
  MAX_TIMESTAMP_MS,
  MAX_VALUE_BYTES,
  makeSeries,
  resetInternedSeries,
  type Series,
} from '../model/index.js';
import type { DeleteRequest, Matcher, MatchOp, SampleBatch } from '../storage/store.js';
import { LITTLE_ENDIAN } from '../util/endian.js';
import { varintSize, writeVarint } from '../util/varint.js';
import { canonicalKeyFast } from './batch.js';

export const BATCH_FORMAT_VERSION = 1;

/** Entry kinds (byte 1). */
export const EntryKind = {
  write: 1,
  delete: 2,
  policy: 3,
} as const;

/** A shard policy entry (kind 3): settings every replica applies at the same log index. */
export interface ShardPolicy {
  /** Samples older than now - retentionMs are dropped by each replica's retention pass; 0 keeps everything. */
  retentionMs: number;
}

/** The Kafka records a write entry covers: [firstOffset, lastOffset] of a partition (docs/kafka.md). */
export interface KafkaPosition {
  /** Kafka partition, a uint32 (= the shard). */
  partition: number;
  /** Offset of the first record covered, a safe non-negative integer. */
  firstOffset: number;
  /** Offset of the last record covered (bad and skipped records included); >= firstOffset. */
  lastOffset: number;
}

export interface BatchExtra {
  kafka?: KafkaPosition;
}

const FLAG_KAFKA = 0x01;
/** Longest possible canonical key: metric + 64 × (0xff name 0xff value). */
export const MAX_KEY_BYTES = MAX_NAME_BYTES + MAX_TAGS * (2 + MAX_NAME_BYTES + MAX_VALUE_BYTES);
/** Most samples one entry may carry (the varint count is checked against this before allocating). */
export const MAX_ENTRY_SAMPLES = 16_777_216;
export const MAX_ENTRY_SERIES = 16_777_216;

/**
 * Decoded series are interned by canonical key (src/model/intern.ts): every entry of a shard carries the
 * full key of each of its series, and the same series recur entry after entry. A hit skips decoding and
 * validation and hands out the same frozen Series object every time (the store's per-object cache then
 * skips canonicalizing and hashing it too). The bound is the process-wide intern table's.
 */
export const DECODED_SERIES_CACHE_SIZE = INTERNED_SERIES_CAPACITY;

/** How many decoded series the process-wide cache holds now, and its bound. */
export function decodedSeriesCache(): { size: number; capacity: number } {
  return internedSeries();
}

/** Replaces the process-wide decoded-series cache by an empty one of `capacity` series. */
export function resetDecodedSeriesCache(capacity = DECODED_SERIES_CACHE_SIZE): void {
  resetInternedSeries(capacity);
}

const TWO31 = 2 ** 31;

/** Reused encode buffer; batches whose worst case exceeds SCRATCH_MAX get a buffer of their own. */
const SCRATCH_MAX = 4 * 1024 * 1024;
let scratch = new Uint8Array(64 * 1024);

function scratchOf(size: number): Uint8Array {
  if (size > SCRATCH_MAX) return new Uint8Array(size);
  if (scratch.length < size)
    scratch = new Uint8Array(Math.min(SCRATCH_MAX, Math.max(size, scratch.length * 2)));
  return scratch;
}

/**
 * Encodes a write entry. Validates what the decoder would reject (series, refs, timestamps, the Kafka
 * position, the same series twice) and throws INVALID_ARGUMENT, so an encoded entry always decodes.
 * `interned`, when given, receives the batch's series as the interned objects decoding would give.
 */
export function encodeBatch(batch: SampleBatch, extra: BatchExtra = {}, interned?: Series[]): Uint8Array {
  const n = batch.length;
  if (!Number.isInteger(n) || n < 0 || n > MAX_ENTRY_SAMPLES) {
    throw invalidArgument('batch_invalid', 'length', `batch length ${n} is not in [0, ${MAX_ENTRY_SAMPLES}]`);
  }
  if (batch.seriesRef.length < n || batch.timestamps.length < n || batch.values.length < n) {
    throw invalidArgument('batch_invalid', 'length', `batch arrays are shorter than its length ${n}`);
  }
  const nSeries = batch.series.length;
  if (nSeries > MAX_ENTRY_SERIES) {
    throw invalidArgument('batch_invalid', 'series', `batch has more than ${MAX_ENTRY_SERIES} series`);
  }
  const keys: Uint8Array[] = new Array(nSeries);
  const seen = nSeries > 1 ? new Set<string>() : undefined;
  let keyBytes = 0;
  for (let i = 0; i < nSeries; i++) {
    const s = batch.series[i];
    // An interned series was validated when it was interned.
    let key = s === undefined || s === null ? undefined : internedKey(s);
    let k: string | undefined;
    let series = s;
    if (key === undefined) {
      const valid = makeSeries(s?.metric, s?.tags, `series[${i}]`);
      key = canonicalKeyFast(valid);
      if (interned !== undefined) {
        k = keyString(key);
        series = intern(key, k, () => valid);
      }
    }
    if (seen !== undefined) {
      k ??= keyString(key);
      if (seen.has(k)) {
        throw invalidArgument(
          'duplicate_series',
          `series[${i}]`,
          `series[${i}] is the same series as an earlier one of the batch; merge their samples`,
        );
      }
      seen.add(k);
    }
    if (interned !== undefined) interned.push(series!);
    keys[i] = key;
    keyBytes += varintSize(key.length) + key.length;
  }
  let flags = 0;
  let header = 3;
  const kafka = extra.kafka;
  if (kafka !== undefined) {
    const { partition, firstOffset, lastOffset } = kafka;
    if (!Number.isInteger(partition) || partition < 0 || partition > 0xffffffff) {
      throw invalidArgument('kafka_partition_invalid', 'kafka.partition', 'kafka partition must be a uint32');
    }
    for (const [name, v] of [
      ['firstOffset', firstOffset],
      ['lastOffset', lastOffset],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 0) {
        throw invalidArgument(
          'kafka_offset_invalid',
          `kafka.${name}`,
          `kafka ${name} must be a safe integer >= 0`,
        );
      }
    }
    if (firstOffset > lastOffset) {
      throw invalidArgument(
        'kafka_offset_invalid',
        'kafka.firstOffset',
        'kafka firstOffset is after lastOffset',
      );
    }
    flags |= FLAG_KAFKA;
    header += varintSize(partition) + varintSize(firstOffset) + varintSize(lastOffset);
  }
  // Worst case per sample: 5 (ref) + 8 (timestamp delta) + 8 (value).
  const worst = header + varintSize(nSeries) + keyBytes + varintSize(n) + n * 21;
  const buf = scratchOf(worst);
  buf[0] = BATCH_FORMAT_VERSION;
  buf[1] = EntryKind.write;
  buf[2] = flags;
  let p = 3;
  if (kafka !== undefined) {
    p = writeVarint(buf, p, kafka.partition);
    p = writeVarint(buf, p, kafka.firstOffset);
    p = writeVarint(buf, p, kafka.lastOffset);
  }
  p = writeVarint(buf, p, nSeries);
  for (let i = 0; i < nSeries; i++) {
    const key = keys[i];
    p = writeVarint(buf, p, key.length);
    buf.set(key, p);
    p += key.length;
  }
  p = writeVarint(buf, p, n);
  const refs = batch.seriesRef;
  for (let i = 0; i < n; i++) {
    let r = refs[i];
    if (r >= nSeries) {
      throw invalidArgument(
        'series_ref_invalid',
        `seriesRef[${i}]`,
        `seriesRef[${i}] = ${r} but the batch has ${nSeries} series`,
      );
    }
    while (r >= 0x80) {
      buf[p++] = (r & 0x7f) | 0x80;
      r >>>= 7;
    }
    buf[p++] = r;
  }
  const ts = batch.timestamps;
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const t = ts[i];
    if (!(t >= 0 && t <= MAX_TIMESTAMP_MS && Math.floor(t) === t)) {
      throw invalidArgument(
        Number.isInteger(t) ? 'timestamp_out_of_range' : 'timestamp_invalid',
        `timestamps[${i}]`,
        `timestamps[${i}] = ${t} is not an integer in [0, ${MAX_TIMESTAMP_MS}] ms`,
      );
    }
    const d = t - prev;
    prev = t;
    let z = d >= 0 ? d * 2 : -d * 2 - 1;
    if (z < TWO31) {
      while (z >= 0x80) {
        buf[p++] = (z & 0x7f) | 0x80;
        z >>>= 7;
      }
      buf[p++] = z;
    } else {
      p = writeVarint(buf, p, z);
    }
  }
  const vals = batch.values;
  if (LITTLE_ENDIAN) {
    buf.set(new Uint8Array(vals.buffer, vals.byteOffset, n * 8), p);
    p += n * 8;
  } else {
    const src = new DataView(vals.buffer, vals.byteOffset, n * 8);
    const dst = new DataView(buf.buffer, buf.byteOffset);
    for (let i = 0; i < n; i++, p += 8) {
      dst.setUint32(p, src.getUint32(i * 8 + 4), true);
      dst.setUint32(p + 4, src.getUint32(i * 8), true);
    }
  }
  return buf.slice(0, p);
}

/** The entry kind (byte 1) of an encoded entry, after checking the version. */
export function entryKind(bytes: Uint8Array): number {
  if (bytes.length < 2) throw corrupt('truncated', `batch entry: ${bytes.length} bytes, too short`);
  if (bytes[0] !== BATCH_FORMAT_VERSION) {
    throw corrupt(
      'unknown_format_version',
      `batch entry: format version ${bytes[0]}, want ${BATCH_FORMAT_VERSION}`,
    );
  }
  return bytes[1];
}

function corrupt(reason: string, message: string, cause?: unknown): TidemarkError {
  return dataCorruption(reason, message, {}, cause);
}

/** Decodes a write entry; any defect → DATA_CORRUPTION. The result owns its arrays (no aliasing of `bytes`). */
export function decodeBatch(bytes: Uint8Array): { batch: SampleBatch; extra: BatchExtra } {
  const len = bytes.length;
  const kind = entryKind(bytes);
  if (kind !== EntryKind.write)
    throw corrupt('unknown_entry_kind', `batch entry: kind ${kind} is not a write`);
  if (len < 3) throw corrupt('truncated', 'batch entry: truncated header');
  const flags = bytes[2];
  if ((flags & ~FLAG_KAFKA) !== 0)
    throw corrupt('unknown_flags', `batch entry: unknown flags 0x${flags.toString(16)}`);
  const cur = new Cursor(bytes, 3);
  const extra: BatchExtra = {};
  if (flags & FLAG_KAFKA) {
    const partition = cur.varint(len, 'kafka partition');
    const firstOffset = cur.varint(len, 'kafka first offset');
    const lastOffset = cur.varint(len, 'kafka last offset');
    if (partition > 0xffffffff)
      throw corrupt('kafka_partition_invalid', 'batch entry: kafka partition > uint32');
    if (firstOffset > lastOffset)
      throw corrupt('kafka_offset_invalid', 'batch entry: kafka first offset after the last');
    extra.kafka = { partition, firstOffset, lastOffset };
  }
  const nSeries = cur.varint(len, 'series count');
  let p = cur.p;
  // Each series takes at least 2 bytes (length + one byte of metric): bounds the allocation.
  if (nSeries > MAX_ENTRY_SERIES || nSeries * 2 > len - p) {
    throw corrupt(
      'bad_series_count',
      `batch entry: series count ${nSeries} does not fit in ${len - p} bytes`,
    );
  }
  const series: Series[] = new Array(nSeries);
  const seen = new Set<string>();
  const raw = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i < nSeries; i++) {
    cur.p = p;
    const klen = cur.varint(len, 'series key length');
    p = cur.p;
    if (klen === 0 || klen > MAX_KEY_BYTES || klen > len - p) {
      throw corrupt('bad_series_key', `batch entry: series ${i} key length ${klen} is invalid or truncated`);
    }
    // A valid series has exactly one canonical key, so equal keys are the same series (and vice versa).
    const k = raw.toString('latin1', p, p + klen);
    const key = bytes.subarray(p, p + klen);
    const s = intern(key, k, () => decodeSeries(key, i));
    if (seen.has(k)) throw corrupt('duplicate_series', `batch entry: series ${i} appears twice`);
    seen.add(k);
    series[i] = s;
    p += klen;
  }
  cur.p = p;
  const n = cur.varint(len, 'sample count');
  p = cur.p;
  // Each sample takes at least 10 bytes (1 ref + 1 timestamp + 8 value).
  if (n > MAX_ENTRY_SAMPLES || n * 10 > len - p) {
    throw corrupt('bad_sample_count', `batch entry: sample count ${n} does not fit in ${len - p} bytes`);
  }
  if (n > 0 && nSeries === 0) throw corrupt('series_ref_invalid', 'batch entry: samples but no series');
  const valuesAt = len - n * 8;
  const seriesRef = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    if (p >= valuesAt) throw corrupt('truncated', `batch entry: truncated series refs at offset ${p}`);
    let r = bytes[p++];
    if (r >= 0x80) {
      cur.p = p - 1;
      r = cur.varint(valuesAt, 'series ref');
      p = cur.p;
    }
    if (r >= nSeries)
      throw corrupt('series_ref_invalid', `batch entry: seriesRef[${i}] = ${r} >= ${nSeries}`);
    seriesRef[i] = r;
  }
  const timestamps = new Float64Array(n);
  let t = 0;
  for (let i = 0; i < n; i++) {
    if (p >= valuesAt) throw corrupt('truncated', `batch entry: truncated timestamps at offset ${p}`);
    let z = bytes[p++];
    if (z >= 0x80) {
      cur.p = p - 1;
      z = cur.varint(valuesAt, 'timestamp');
      p = cur.p;
    }
    t += z < TWO31 ? (z & 1 ? -((z + 1) >>> 1) : z >>> 1) : z % 2 === 1 ? -(z + 1) / 2 : z / 2;
    if (t < 0 || t > MAX_TIMESTAMP_MS) {
      throw corrupt('timestamp_out_of_range', `batch entry: timestamps[${i}] = ${t} is out of range`);
    }
    timestamps[i] = t;
  }
  if (p !== valuesAt) {
    throw corrupt('bad_length', `batch entry: ${valuesAt - p} unexpected bytes before the values section`);
  }
  const values = new Float64Array(n);
  if (LITTLE_ENDIAN) {
    new Uint8Array(values.buffer).set(bytes.subarray(p, len));
  } else {
    const src = new DataView(bytes.buffer, bytes.byteOffset + p, n * 8);
    const dst = new DataView(values.buffer);
    for (let i = 0; i < n; i++) {
      dst.setUint32(i * 8, src.getUint32(i * 8 + 4, true));
      dst.setUint32(i * 8 + 4, src.getUint32(i * 8, true));
    }
  }
  return { batch: { series, seriesRef, timestamps, values, length: n }, extra };
}

const utf8d = new TextDecoder('utf-8', { fatal: true });
const utf8e = new TextEncoder();

/** Reads unsigned varints (< 2^53) that must end before `end`; DATA_CORRUPTION otherwise. */
class Cursor {
  constructor(
    readonly bytes: Uint8Array,
    public p: number,
  ) {}

  varint(end: number, what: string): number {
    const bytes = this.bytes;
    let p = this.p;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      if (p >= end) throw corrupt('truncated', `batch entry: truncated ${what} at offset ${p}`);
      const b = bytes[p++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) break;
        this.p = p;
        return result;
      }
      mul *= 128;
    }
    throw corrupt('bad_varint', `batch entry: malformed ${what} varint at offset ${p}`);
  }
}

/** Decodes key[a, b): ASCII without crossing into the native decoder (the common case), else strict UTF-8. */
function text(key: Buffer, a: number, b: number): string {
  for (let i = a; i < b; i++) if (key[i] >= 0x80) return utf8d.decode(key.subarray(a, b));
  return key.toString('latin1', a, b);
}

/** Compares key[a1, b1) with key[a2, b2) as bytes. */
function compareRanges(key: Buffer, a1: number, b1: number, a2: number, b2: number): number {
  const n = Math.min(b1 - a1, b2 - a2);
  for (let i = 0; i < n; i++) {
    const d = key[a1 + i] - key[a2 + i];
    if (d !== 0) return d;
  }
  return b1 - a1 - (b2 - a2);
}

/**
 * Parses and re-validates a canonical key: metric (0xff name 0xff value)*, names strictly ascending by
 * bytes (so the key is the canonical one and names are unique). Returns the series and a dedup string.
 */
/** Decodes and validates one canonical key; the Series is frozen (it is shared through the cache). */
function decodeSeries(bytes: Uint8Array, i: number): Series {
  const key = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const bounds: number[] = [];
  let from = 0;
  for (let j = 0; j <= key.length; j++) {
    if (j === key.length || key[j] === 0xff) {
      bounds.push(from, j);
      from = j + 1;
    }
  }
  const parts = bounds.length / 2;
  if (parts % 2 !== 1)
    throw corrupt('series_key_invalid', `batch entry: series ${i} key has a malformed layout`);
  for (let p = 3; p < parts; p += 2) {
    // names are parts 1, 3, 5, ...
    if (compareRanges(key, bounds[2 * p - 4], bounds[2 * p - 3], bounds[2 * p], bounds[2 * p + 1]) >= 0) {
      throw corrupt('series_key_not_canonical', `batch entry: series ${i} key is not in canonical form`);
    }
  }
  let series: Series;
  try {
    const metric = text(key, bounds[0], bounds[1]);
    const pairs: [string, string][] = [];
    for (let p = 1; p < parts; p += 2) {
      const name = text(key, bounds[2 * p], bounds[2 * p + 1]);
      const value = text(key, bounds[2 * p + 2], bounds[2 * p + 3]);
      pairs.push([name, value]);
    }
    series = makeSeries(metric, pairs);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw corrupt('series_invalid', `batch entry: series ${i} is invalid: ${msg}`, err);
  }
  Object.freeze(series.tags);
  return Object.freeze(series);
}

// ---------------------------------------------------------------------------------------------------------
// Policy entries (kind 3): version | kind | varint retentionMs

export function encodePolicy(policy: ShardPolicy): Uint8Array {
  const ms = policy.retentionMs;
  if (!Number.isSafeInteger(ms) || ms < 0)
    throw invalidArgument('retention_invalid', 'retentionMs', 'retentionMs must be a non-negative integer');
  const buf = new Uint8Array(2 + varintSize(ms));
  buf[0] = BATCH_FORMAT_VERSION;
  buf[1] = EntryKind.policy;
  writeVarint(buf, 2, ms);
  return buf;
}

/** Decodes a policy entry; any defect → DATA_CORRUPTION. */
export function decodePolicy(bytes: Uint8Array): ShardPolicy {
  const kind = entryKind(bytes);
  if (kind !== EntryKind.policy)
    throw corrupt('unknown_entry_kind', `policy entry: kind ${kind} is not a policy`);
  const cur = new Cursor(bytes, 2);
  const retentionMs = cur.varint(bytes.length, 'retention');
  if (cur.p !== bytes.length) throw corrupt('trailing_bytes', 'policy entry: trailing bytes');
  return { retentionMs };
}

// ---------------------------------------------------------------------------------------------------------
// Delete entries (kind 2)

const OP_CODES: Record<MatchOp, number> = { '=': 1, '!=': 2, '=~': 3, '!~': 4 };
const OPS_BY_CODE: readonly (MatchOp | undefined)[] = [undefined, '=', '!=', '=~', '!~'];
const DELETE_HAS_MIN = 0x01;
const DELETE_HAS_MAX = 0x02;
/** Longest string a delete entry carries (a metric, a tag name or a matcher value / regex). */
export const MAX_DELETE_STRING_BYTES = 65_536;
/** Most matchers a delete entry carries. */
export const MAX_DELETE_MATCHERS = 256;

function zigzag(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}

function unzigzag(z: number): number {
  return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
}

/**
 * Encodes a delete entry. The request's meaning is not validated here (the store validates it when applying,
 * identically on every replica); only what the layout cannot carry is refused (INVALID_ARGUMENT).
 */
export function encodeDelete(request: DeleteRequest): Uint8Array {
  const strings: Uint8Array[] = [];
  const str = (v: unknown, field: string): void => {
    if (typeof v !== 'string') throw invalidArgument('delete_invalid', field, `${field} must be a string`);
    const b = utf8e.encode(v);
    if (b.length > MAX_DELETE_STRING_BYTES)
      throw invalidArgument(
        'delete_invalid',
        field,
        `${field} is longer than ${MAX_DELETE_STRING_BYTES} bytes`,
      );
    strings.push(b);
  };
  str(request.metric, 'metric');
  const matchers = request.matchers ?? [];
  if (!Array.isArray(matchers) || matchers.length > MAX_DELETE_MATCHERS) {
    throw invalidArgument(
      'delete_invalid',
      'matchers',
      `matchers must be an array of at most ${MAX_DELETE_MATCHERS}`,
    );
  }
  const ops: number[] = [];
  matchers.forEach((m, i) => {
    str(m?.name, `matchers[${i}].name`);
    const op = OP_CODES[m?.op as MatchOp];
    if (op === undefined)
      throw invalidArgument('delete_invalid', `matchers[${i}].op`, 'op must be = != =~ !~');
    ops.push(op);
    str(m.value, `matchers[${i}].value`);
  });
  let flags = 0;
  const times: number[] = [];
  for (const [bit, v, field] of [
    [DELETE_HAS_MIN, request.minT, 'minT'],
    [DELETE_HAS_MAX, request.maxT, 'maxT'],
  ] as const) {
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v))
      throw invalidArgument('delete_invalid', field, `${field} must be an integer`);
    flags |= bit;
    times.push(v);
  }
  let size = 3 + varintSize(matchers.length) + matchers.length;
  for (const b of strings) size += varintSize(b.length) + b.length;
  for (const t of times) size += varintSize(zigzag(t));
  const buf = new Uint8Array(size);
  buf[0] = BATCH_FORMAT_VERSION;
  buf[1] = EntryKind.delete;
  buf[2] = flags;
  let p = 3;
  const put = (b: Uint8Array): void => {
    p = writeVarint(buf, p, b.length);
    buf.set(b, p);
    p += b.length;
  };
  put(strings[0]!);
  p = writeVarint(buf, p, matchers.length);
  for (let i = 0; i < matchers.length; i++) {
    put(strings[1 + 2 * i]!);
    buf[p++] = ops[i]!;
    put(strings[2 + 2 * i]!);
  }
  for (const t of times) p = writeVarint(buf, p, zigzag(t));
  return buf;
}

/** Decodes a delete entry; any defect → DATA_CORRUPTION. */
export function decodeDelete(bytes: Uint8Array): DeleteRequest {
  const len = bytes.length;
  const kind = entryKind(bytes);
  if (kind !== EntryKind.delete)
    throw corrupt('unknown_entry_kind', `delete entry: kind ${kind} is not a delete`);
  if (len < 3) throw corrupt('truncated', 'delete entry: truncated header');
  const flags = bytes[2];
  if ((flags & ~(DELETE_HAS_MIN | DELETE_HAS_MAX)) !== 0)
    throw corrupt('unknown_flags', `delete entry: unknown flags 0x${flags.toString(16)}`);
  const cur = new Cursor(bytes, 3);
  const str = (what: string): string => {
    const n = cur.varint(len, `${what} length`);
    if (n > MAX_DELETE_STRING_BYTES || n > len - cur.p)
      throw corrupt('truncated', `delete entry: ${what} truncated`);
    const s = bytes.subarray(cur.p, cur.p + n);
    cur.p += n;
    try {
      return utf8d.decode(s);
    } catch (err) {
      throw corrupt('bad_utf8', `delete entry: ${what} is not UTF-8`, err);
    }
  };
  const metric = str('metric');
  const nm = cur.varint(len, 'matcher count');
  if (nm > MAX_DELETE_MATCHERS || nm * 3 > len - cur.p)
    throw corrupt('bad_matcher_count', `delete entry: matcher count ${nm} does not fit`);
  const matchers: Matcher[] = [];
  for (let i = 0; i < nm; i++) {
    const name = str(`matcher ${i} name`);
    if (cur.p >= len) throw corrupt('truncated', `delete entry: matcher ${i} op truncated`);
    const op = OPS_BY_CODE[bytes[cur.p++]!];
    if (op === undefined) throw corrupt('bad_matcher_op', `delete entry: matcher ${i} has an unknown op`);
    matchers.push({ name, op, value: str(`matcher ${i} value`) });
  }
  const request: DeleteRequest = { metric, matchers };
  if (flags & DELETE_HAS_MIN) request.minT = unzigzag(cur.varint(len, 'minT'));
  if (flags & DELETE_HAS_MAX) request.maxT = unzigzag(cur.varint(len, 'maxT'));
  if (cur.p !== len) throw corrupt('bad_length', `delete entry: ${len - cur.p} trailing bytes`);
  return request;
}
