/**
 * A hand-written encoder for `tidemark.v1.WriteRequest`, the hottest message on the wire (every SDK write and
 * every protobuf Kafka record). protobuf-es encodes by reflection, with a BigInt per timestamp and a
 * DataView call per double: a quarter of a busy SDK client's CPU went there. This writes the same bytes
 * in two passes (sizes, then one buffer), straight from the columnar arrays.
 *
 * The output is plain proto3 (docs/format/wire.md): any conforming decoder, protobuf-es's included, reads it;
 * test/transport/write-codec.test.ts checks that against protobuf-es on random batches. The decoder below is
 * the server's counterpart: wire bytes straight into a SampleBatch.
 */
import { invalidArgument } from '../errors/index.js';
import { canonicalKeyFast } from '../ingest/batch.js';
import {
  BoundedCache,
  INTERNED_SERIES_CAPACITY,
  intern,
  keyString,
  MAX_TIMESTAMP_MS,
  MIN_TIMESTAMP_MS,
  makeSeries,
  type Series,
  validateTimestamp,
} from '../model/index.js';
import type { SampleBatch } from '../storage/store.js';
import { LITTLE_ENDIAN } from '../util/endian.js';
import {
  countVarints,
  fieldSize,
  I64,
  int64Size,
  LEN,
  lenField,
  malformed,
  readInt64,
  readKey,
  readPackedInt64s,
  readString,
  skipUnknown,
  skipVarint,
  VARINT,
  WireFormatError,
  writeInt64,
  writeString,
  writeVarint,
} from './wire.js';

/** One series' samples, columnar (timestamps are integer ms; validated by the caller). */
export interface WriteSeries {
  readonly metric: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly timestamps: ArrayLike<number>;
  readonly values: ArrayLike<number>;
}

// Field keys: (field number << 3) | wire type.
const KEY_REQUEST_BATCH = (1 << 3) | LEN; // WriteRequest.batch
const KEY_BATCH_SERIES = (1 << 3) | LEN; // WriteBatch.series
const KEY_SAMPLES_SERIES = (1 << 3) | LEN; // SeriesSamples.series
const KEY_SAMPLES_TIMESTAMPS = (2 << 3) | LEN; // SeriesSamples.timestamps (packed)
const KEY_SAMPLES_VALUES = (3 << 3) | LEN; // SeriesSamples.values (packed)
const KEY_SERIES_METRIC = (1 << 3) | LEN; // Series.metric
const KEY_SERIES_TAGS = (2 << 3) | LEN; // Series.tags (map entry)
const KEY_ENTRY_KEY = (1 << 3) | LEN;
const KEY_ENTRY_VALUE = (2 << 3) | LEN;

