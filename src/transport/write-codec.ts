/**
 * A hand-written encoder for `tidemark.v1.WriteRequest`, the hottest message on the wire (every SDK write and
 * every protobuf Kafka record). protobuf-es encodes by reflection, with a BigInt per timestamp and a
 * DataView call per double: a quarter of a busy SDK client's CPU went there. This writes the same bytes
 * in two passes (sizes, then one buffer), straight from the columnar arrays.
 *
 * The output is plain proto3 (docs/format/wire.md): any conforming decoder, protobuf-es's included, reads it;
 * test/transport/write-codec.test.ts checks that against protobuf-es on random batches.
 */

/** One series' samples, columnar (timestamps are integer ms; validated by the caller). */
export interface WriteSeries {
  readonly metric: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly timestamps: ArrayLike<number>;
  readonly values: ArrayLike<number>;
}

// Field keys: (field number << 3) | wire type.
const LEN = 2;
const KEY_REQUEST_BATCH = (1 << 3) | LEN; // WriteRequest.batch
const KEY_BATCH_SERIES = (1 << 3) | LEN; // WriteBatch.series
const KEY_SAMPLES_SERIES = (1 << 3) | LEN; // SeriesSamples.series
const KEY_SAMPLES_TIMESTAMPS = (2 << 3) | LEN; // SeriesSamples.timestamps (packed)
const KEY_SAMPLES_VALUES = (3 << 3) | LEN; // SeriesSamples.values (packed)
const KEY_SERIES_METRIC = (1 << 3) | LEN; // Series.metric
const KEY_SERIES_TAGS = (2 << 3) | LEN; // Series.tags (map entry)
const KEY_ENTRY_KEY = (1 << 3) | LEN;
const KEY_ENTRY_VALUE = (2 << 3) | LEN;

const TWO_32 = 2 ** 32;

function varintSize(v: number): number {
  // v: a length (< 2^31).
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Bytes of an int64 varint of an integer in [-2^53, 2^53]; negative values take the full 10. */
function int64Size(v: number): number {
  if (v < 0) return 10;
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

function fieldSize(payload: number): number {
  return 1 + varintSize(payload) + payload;
}

function writeVarint(buf: Buffer, pos: number, v: number): number {
  while (v >= 0x80) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

function writeInt64(buf: Buffer, pos: number, v: number): number {
  if (v < 0) {
    // Two's complement over 64 bits, as protobuf writes a negative int64 (always 10 bytes).
    let lo = v % TWO_32;
    let hi = Math.floor(v / TWO_32);
    if (lo < 0) lo += TWO_32;
    hi = (hi + TWO_32) % TWO_32;
    for (let i = 0; i < 9; i++) {
      buf[pos++] = (lo & 0x7f) | 0x80;
      lo = (lo >>> 7) | ((hi & 0x7f) << 25);
      hi >>>= 7;
    }
    buf[pos++] = lo & 0x01;
    return pos;
  }
  while (v >= TWO_32) {
    buf[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  return writeVarint(buf, pos, v);
}

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

function writeString(buf: Buffer, pos: number, key: number, s: string, bytes = Buffer.byteLength(s)): number {
  buf[pos++] = key;
  pos = writeVarint(buf, pos, bytes);
  return pos + buf.write(s, pos, bytes, 'utf8');
}
