import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/index.js';
import { routeByShard } from '../../src/ingest/batch.js';
import { BatchBuilder, canonicalKeyFast, emptyBatch, splitByShard } from '../../src/ingest/index.js';
import { canonicalKey, makeSeries, type Series, seriesId, shardOf } from '../../src/model/index.js';
import { fcParams, samplesOf, seriesArb, seriesKeyOf, setBits } from './helpers.js';

describe('BatchBuilder', () => {
  it('deduplicates series by identity (tag order does not matter)', () => {
    const b = new BatchBuilder({ initialCapacity: 1 });
    const r1 = b.add(makeSeries('cpu', { host: 'a', dc: 'x' }), 1, 1);
    const r2 = b.add(makeSeries('cpu', { dc: 'x', host: 'a' }), 2, 2);
    const r3 = b.add(makeSeries('cpu', { dc: 'x' }), 3, 3);
    const r4 = b.add(makeSeries('cpu'), 4, 4);
    expect([r1, r2, r3, r4]).toEqual([0, 0, 1, 2]);
    const batch = b.build();
    expect(batch.length).toBe(4);
    expect(batch.series.length).toBe(3);
    expect(Array.from(batch.seriesRef)).toEqual([0, 0, 1, 2]);
    expect(Array.from(batch.timestamps)).toEqual([1, 2, 3, 4]);
    expect(Array.from(batch.values)).toEqual([1, 2, 3, 4]);
  });

  it('distinguishes {ab=c} from {a=bc} and metric from tags', () => {
    const b = new BatchBuilder();
    b.add(makeSeries('m', { ab: 'c' }), 1, 1);
    b.add(makeSeries('m', { a: 'bc' }), 1, 1);
    b.add(makeSeries('ma', { b: 'c' }), 1, 1);
    expect(b.seriesCount).toBe(3);
  });

  it('grows by doubling and keeps every sample', () => {
    const b = new BatchBuilder({ initialCapacity: 2 });
    const s = makeSeries('m');
    for (let i = 0; i < 10_000; i++) b.add(s, i, i * 0.5);
    const batch = b.build();
    expect(batch.length).toBe(10_000);
    expect(batch.timestamps[9999]).toBe(9999);
    expect(batch.values[9999]).toBe(9999 * 0.5);
  });

  it('rejects more than maxSamples samples, naming the limit', () => {
    const b = new BatchBuilder({ maxSamples: 5, initialCapacity: 2 });
    const s = makeSeries('m');
    for (let i = 0; i < 5; i++) b.add(s, i, i);
    let err: unknown;
    try {
      b.add(s, 5, 5);
    } catch (e) {
      err = e;
    }
    expect(isTidemarkError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as { reason: string }).reason).toBe('batch_too_many_samples');
    expect((err as { field: string }).field).toBe('maxSamples');
    expect(b.length).toBe(5);
    expect(() => b.ensureRoom(1)).toThrow(/maxSamples/);
  });

  it('rejects more than maxSeries distinct series, naming the limit', () => {
    const b = new BatchBuilder({ maxSeries: 2 });
    b.add(makeSeries('a'), 1, 1);
    b.add(makeSeries('b'), 1, 1);
    b.add(makeSeries('a'), 2, 1); // known series: fine
    expect(() => b.add(makeSeries('c'), 1, 1)).toThrow(/maxSeries/);
  });
});

function batchOf(
  series: Series[],
  picks: [number, number, number, number][],
): ReturnType<BatchBuilder['build']> {
  const b = new BatchBuilder();
  const refs = series.map((s) => b.ref(s));
  for (const [si, t, hi, lo] of picks) {
    b.addRef(refs[si % refs.length], t, 0);
    setBits((b as unknown as { vals: Float64Array }).vals, b.length - 1, hi, lo);
  }
  return b.build();
}

