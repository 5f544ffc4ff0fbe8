/**
 * Key layouts of the LMDB sub-databases (docs/format/store.md). All numbers are fixed-width big-endian
 * so byte order is numeric order; 0xff separates strings (it never occurs in UTF-8).
 */
import { SERIES_ID_BYTES } from '../model/index.js';

export const SEP = 0xff;
/** postings: `m` metric 0xff seriesId */
export const POSTING_METRIC = 0x6d;
/** postings: `t` name 0xff value 0xff seriesId */
export const POSTING_TAG = 0x74;

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

export function writeU64(b: Uint8Array, o: number, v: number): void {
  const hi = Math.floor(v / 4294967296);
  const lo = v - hi * 4294967296;
  b[o] = hi >>> 24;
  b[o + 1] = (hi >>> 16) & 0xff;
  b[o + 2] = (hi >>> 8) & 0xff;
  b[o + 3] = hi & 0xff;
  b[o + 4] = lo >>> 24;
  b[o + 5] = (lo >>> 16) & 0xff;
  b[o + 6] = (lo >>> 8) & 0xff;
  b[o + 7] = lo & 0xff;
}

export function readU64(b: Uint8Array, o: number): number {
  const hi = ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
  const lo = ((b[o + 4]! << 24) | (b[o + 5]! << 16) | (b[o + 6]! << 8) | b[o + 7]!) >>> 0;
  return hi * 4294967296 + lo;
}

/** chunks: seriesId(8) ‖ chunkStart(u64 BE ms) */
export function chunkKey(id: Uint8Array, start: number): Buffer {
  const k = Buffer.allocUnsafe(SERIES_ID_BYTES + 8);
  k.set(id, 0);
  writeU64(k, SERIES_ID_BYTES, start);
  return k;
}

export function chunkKeyStart(key: Uint8Array): number {
  return readU64(key, SERIES_ID_BYTES);
}

/** The first key after every chunk key of `id`. */
export function chunkKeyEnd(id: Uint8Array): Buffer {
  const k = Buffer.alloc(SERIES_ID_BYTES + 9, 0xff);
  k.set(id, 0);
  return k;
}

export function idKey(id: Uint8Array): Buffer {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength);
}

export function metricPrefix(metric: string): Buffer {
  const m = utf8.encode(metric);
  const k = Buffer.allocUnsafe(2 + m.length);
  k[0] = POSTING_METRIC;
  k.set(m, 1);
  k[1 + m.length] = SEP;
  return k;
}

export function tagPrefix(name: string, value?: string): Buffer {
  const n = utf8.encode(name);
  const v = value === undefined ? null : utf8.encode(value);
  const k = Buffer.allocUnsafe(2 + n.length + (v === null ? 0 : v.length + 1));
  k[0] = POSTING_TAG;
  k.set(n, 1);
  k[1 + n.length] = SEP;
  if (v !== null) {
    k.set(v, 2 + n.length);
    k[2 + n.length + v.length] = SEP;
  }
  return k;
}

export function withId(prefix: Uint8Array, id: Uint8Array): Buffer {
  const k = Buffer.allocUnsafe(prefix.length + SERIES_ID_BYTES);
  k.set(prefix, 0);
  k.set(id, prefix.length);
  return k;
}

/** The first key after every key that starts with `prefix` (prefix ‖ 0xff × 9: ids are 8 bytes). */
export function prefixEnd(prefix: Uint8Array, tail = SERIES_ID_BYTES + 1): Buffer {
  const k = Buffer.alloc(prefix.length + tail, 0xff);
  k.set(prefix, 0);
  return k;
}

export function decodeUtf8(b: Uint8Array): string {
  return utf8d.decode(b);
}

/** wal: index(u64 BE) ‖ seq(u32 BE): seq 0 is the indexed entry, seq > 0 unindexed ops after it. */
export function walKey(index: number, seq: number): Buffer {
  const k = Buffer.allocUnsafe(12);
  writeU64(k, 0, index);
  k.writeUInt32BE(seq, 8);
  return k;
}

export function parseWalKey(k: Uint8Array): { index: number; seq: number } {
  return { index: readU64(k, 0), seq: ((k[8]! << 24) | (k[9]! << 16) | (k[10]! << 8) | k[11]!) >>> 0 };
}

/** meta keys: internal ones are plain ASCII names, user keys (applyBatch meta) are `u/` + key. */
export const META_FORMAT = Buffer.from('format');
export const META_APPLIED = Buffer.from('applied');
export const META_CHECKPOINT = Buffer.from('checkpoint');
export function userMetaKey(key: string): Buffer {
  return Buffer.from(`u/${key}`);
}
