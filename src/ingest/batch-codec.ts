/**
 * Batch codec, format version 1: the Raft entry payload of a write (a SampleBatch, plus the Kafka
 * partition/offset it came from). Layout and rules: docs/format/batch.md.
 *
 * Decoding treats its input as untrusted: every length is bounds-checked before anything is allocated,
 * series are re-validated, and any defect is a TidemarkError DATA_CORRUPTION — never another exception.
 */
import { dataCorruption, invalidArgument, type TidemarkError } from '../errors/index.js';
import {
  MAX_NAME_BYTES,
  MAX_TAGS,
  MAX_TIMESTAMP_MS,
  MAX_VALUE_BYTES,
  makeSeries,
  type Series,
} from '../model/index.js';
import type { SampleBatch } from '../storage/store.js';
import { varintSize, writeVarint } from '../util/varint.js';
import { canonicalKeyFast } from './batch.js';

export const BATCH_FORMAT_VERSION = 1;

/** Entry kinds (byte 1). Only `write` is defined in version 1; the others are reserved. */
export const EntryKind = {
  write: 1,
  /** Reserved for the delete entry (layout to be defined with the delete path). */
  delete: 2,
} as const;

export interface KafkaPosition {
  /** Kafka partition, a uint32 (= the shard). */
  partition: number;
  /** Offset of the last record in the batch, a safe non-negative integer. */
  offset: number;
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

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
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
 * position) and throws INVALID_ARGUMENT, so an encoded entry always decodes.
 */
export function encodeBatch(batch: SampleBatch, extra: BatchExtra = {}): Uint8Array {
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
  let keyBytes = 0;
  for (let i = 0; i < nSeries; i++) {
    const s = batch.series[i];
    const valid = makeSeries(s?.metric, s?.tags, `series[${i}]`);
    const key = canonicalKeyFast(valid);
    keys[i] = key;
    keyBytes += varintSize(key.length) + key.length;
  }
  let flags = 0;
  let header = 3;
  const kafka = extra.kafka;
  if (kafka !== undefined) {
    const { partition, offset } = kafka;
    if (!Number.isInteger(partition) || partition < 0 || partition > 0xffffffff) {
      throw invalidArgument('kafka_partition_invalid', 'kafka.partition', 'kafka partition must be a uint32');
    }
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw invalidArgument(
        'kafka_offset_invalid',
        'kafka.offset',
        'kafka offset must be a safe integer >= 0',
      );
    }
    flags |= FLAG_KAFKA;
    header += varintSize(partition) + varintSize(offset);
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
    p = writeVarint(buf, p, kafka.offset);
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
    const offset = cur.varint(len, 'kafka offset');
    if (partition > 0xffffffff)
      throw corrupt('kafka_partition_invalid', 'batch entry: kafka partition > uint32');
    extra.kafka = { partition, offset };
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
  for (let i = 0; i < nSeries; i++) {
    cur.p = p;
    const klen = cur.varint(len, 'series key length');
    p = cur.p;
    if (klen === 0 || klen > MAX_KEY_BYTES || klen > len - p) {
      throw corrupt('bad_series_key', `batch entry: series ${i} key length ${klen} is invalid or truncated`);
    }
    const key = bytes.subarray(p, p + klen);
    p += klen;
    series[i] = decodeSeries(key, i, seen);
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
function decodeSeries(bytes: Uint8Array, i: number, seen: Set<string>): Series {
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
  let dedup: string;
  try {
    const metric = text(key, bounds[0], bounds[1]);
    dedup = metric;
    const pairs: [string, string][] = [];
    for (let p = 1; p < parts; p += 2) {
      const name = text(key, bounds[2 * p], bounds[2 * p + 1]);
      const value = text(key, bounds[2 * p + 2], bounds[2 * p + 3]);
      pairs.push([name, value]);
      dedup += `\u0000${name}\u0000${value}`;
    }
    series = makeSeries(metric, pairs);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw corrupt('series_invalid', `batch entry: series ${i} is invalid: ${msg}`, err);
  }
  if (seen.has(dedup)) throw corrupt('duplicate_series', `batch entry: series ${i} appears twice`);
  seen.add(dedup);
  return series;
}
