/**
 * Write-ahead record codec (docs/format/store.md, "wal"). A record holds what recovery needs to redo
 * one operation on the head exactly as it was first applied. Numbers in the sample columns are
 * little-endian (the typed arrays are copied in bulk); the store refuses to open on a big-endian host.
 */
import os from 'node:os';
import { dataCorruption } from '../errors/index.js';
import { SERIES_ID_BYTES } from '../model/index.js';

export const WAL_BATCH = 1;
export const WAL_DELETE = 2;
export const WAL_RETENTION = 3;

/** Series table entry flags in a batch record. */
export const SERIES_EXISTING = 0;
export const SERIES_NEW = 1;
export const SERIES_UNUSED = 2;

/** Batch record flags (byte 1). */
const FLAG_SMALL_REFS = 1;
const FLAG_SMALL_TS = 2;

if (os.endianness() !== 'LE') throw new Error('tidemark storage requires a little-endian host');

export interface WalSeriesEntry {
  flag: number;
  id: Uint8Array | null;
  key: Uint8Array | null;
}

export interface WalBatch {
  type: typeof WAL_BATCH;
  series: WalSeriesEntry[];
  count: number;
  ts: Float64Array;
  vals: Float64Array;
  refs: Uint32Array;
}

export interface WalDelete {
  type: typeof WAL_DELETE;
  minT: number;
  maxT: number;
  ids: Uint8Array[];
  removed: boolean[];
}

export interface WalRetention {
  type: typeof WAL_RETENTION;
  cutoff: number;
  removed: Uint8Array[];
}

export type WalRecord = WalBatch | WalDelete | WalRetention;

/** Builds records in one reused buffer; the returned view is valid until the next call. */
export class WalWriter {
  private buf = Buffer.from(new ArrayBuffer(1 << 16));

  private ensure(n: number): void {
    if (this.buf.length >= n) return;
    let cap = this.buf.length;
    while (cap < n) cap *= 2;
    this.buf = Buffer.from(new ArrayBuffer(cap));
  }

  /**
   * Batch record: header, series table, then the columns — values f64[n], timestamps (u32 offsets
   * from `tsBase` when the batch spans < 2^32 ms, else f64[n]), refs (u16[n] when < 65536 series,
   * else u32[n]). ts[0..count) must lie in [minT, maxT].
   */
  batch(
    series: readonly WalSeriesEntry[],
    count: number,
    ts: Float64Array,
    vals: Float64Array,
    refs: Uint32Array,
    minT: number,
    maxT: number,
  ): Buffer {
    let size = 20;
    for (const s of series) {
      size += 1;
      if (s.flag !== SERIES_UNUSED) size += SERIES_ID_BYTES;
      if (s.flag === SERIES_NEW) size += 4 + s.key!.length;
    }
    const smallRefs = series.length <= 0xffff;
    const smallTs = count > 0 && maxT - minT <= 0xffffffff;
    const cols = (size + 7) & ~7;
    const total = cols + count * (8 + (smallTs ? 4 : 8) + (smallRefs ? 2 : 4));
    this.ensure(total);
    const b = this.buf;
    b[0] = WAL_BATCH;
    b[1] = (smallRefs ? FLAG_SMALL_REFS : 0) | (smallTs ? FLAG_SMALL_TS : 0);
    b[2] = b[3] = 0;
    b.writeUInt32LE(series.length, 4);
    b.writeUInt32LE(count, 8);
    const base = smallTs ? minT : 0;
    b.writeDoubleLE(base, 12);
    let o = 20;
    for (const s of series) {
      b[o++] = s.flag;
      if (s.flag === SERIES_UNUSED) continue;
      b.set(s.id!, o);
      o += SERIES_ID_BYTES;
      if (s.flag === SERIES_NEW) {
        b.writeUInt32LE(s.key!.length, o);
        b.set(s.key!, o + 4);
        o += 4 + s.key!.length;
      }
    }
    b.fill(0, o, cols);
    o = cols;
    new Float64Array(b.buffer, o, count).set(vals.subarray(0, count));
    o += count * 8;
    if (smallTs) {
      const out = new Uint32Array(b.buffer, o, count);
      for (let i = 0; i < count; i++) out[i] = ts[i]! - base;
      o += count * 4;
    } else {
      new Float64Array(b.buffer, o, count).set(ts.subarray(0, count));
      o += count * 8;
    }
    if (smallRefs) {
      const out = new Uint16Array(b.buffer, o, count);
      for (let i = 0; i < count; i++) out[i] = refs[i]!;
    } else {
      new Uint32Array(b.buffer, o, count).set(refs.subarray(0, count));
    }
    return b.subarray(0, total);
  }

  delete(minT: number, maxT: number, ids: readonly Uint8Array[], removed: readonly boolean[]): Buffer {
    const total = 24 + ids.length * (SERIES_ID_BYTES + 1);
    this.ensure(total);
    const b = this.buf;
    b.fill(0, 0, 4);
    b[0] = WAL_DELETE;
    b.writeUInt32LE(ids.length, 4);
    b.writeDoubleLE(minT, 8);
    b.writeDoubleLE(maxT, 16);
    let o = 24;
    for (let i = 0; i < ids.length; i++) {
      b.set(ids[i]!, o);
      b[o + SERIES_ID_BYTES] = removed[i] ? 1 : 0;
      o += SERIES_ID_BYTES + 1;
    }
    return b.subarray(0, total);
  }

