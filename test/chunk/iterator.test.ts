import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChunkIterator, encodeChunk } from '../../src/chunk/index.js';
import { fcParams } from './helpers.js';

const ts = [100, 200, 200, 300, 500, 500, 500, 900];
const vals = [1, 2, 3, 4, 5, 6, 7, 8];
const bytes = encodeChunk(ts, vals, ts.length);

/** Reference seek: first index >= from with ts >= t, never before `from`. */
function refSeek(from: number, t: number, arr: number[]): number {
  let i = Math.max(from, 0);
  while (i < arr.length && arr[i] < t) i++;
  return i;
}

describe('ChunkIterator', () => {
  it('iterates all samples in order and stays exhausted', () => {
    const it = new ChunkIterator(bytes);
    expect(it.count).toBe(8);
    const got: [number, number][] = [];
    while (it.next()) got.push([it.at().t, it.at().v]);
    expect(got).toEqual(ts.map((t, i) => [t, vals[i]]));
    expect(it.next()).toBe(false);
    expect(it.seek(0)).toBe(false);
    expect(it.err()).toBeNull();
    expect(Number.isNaN(it.t)).toBe(true);
  });

  it('at() returns one reused object', () => {
    const it = new ChunkIterator(bytes);
    it.next();
    const a = it.at();
    it.next();
    expect(it.at()).toBe(a);
    expect(a.t).toBe(200);
  });

  it('seek before the first sample lands on the first', () => {
    const it = new ChunkIterator(bytes);
    expect(it.seek(-5)).toBe(true);
    expect(it.t).toBe(100);
    expect(it.v).toBe(1);
    // next() after seek moves on from the sought sample.
    expect(it.next()).toBe(true);
    expect(it.v).toBe(2);
  });

  it('seek between samples lands on the next one; to an equal run lands on its first', () => {
    const it = new ChunkIterator(bytes);
    expect(it.seek(250)).toBe(true);
    expect([it.t, it.v]).toEqual([300, 4]);
    expect(it.seek(500)).toBe(true);
    expect([it.t, it.v]).toEqual([500, 5]);
  });

  it('seek to the current or an earlier time is a no-op', () => {
    const it = new ChunkIterator(bytes);
    it.seek(500);
    it.next(); // v = 6
    expect(it.seek(500)).toBe(true);
    expect(it.v).toBe(6);
    expect(it.seek(0)).toBe(true);
    expect(it.v).toBe(6);
    expect(it.seek(Number.NaN)).toBe(true);
    expect(it.v).toBe(6);
  });

  it('seek past the last sample exhausts the iterator', () => {
    const it = new ChunkIterator(bytes);
    expect(it.seek(901)).toBe(false);
    expect(it.next()).toBe(false);
    expect(it.seek(0)).toBe(false);
    expect(it.err()).toBeNull();
  });

  it('seek to exactly the last timestamp works, then next() ends', () => {
    const it = new ChunkIterator(bytes);
    expect(it.seek(900)).toBe(true);
    expect(it.v).toBe(8);
    expect(it.next()).toBe(false);
  });

  it('matches a reference model over random next/seek sequences', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 200 }),
        fc.array(fc.oneof(fc.constant(null), fc.integer({ min: -10, max: 10_000 })), { maxLength: 60 }),
        (deltas, ops) => {
          const t: number[] = [];
          let acc = 0;
          for (const d of deltas) {
            acc += d;
            t.push(acc);
          }
          const v = t.map((_, i) => i);
          const it = new ChunkIterator(encodeChunk(t, v, t.length));
          let pos = -1;
          for (const op of ops) {
            let want: boolean;
            if (op === null) {
              pos = Math.min(pos + 1, t.length);
              want = pos < t.length;
              expect(it.next()).toBe(want);
            } else {
              pos = refSeek(pos, op, t);
              want = pos < t.length;
              expect(it.seek(op)).toBe(want);
            }
            if (want) expect(it.v).toBe(pos);
          }
        },
      ),
      fcParams(300),
    );
  });

  it('can be reset onto another chunk, reusing its buffers', () => {
    const it = new ChunkIterator();
    expect(it.next()).toBe(false);
    it.reset(bytes);
    it.seek(900);
    it.reset(encodeChunk([1, 2], [3, 4], 2));
    expect(it.next()).toBe(true);
    expect([it.t, it.v]).toEqual([1, 3]);
  });

  it('reports corruption through err() without throwing', () => {
    const bad = bytes.slice();
    bad[bad.length - 1] ^= 0x10;
    const it = new ChunkIterator(bad);
    expect(it.next()).toBe(false);
    expect(it.seek(0)).toBe(false);
    expect(it.err()?.code).toBe('DATA_CORRUPTION');
    expect(it.err()?.reason).toBe('chunk_checksum_mismatch');
    it.reset(bytes);
    expect(it.err()).toBeNull();
    expect(it.next()).toBe(true);
  });
});
