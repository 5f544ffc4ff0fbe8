/** Wire format: ShardQuery and ShardPartial survive an encode/decode round trip unchanged; partials are compact. */
import { expect, test } from 'vitest';
import { TidemarkError } from '../../src/errors/index.js';
import {
  decodeShardPartial,
  decodeShardQuery,
  decodeTimestamps,
  encodeShardPartial,
  encodeShardQuery,
  encodeTimestamps,
} from '../../src/query/codec.js';
import { executeShard } from '../../src/query/executor.js';
import { AGGREGATORS, planQuery } from '../../src/query/model.js';
import { MemoryShardStore } from '../../src/storage/index.js';
import { Rng } from '../../src/util/random.js';
import { load, seedList } from './helpers.js';

const seed = seedList(process.env.TIDEMARK_SEED, [21])[0]!;

test('timestamps: varint deltas round-trip; truncated input is DATA_CORRUPTION', () => {
  const ts = Float64Array.from([0, 1, 127, 128, 1_700_000_000_000, 1_700_000_000_000, 253_402_300_799_999]);
  expect([...decodeTimestamps(encodeTimestamps(ts))]).toEqual([...ts]);
  const enc = encodeTimestamps(Float64Array.from([1_700_000_000_000]));
  expect(() => decodeTimestamps(enc.subarray(0, enc.length - 1).map((b) => b | 0x80))).toThrow(TidemarkError);
  expect(() => encodeTimestamps(Float64Array.from([5, 3]))).toThrow(RangeError);
});

test('ShardQuery round-trips', () => {
  const q = planQuery(
    {
      start: 1000,
      end: 1_700_000_000_000,
      withSeriesIds: true,
      queries: [
        {
          metric: 'm',
          aggregator: 'p95',
          filters: [{ tagk: 'h', type: 'wildcard', filter: 'a*', groupBy: true }],
          downsample: { interval: 'all', fn: 'last', fill: 'nan' },
          rate: { counter: true, counterMax: 65535, resetValue: 10, dropResets: true },
        },
        { metric: 'n', aggregator: 'none', downsample: { interval: 60_000, fn: 'sum' } },
        { metric: 'o', aggregator: 'avg' },
      ],
    },
    { maxSeries: 7, maxSamples: 8, maxPoints: 9 },
  );
  expect(decodeShardQuery(encodeShardQuery(q))).toEqual(q);
});

test.each(AGGREGATORS)('ShardPartial round-trips exactly (aggregator %s) and is compact', async (agg) => {
  try {
    const r = new Rng(seed);
    const store = new MemoryShardStore();
    const data = Array.from({ length: 20 }, (_, i) => ({
      series: { metric: 'm', tags: { host: `h${i}`, dc: i % 2 ? 'eu' : 'us' } },
      ts: Array.from({ length: 500 }, (_, k) => 1_700_000_000_000 + k * 10_000),
      vals: Array.from({ length: 500 }, () => r.int(-1000, 1000) / 8),
    }));
    await load(store, data);
    const q = planQuery({
      start: 1_700_000_000_000,
      end: 1_700_000_000_000 + 5_000_000,
      withSeriesIds: true,
      queries: [
        { metric: 'm', aggregator: agg, groupBy: ['dc'], downsample: { interval: 60_000, fn: 'avg' } },
      ],
    });
    const p = await executeShard(store, q);
    const bytes = encodeShardPartial(p);
    expect(decodeShardPartial(bytes)).toEqual(p);
    // Timestamps cost ~3 bytes (varint delta), each state value 8 bytes: no per-point messages.
    const points =
      p.queries[0]!.groups.reduce((n, g) => n + g.ts.length, 0) +
      p.queries[0]!.series.reduce((n, s) => n + s.ts.length, 0);
    expect(points).toBeGreaterThan(0);
    if (agg === 'count' || agg === 'min' || agg === 'none') expect(bytes.length / points).toBeLessThan(20);
  } catch (err) {
    console.error(
      `codec test failed with seed ${seed} (rerun: TIDEMARK_SEED=${seed} npx vitest run test/query/codec.test.ts)`,
    );
    throw err;
  }
});

test('a decoded ShardQuery is validated like any other input', () => {
  const good = planQuery({
    start: 0,
    end: 10,
    queries: [{ metric: 'm', aggregator: 'sum', downsample: { interval: 5, fn: 'avg' } }],
  });
  const bad = (patch: (q: typeof good) => void): string | undefined => {
    const q = structuredClone(good);
    patch(q);
    try {
      decodeShardQuery(encodeShardQuery(q));
    } catch (err) {
      expect((err as TidemarkError).code).toBe('INVALID_ARGUMENT');
      return (err as TidemarkError).field;
    }
    return undefined;
  };
  expect(bad(() => {})).toBeUndefined();
  expect(bad((q) => (q.queries[0]!.downsampleFn = 'median' as 'avg'))).toBe('queries[0].downsampleFn');
  expect(bad((q) => (q.queries[0]!.fill = 'some' as 'nan'))).toBe('queries[0].fill');
  expect(bad((q) => (q.queries[0]!.aggregator = 'x' as 'sum'))).toBe('queries[0].aggregator');
  expect(bad((q) => (q.limits.maxPoints = 0))).toBe('limits.maxPoints');
  expect(bad((q) => (q.end = -1))).toBe('end');
});