  retention(cutoff: number, removed: readonly Uint8Array[]): Buffer {
    const total = 16 + removed.length * SERIES_ID_BYTES;
    this.ensure(total);
    const b = this.buf;
    b.fill(0, 0, 4);
    b[0] = WAL_RETENTION;
    b.writeUInt32LE(removed.length, 4);
    b.writeDoubleLE(cutoff, 8);
    let o = 16;
    for (const id of removed) {
      b.set(id, o);
      o += SERIES_ID_BYTES;
    }
    return b.subarray(0, total);
  }
}

/** A copy (Buffer#slice would share memory). */
function copy(bytes: Uint8Array, a: number, b: number): Uint8Array {
  return new Uint8Array(bytes.subarray(a, b));
}

function bad(message: string): never {
  throw dataCorruption('wal_record_invalid', `write-ahead record: ${message}`);
}

/** Decodes a record (copies what it keeps, so `bytes` may be a volatile buffer). */
export function decodeWalRecord(bytes: Uint8Array): WalRecord {
  if (bytes.length < 12) bad('truncated');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = bytes[0];
  const n = dv.getUint32(4, true);
  if (type === WAL_BATCH) {
    if (bytes.length < 20) bad('truncated');
    const flags = bytes[1]!;
    const count = dv.getUint32(8, true);
    const base = dv.getFloat64(12, true);
    const series: WalSeriesEntry[] = [];
    let o = 20;
    for (let i = 0; i < n; i++) {
      if (o >= bytes.length) bad('truncated series table');
      const flag = bytes[o++]!;
      if (flag === SERIES_UNUSED) {
        series.push({ flag, id: null, key: null });
        continue;
      }
      if (flag !== SERIES_EXISTING && flag !== SERIES_NEW) bad(`unknown series flag ${flag}`);
      if (o + SERIES_ID_BYTES > bytes.length) bad('truncated series id');
      const id = copy(bytes, o, o + SERIES_ID_BYTES);
      o += SERIES_ID_BYTES;
      let key: Uint8Array | null = null;
      if (flag === SERIES_NEW) {
        if (o + 4 > bytes.length) bad('truncated series key');
        const len = dv.getUint32(o, true);
        if (o + 4 + len > bytes.length) bad('truncated series key');
        key = copy(bytes, o + 4, o + 4 + len);
        o += 4 + len;
      }
      series.push({ flag, id, key });
    }
    const cols = (o + 7) & ~7;
    const tsBytes = flags & FLAG_SMALL_TS ? 4 : 8;
    const refBytes = flags & FLAG_SMALL_REFS ? 2 : 4;
    if (bytes.length !== cols + count * (8 + tsBytes + refBytes)) bad('sample columns have the wrong length');
    // Copy into aligned arrays (LMDB hands out buffers at arbitrary offsets).
    const raw = copy(bytes, cols, bytes.length);
    const vals = new Float64Array(raw.buffer, 0, count);
    let ts: Float64Array;
    if (tsBytes === 4) {
      const off = new Uint32Array(raw.buffer, count * 8, count);
      ts = new Float64Array(count);
      for (let i = 0; i < count; i++) ts[i] = base + off[i]!;
    } else ts = new Float64Array(raw.buffer, count * 8, count);
    const refOff = count * (8 + tsBytes);
    const refs =
      refBytes === 2
        ? Uint32Array.from(new Uint16Array(raw.buffer, refOff, count))
        : new Uint32Array(raw.buffer, refOff, count);
    for (let i = 0; i < count; i++)
      if (refs[i]! >= n || series[refs[i]!]!.flag === SERIES_UNUSED) bad('bad series ref');
    return { type, series, count, ts, vals, refs };
  }
  if (type === WAL_DELETE) {
    if (bytes.length !== 24 + n * (SERIES_ID_BYTES + 1)) bad('delete record has the wrong length');
    const ids: Uint8Array[] = [];
    const removed: boolean[] = [];
    for (let i = 0, o = 24; i < n; i++, o += SERIES_ID_BYTES + 1) {
      ids.push(copy(bytes, o, o + SERIES_ID_BYTES));
      removed.push(bytes[o + SERIES_ID_BYTES] === 1);
    }
    return { type, minT: dv.getFloat64(8, true), maxT: dv.getFloat64(16, true), ids, removed };
  }
  if (type === WAL_RETENTION) {
    if (bytes.length !== 16 + n * SERIES_ID_BYTES) bad('retention record has the wrong length');
    const removed: Uint8Array[] = [];
    for (let i = 0, o = 16; i < n; i++, o += SERIES_ID_BYTES)
      removed.push(copy(bytes, o, o + SERIES_ID_BYTES));
    return { type, cutoff: dv.getFloat64(8, true), removed };
  }
  return bad(`unknown record type ${type}`);
}