describe('splitByShard', () => {
  it('puts every sample on shardOf(seriesId(s), S), in order, bit-exact', () => {
    fc.assert(
      fc.property(
        fc.array(seriesArb, { minLength: 1, maxLength: 20 }),
        fc.array(
          fc.tuple(
            fc.nat(100),
            fc.integer({ min: 0, max: 1e12 }),
            fc.integer({ min: 0, max: 0xffffffff }),
            fc.integer({ min: 0, max: 0xffffffff }),
          ),
          { maxLength: 100 },
        ),
        fc.integer({ min: 1, max: 40 }),
        (series, picks, shards) => {
          const batch = batchOf(series, picks);
          const parts = splitByShard(batch, shards);
          expect(parts.length).toBe(shards);
          let total = 0;
          const expected = samplesOf(batch);
          const byShard: [string, number, string][][] = parts.map(() => []);
          for (let i = 0; i < batch.length; i++) {
            const s = batch.series[batch.seriesRef[i]];
            byShard[shardOf(seriesId(s), shards)].push(expected[i]);
          }
          parts.forEach((p, s) => {
            total += p.length;
            for (const ser of p.series) expect(shardOf(seriesId(ser), shards)).toBe(s);
            expect(samplesOf(p)).toEqual(byShard[s]);
            // No duplicate or unused series.
            expect(new Set(p.series.map(seriesKeyOf)).size).toBe(p.series.length);
            expect(new Set(Array.from(p.seriesRef)).size).toBe(p.series.length);
          });
          expect(total).toBe(batch.length);
          // routeByShard: the same parts, and origin[s][j] is the batch index of part s's sample j.
          const routed = routeByShard(batch, shards);
          expect(routed.parts.map(samplesOf)).toEqual(parts.map(samplesOf));
          const seen = new Set<number>();
          routed.parts.forEach((p, s) => {
            const o = routed.origin[s];
            expect(o.length).toBe(p.length);
            const got = samplesOf(p);
            for (let j = 0; j < p.length; j++) {
              expect(got[j]).toEqual(expected[o[j]]);
              if (j > 0) expect(o[j]).toBeGreaterThan(o[j - 1]);
              seen.add(o[j]);
            }
          });
          expect(seen.size).toBe(batch.length);
        },
      ),
      fcParams(300),
    );
  });

  it('merges a series the batch holds twice (any tag order) into one, keeping sample order', () => {
    const a = makeSeries('m', { x: '1', y: '2' });
    const a2 = makeSeries('m', { y: '2', x: '1' });
    const b = makeSeries('m', { x: '3' });
    const batch = {
      series: [a, b, a2],
      seriesRef: Uint32Array.from([0, 2, 1, 0, 2]),
      timestamps: Float64Array.from([1, 2, 3, 4, 5]),
      values: Float64Array.from([10, 20, 30, 40, 50]),
      length: 5,
    };
    for (const shards of [1, 2, 7]) {
      const { parts, origin } = routeByShard(batch, shards);
      const all = parts.flatMap((p, s) =>
        Array.from({ length: p.length }, (_, j) => ({
          key: seriesKeyOf(p.series[p.seriesRef[j]]),
          t: p.timestamps[j],
          v: p.values[j],
          at: origin[s][j],
        })),
      );
      expect(parts.reduce((n, p) => n + p.series.length, 0)).toBe(2);
      const ofA = all.filter((x) => x.key === seriesKeyOf(a));
      expect(ofA.map((x) => [x.t, x.v, x.at])).toEqual([
        [1, 10, 0],
        [2, 20, 1],
        [4, 40, 3],
        [5, 50, 4],
      ]);
    }
  });

  it('handles an empty batch and rejects a bad shard count', () => {
    expect(splitByShard(emptyBatch(), 3).map((b) => b.length)).toEqual([0, 0, 0]);
    expect(() => splitByShard(emptyBatch(), 0)).toThrow(RangeError);
  });
});

describe('canonicalKeyFast', () => {
  it('equals the model canonicalKey for any series (ASCII or not)', () => {
    fc.assert(
      fc.property(seriesArb, (s) => {
        expect(Buffer.from(canonicalKeyFast(s)).equals(Buffer.from(canonicalKey(s)))).toBe(true);
      }),
      fcParams(2000),
    );
    const s = makeSeries('m', { b: '1', a: '2', é: 'x', Z: 'y' });
    expect(Buffer.from(canonicalKeyFast(s)).equals(Buffer.from(canonicalKey(s)))).toBe(true);
  });
});
