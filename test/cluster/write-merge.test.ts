import { describe, expect, it } from 'vitest';
import { concatBatches, splitApplyResult, WriteMerger } from '../../src/cluster/write-merge.js';
import { MemoryShardStore } from '../../src/storage/memory-store.js';
import type { ApplyResult, SampleBatch } from '../../src/storage/store.js';
import { Rng } from '../../src/util/random.js';

const S = Array.from({ length: 4 }, (_, i) =>
  Object.freeze({ metric: 'm', tags: Object.freeze({ h: `h${i}` }) }),
);

function batch(rng: Rng, n: number): SampleBatch {
  const series = [S[rng.int(0, 4)]!, S[rng.int(0, 4)]!];
  const seriesRef = new Uint32Array(n);
  const timestamps = new Float64Array(n);
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    seriesRef[i] = rng.int(0, 2);
    // Some timestamps far behind (too_old once the series moved on), some repeated.
    timestamps[i] = rng.chance(0.1) ? 1_000 : 1_000_000 + rng.int(0, 50) * 1000;
    values[i] = rng.int(0, 1000);
  }
  return { series, seriesRef, timestamps, values, length: n };
}

/** Every stored sample, per series. */
function contents(store: MemoryShardStore): Record<string, [number[], number[]]> {
  const out: Record<string, [number[], number[]]> = {};
  for (const d of store.select({ metric: 'm' })) {
    const a = d.toArrays();
    out[d.series.tags.h!] = [Array.from(a.ts.subarray(0, a.count)), Array.from(a.vals.subarray(0, a.count))];
  }
  return out;
}

describe('WriteMerger', () => {
  it('a merged entry gives every write the result it would get applied alone, in order (seeded)', async () => {
    const seed = Date.now() % 1_000_000;
    try {
      for (let round = 0; round < 20; round++) {
        const rng = new Rng(seed + round);
        const batches = Array.from({ length: rng.int(2, 8) }, () => batch(rng, rng.int(1, 40)));
        // Reference: each batch applied alone, in order.
        const alone = new MemoryShardStore({ oooWindowMs: 10_000 });
        const want: ApplyResult[] = [];
        for (const b of batches) want.push(await alone.append(b));
        // Merged: one append of the concatenation, split back.
        const merged = new MemoryShardStore({ oooWindowMs: 10_000 });
        let entries = 0;
        const m = new WriteMerger((b) => {
          entries++;
          return merged.append(b);
        });
        const got = await Promise.all(batches.map((b) => m.add(b)));
        expect(entries).toBe(1);
        expect(got.map((r) => ({ accepted: r.accepted, rejected: r.rejected }))).toEqual(
          want.map((r) => ({ accepted: r.accepted, rejected: r.rejected })),
        );
        expect(contents(merged)).toEqual(contents(alone));
      }
    } catch (err) {
      throw new Error(`seed ${seed}: ${String(err)}`, { cause: err });
    }
  });

  it('splits at maxSamples, proposes large or short-array batches alone, and fails every write of a failed entry', async () => {
    const proposed: number[] = [];
    let fail = false;
    const m = new WriteMerger(async (b) => {
      proposed.push(b.length);
      if (fail) throw new Error('no quorum');
      return { accepted: b.length, rejected: [], duplicate: false };
    }, 100);
    const rng = new Rng(1);
    await Promise.all([m.add(batch(rng, 60)), m.add(batch(rng, 60)), m.add(batch(rng, 30))]);
    expect(proposed).toEqual([60, 90]);
    proposed.length = 0;
    await m.add(batch(rng, 100));
    const short = { ...batch(rng, 10), length: 12 };
    await m.add(short);
    expect(proposed).toEqual([100, 12]);
    fail = true;
    const results = await Promise.allSettled([m.add(batch(rng, 5)), m.add(batch(rng, 5))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });

  it('falls back to one entry per write when the merged batch cannot be proposed', async () => {
    const m = new WriteMerger((b) => {
      if (b.length > 10) throw new Error('too large for one entry');
      return Promise.resolve({ accepted: b.length, rejected: [], duplicate: false });
    });
    const rng = new Rng(2);
    const got = await Promise.all([m.add(batch(rng, 8)), m.add(batch(rng, 8))]);
    expect(got.map((r) => r.accepted)).toEqual([8, 8]);
  });

  it('concatBatches lists a series once and keeps out-of-range refs out of range', () => {
    const a: SampleBatch = {
      series: [S[0]!, S[1]!],
      seriesRef: Uint32Array.from([1, 0, 7]),
      timestamps: Float64Array.from([1, 2, 3]),
      values: Float64Array.from([10, 20, 30]),
      length: 3,
    };
    const b: SampleBatch = {
      series: [S[1]!],
      seriesRef: Uint32Array.from([0]),
      timestamps: Float64Array.from([4]),
      values: Float64Array.from([40]),
      length: 1,
    };
    const { batch: c, offsets } = concatBatches([a, b]);
    expect(c.series).toEqual([S[0], S[1]]);
    expect(Array.from(c.seriesRef)).toEqual([1, 0, 0xffffffff, 1]);
    expect(Array.from(c.timestamps)).toEqual([1, 2, 3, 4]);
    expect(offsets).toEqual([0, 3, 4]);
    const parts = splitApplyResult(
      {
        accepted: 2,
        rejected: [
          { index: 3, reason: 'too_old' },
          { index: 2, reason: 'invalid_series' },
        ],
        duplicate: false,
      },
      offsets,
    );
    expect(parts).toEqual([
      { accepted: 2, rejected: [{ index: 2, reason: 'invalid_series' }], duplicate: false },
      { accepted: 0, rejected: [{ index: 0, reason: 'too_old' }], duplicate: false },
    ]);
  });
});
