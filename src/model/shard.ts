import type { SeriesId } from './series.js';

const MASK64 = (1n << 64n) - 1n;

/**
 * Jump consistent hash (Lamping & Veach, 2014) of a 64-bit key into [0, buckets).
 * The series id's 8 big-endian bytes are the key, so any language computes the same shard.
 */
export function jumpHash(key: bigint, buckets: number): number {
  if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be a positive integer`);
  let b = -1;
  let j = 0;
  let k = key & MASK64;
  while (j < buckets) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & MASK64;
    // Same evaluation order as the paper's C code, so float rounding matches other implementations.
    j = Math.floor((b + 1) * (2 ** 31 / (Number(k >> 33n) + 1)));
  }
  return b;
}

export function shardOf(id: SeriesId, shardCount: number): number {
  const key = new DataView(id.buffer, id.byteOffset, 8).getBigUint64(0);
  return jumpHash(key, shardCount);
}