/** Encodes `WriteRequest { batch: { series: [...] } }`. */
export function encodeWriteRequest(series: readonly WriteSeries[]): Uint8Array {
  const n = series.length;
  // Pass 1: sizes. Per series: the Series message, the packed timestamps, the SeriesSamples message.
  const seriesSize = new Uint32Array(n);
  const tsSize = new Uint32Array(n);
  const sampleSize = new Uint32Array(n);
  let batchSize = 0;
  for (let i = 0; i < n; i++) {
    const s = series[i]!;
    let sz = s.metric.length === 0 ? 0 : fieldSize(Buffer.byteLength(s.metric));
    for (const k in s.tags) {
      const entry = fieldSize(Buffer.byteLength(k)) + fieldSize(Buffer.byteLength(s.tags[k]!));
      sz += fieldSize(entry);
    }
    seriesSize[i] = sz;
    const ts = s.timestamps;
    let t = 0;
    for (let j = 0; j < ts.length; j++) t += int64Size(ts[j]!);
    tsSize[i] = t;
    let total = fieldSize(sz);
    if (ts.length > 0) total += fieldSize(t);
    if (s.values.length > 0) total += fieldSize(8 * s.values.length);
    sampleSize[i] = total;
    batchSize += fieldSize(total);
  }
  const out = Buffer.allocUnsafe(fieldSize(batchSize));
  // Pass 2: bytes.
  let pos = 0;
  out[pos++] = KEY_REQUEST_BATCH;
  pos = writeVarint(out, pos, batchSize);
  for (let i = 0; i < n; i++) {
    const s = series[i]!;
    out[pos++] = KEY_BATCH_SERIES;
    pos = writeVarint(out, pos, sampleSize[i]!);
    out[pos++] = KEY_SAMPLES_SERIES;
    pos = writeVarint(out, pos, seriesSize[i]!);
    if (s.metric.length > 0) pos = writeString(out, pos, KEY_SERIES_METRIC, s.metric);
    for (const k in s.tags) {
      const v = s.tags[k]!;
      const kb = Buffer.byteLength(k);
      const vb = Buffer.byteLength(v);
      out[pos++] = KEY_SERIES_TAGS;
      pos = writeVarint(out, pos, fieldSize(kb) + fieldSize(vb));
      pos = writeString(out, pos, KEY_ENTRY_KEY, k, kb);
      pos = writeString(out, pos, KEY_ENTRY_VALUE, v, vb);
    }
    const ts = s.timestamps;
    if (ts.length > 0) {
      out[pos++] = KEY_SAMPLES_TIMESTAMPS;
      pos = writeVarint(out, pos, tsSize[i]!);
      for (let j = 0; j < ts.length; j++) pos = writeInt64(out, pos, ts[j]!);
    }
    const vs = s.values;
    if (vs.length > 0) {
      out[pos++] = KEY_SAMPLES_VALUES;
      pos = writeVarint(out, pos, 8 * vs.length);
      for (let j = 0; j < vs.length; j++, pos += 8) out.writeDoubleLE(vs[j]!, pos);
    }
  }
  if (pos !== out.length) throw new Error(`write codec: wrote ${pos} of ${out.length} bytes`);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Decoding

/**
 * Interned series (src/model/intern.ts) by the wire bytes of their `Series` message: clients send the same
 * series in the same bytes request after request, so a hit skips parsing, validating and canonicalizing it.
 * Only bytes that decoded to a valid series get in, so a hit can raise none of the errors a miss could.
 * Bounded like the intern table; equal series in other encodings (tag order) are separate entries.
 */
const wireSeries = new BoundedCache<string, Series>(INTERNED_SERIES_CAPACITY);

/** A WriteRequest's batch as a SampleBatch, and where each series' samples start (for rejected indexes). */
export interface DecodedWrite {
  batch: SampleBatch;
  offsets: number[];
}

/** One SeriesSamples of the request: where its parts lie in the buffer (repeated fields may be split). */
interface SamplesLayout {
  /** Byte ranges [start, end) of each occurrence of its `series` field (proto merges them). */
  series: number[];
  /** Ranges of packed timestamps, or single varints (end < 0: the varint at start). */
  ts: number[];
  values: number[];
  tsCount: number;
  valueCount: number;
}

/** Pass 1: the layout of every SeriesSamples (wire errors are thrown here, before any validation). */
function layout(b: Uint8Array): SamplesLayout[] {
  const out: SamplesLayout[] = [];
  let pos = 0;
  const end = b.length;
  while (pos < end) {
    const [key, p] = readKey(b, pos, end);
    pos = p;
    if (key === KEY_REQUEST_BATCH) {
      const [bs, be] = lenField(b, pos, end);
      layoutBatch(b, bs, be, out);
      pos = be;
    } else {
      pos = skipUnknown(b, pos, end, key, 1);
    }
  }
  return out;
}

function layoutBatch(b: Uint8Array, pos: number, end: number, out: SamplesLayout[]): void {
  while (pos < end) {
    const [key, p] = readKey(b, pos, end);
    pos = p;
    if (key !== KEY_BATCH_SERIES) {
      pos = skipUnknown(b, pos, end, key, 1);
      continue;
    }
    const [ss, se] = lenField(b, pos, end);
    pos = se;
    const l: SamplesLayout = { series: [], ts: [], values: [], tsCount: 0, valueCount: 0 };
    let q = ss;
    while (q < se) {
      const [k, q1] = readKey(b, q, se);
      q = q1;
      if (k === KEY_SAMPLES_SERIES) {
        const [a, z] = lenField(b, q, se);
        l.series.push(a, z);
        q = z;
      } else if (k === KEY_SAMPLES_TIMESTAMPS) {
        const [a, z] = lenField(b, q, se);
        l.ts.push(a, z);
        l.tsCount += countVarints(b, a, z);
        q = z;
      } else if (k === ((2 << 3) | VARINT)) {
        const z = skipVarint(b, q, se);
        l.ts.push(q, -1);
        l.tsCount++;
        q = z;
      } else if (k === KEY_SAMPLES_VALUES) {
        const [a, z] = lenField(b, q, se);
        if ((z - a) % 8 !== 0) throw malformed('packed doubles of a length not a multiple of 8');
        l.values.push(a, z);
        l.valueCount += (z - a) / 8;
        q = z;
      } else if (k === ((3 << 3) | I64)) {
        if (q + 8 > se) throw malformed('premature end of data');
        l.values.push(q, q + 8);
        l.valueCount++;
        q += 8;
      } else {
        q = skipUnknown(b, q, se, k, 3);
      }
    }
    out.push(l);
  }
}

/** The merged Series of all its occurrences: metric (last wins) and tags (map entries, last wins per key). */
function readSeries(b: Uint8Array, ranges: number[]): { metric: string; tags: Record<string, string> } {
  let metric = '';
  const tags: Record<string, string> = {};
  for (let r = 0; r < ranges.length; r += 2) {
    let pos = ranges[r]!;
    const end = ranges[r + 1]!;
    while (pos < end) {
      const [key, p] = readKey(b, pos, end);
      pos = p;
      if (key === KEY_SERIES_METRIC) {
        const [a, z] = lenField(b, pos, end);
        metric = readString(b, a, z);
        pos = z;
      } else if (key === KEY_SERIES_TAGS) {
        const [a, z] = lenField(b, pos, end);
        let k = '';
        let v = '';
        let q = a;
        while (q < z) {
          const [ek, q1] = readKey(b, q, z);
          q = q1;
          if (ek === KEY_ENTRY_KEY || ek === KEY_ENTRY_VALUE) {
            const [sa, sz] = lenField(b, q, z);
            if (ek === KEY_ENTRY_KEY) k = readString(b, sa, sz);
            else v = readString(b, sa, sz);
            q = sz;
          } else {
            q = skipUnknown(b, q, z, ek, 2);
          }
        }
        tags[k] = v;
        pos = z;
      } else {
        pos = skipUnknown(b, pos, end, key, 2);
      }
    }
  }
  return { metric, tags };
}

/**
 * Decodes a WriteRequest's wire bytes straight into a SampleBatch: the same result and the same errors, in
 * the same order, as protobuf-es's fromBinary followed by src/api/grpc-service.ts batchFromWriteRequest
 * (test/transport/write-codec.test.ts checks both on random and mutated inputs), without building the
 * message objects or a BigInt per timestamp. Wire-format errors are INVALID_ARGUMENT `request_malformed`.
 */
export function decodeWriteRequest(
  bytes: Uint8Array,
  /** Called with the sample and series counts before anything is allocated (throws to refuse). */
  checkSize?: (samples: number, series: number) => void,
): DecodedWrite {
  try {
    return decode(bytes, checkSize);
  } catch (err) {
    if (err instanceof WireFormatError) {
      throw invalidArgument(
        'request_malformed',
        'batch',
        `the WriteRequest is not valid protobuf: ${err.message}`,
      );
    }
    throw err;
  }
}

function decode(bytes: Uint8Array, checkSize?: (samples: number, series: number) => void): DecodedWrite {
  const b = bytes;
  const list = layout(b);
  const raw = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  // Series bytes seen before are a known-valid series: no parsing, no validation (see wireSeries).
  const wireKeys = list.map((l) =>
    l.series.length === 2 ? raw.toString('latin1', l.series[0], l.series[1]) : undefined,
  );
  const known = wireKeys.map((k) => (k === undefined ? undefined : wireSeries.get(k)));
  const seriesInfo = list.map((l, i) =>
    l.series.length === 0 || known[i] !== undefined ? undefined : readSeries(b, l.series),
  );
  let n = 0;
  for (let i = 0; i < list.length; i++) {
    const l = list[i]!;
    if (l.tsCount !== l.valueCount) {
      throw invalidArgument(
        'batch_invalid',
        `batch.series[${i}].values`,
        `batch.series[${i}]: ${l.tsCount} timestamps but ${l.valueCount} values`,
      );
    }
    n += l.tsCount;
  }
  checkSize?.(n, list.length);
  const series: Series[] = [];
  const offsets: number[] = [];
  const seriesRef = new Uint32Array(n);
  const timestamps = new Float64Array(n);
  const values = new Float64Array(n);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const valueBytes = new Uint8Array(values.buffer);
  let j = 0;
  for (let i = 0; i < list.length; i++) {
    const l = list[i]!;
    let s = known[i];
    if (s === undefined) {
      const info = seriesInfo[i];
      if (info === undefined) {
        throw invalidArgument('series_missing', `batch.series[${i}].series`, `batch.series[${i}]: no series`);
      }
      const valid = makeSeries(info.metric, info.tags, `batch.series[${i}].series`);
      const key = canonicalKeyFast(valid);
      s = intern(key, keyString(key), () => valid);
      const wk = wireKeys[i];
      if (wk !== undefined) wireSeries.set(wk, s);
    }
    series.push(s);
    offsets.push(j);
    const first = j;
    for (let r = 0; r < l.ts.length; r += 2) {
      const pos = l.ts[r]!;
      const end = l.ts[r + 1]!;
      if (end < 0) {
        [timestamps[j++]] = readInt64(b, pos, b.length);
        continue;
      }
      j = readPackedInt64s(b, pos, end, timestamps, j);
    }
    let v = first;
    for (let r = 0; r < l.values.length; r += 2) {
      const a = l.values[r]!;
      const z = l.values[r + 1]!;
      if (LITTLE_ENDIAN) {
        // Byte copy: keeps every NaN payload and needs no alignment of the request buffer.
        valueBytes.set(b.subarray(a, z), v * 8);
        v += (z - a) / 8;
      } else {
        for (let pos = a; pos < z; pos += 8) values[v++] = view.getFloat64(pos, true);
      }
    }
    for (let k = first; k < j; k++) {
      const t = timestamps[k]!;
      // Malformed input fails the whole request before anything is written (the store would only reject
      // the sample); policy rejections (too_old, out_of_retention) stay per sample in the response.
      if (!(t >= MIN_TIMESTAMP_MS && t <= MAX_TIMESTAMP_MS)) {
        validateTimestamp(t, `batch.series[${i}].timestamps[${k - first}]`);
      }
      seriesRef[k] = i;
    }
  }
  return { batch: { series, seriesRef, timestamps, values, length: n }, offsets };
}
