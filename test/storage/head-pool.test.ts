import { describe, expect, it } from 'vitest';
import { Head } from '../../src/storage/head.js';
import { HeadPool } from '../../src/storage/head-pool.js';
import { Rng } from '../../src/util/random.js';

describe('HeadPool', () => {
  it('hands out power-of-two blocks of at least the size asked, never two live blocks that overlap', () => {
    const pool = new HeadPool();
    const live: Float64Array[] = [];
    for (const n of [1, 8, 9, 100, 128, 129, 1000, 1024, 5000, 8192, 20000]) {
      const b = pool.take(n);
      expect(b.length).toBeGreaterThanOrEqual(Math.max(8, n));
      expect(b.length & (b.length - 1)).toBe(0);
      live.push(b);
    }
    // Overlap check: fill every block with its own tag, then every block still holds only its tag.
    for (let i = 0; i < live.length; i++) live[i]!.fill(i);
    for (let i = 0; i < live.length; i++) expect(live[i]!.every((x) => x === i)).toBe(true);
  });

  it('reuses given-back blocks instead of allocating', () => {
    const pool = new HeadPool();
    const a = pool.take(16);
    const before = pool.allocated;
    pool.give(a);
    expect(pool.take(16)).toBe(a);
    expect(pool.allocated).toBe(before);
    // Blocks of one slab come out before another slab is allocated.
    for (let i = 0; i < 100; i++) pool.take(16);
    expect(pool.allocated).toBe(before);
    // Something that is not a pool block (the empty array, an odd length) is ignored.
    pool.give(new Float64Array(0));
    pool.give(new Float64Array(12));
    expect(pool.take(12).length).toBe(16);
  });

  it('heads built on one pool keep their own samples through growth, release and reuse (seeded)', () => {
    const seed = Date.now() % 1_000_000;
    const rng = new Rng(seed);
    const pool = new HeadPool();
    const heads = Array.from({ length: 50 }, () => new Head(pool));
    const model: number[][] = heads.map(() => []);
    try {
      for (let step = 0; step < 20_000; step++) {
        const i = rng.int(0, heads.length);
        const h = heads[i]!;
        const r = rng.next();
        if (r < 0.01) {
          h.release();
          model[i] = [];
        } else if (r < 0.02) {
          h.reserve(rng.int(1, 601));
        } else {
          const t = rng.int(0, 2000);
          h.insert(t, t * 10 + i);
          if (!model[i]!.includes(t)) model[i]!.push(t);
        }
      }
      heads.forEach((h, i) => {
        const want = [...model[i]!].sort((a, b) => a - b);
        expect(Array.from(h.ts.subarray(0, h.count))).toEqual(want);
        expect(Array.from(h.vals.subarray(0, h.count))).toEqual(want.map((t) => t * 10 + i));
      });
    } catch (err) {
      throw new Error(`seed ${seed}: ${String(err)}`, { cause: err });
    }
  });
});
