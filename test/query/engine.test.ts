/**
 * The coordinator over real stores: parallel scatter, partial results with missing shards, deadlines
 * that cancel outstanding shards, and every limit (per shard and merged) with its error.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { TidemarkError } from '../../src/errors/index.js';
import { localShard, runQuery, type ShardFn } from '../../src/query/engine.js';
import { executeShard } from '../../src/query/executor.js';
import { planQuery, type QuerySpec } from '../../src/query/model.js';
import { LmdbShardStore, MemoryShardStore, type ShardStore } from '../../src/storage/index.js';
import { load, tempDir } from './helpers.js';

const T0 = 1_700_000_000_000;
const stores: ShardStore[] = [];
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  // Three shards, 4 series each (host h<shard><i>), 100 samples per series at 1 s.
  for (let s = 0; s < 3; s++) {
    let store: ShardStore;
    if (s === 1) {
      const { dir, cleanup } = tempDir();
      cleanups.push(cleanup);
      store = await LmdbShardStore.open(dir, { sealSamples: 16 });
    } else store = new MemoryShardStore();
    await load(
      store,
      Array.from({ length: 4 }, (_, i) => ({
        series: { metric: 'cpu', tags: { host: `h${s}${i}`, shard: String(s) } },
        ts: Array.from({ length: 100 }, (_, k) => T0 + k * 1000),
        vals: Array.from({ length: 100 }, (_, k) => k),
      })),
    );
    stores.push(store);
  }
});
afterAll(async () => {
  for (const s of stores) await s.close();
  for (const c of cleanups) c();
});

const spec: QuerySpec = {
  start: T0,
  end: T0 + 99_000,
  queries: [
    { metric: 'cpu', aggregator: 'sum', groupBy: ['shard'], downsample: { interval: 'all', fn: 'count' } },
  ],
};

async function rejection(p: Promise<unknown>): Promise<TidemarkError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TidemarkError);
    return err as TidemarkError;
  }
  throw new Error('expected a rejection');
}

const failing: ShardFn = async () => {
  throw new TidemarkError('UNAVAILABLE', 'no_leader', 'shard 1 has no leader');
};

/** A shard that never answers on its own; records whether it was cancelled. */
function hanging(): { fn: ShardFn; cancelled: () => boolean } {
  let cancelled = false;
  return {
    fn: (_q, signal) =>
      new Promise((_, reject) => {
        signal.addEventListener('abort', () => {
          cancelled = true;
          reject(signal.reason);
        });
      }),
    cancelled: () => cancelled,
  };
}

test('scatter-gather over three stores', async () => {
  const out = await runQuery(spec, stores.map(localShard));
  expect(out.results.map((r) => [r.tags.shard, [...r.vals]])).toEqual([
    ['0', [400]],
    ['1', [400]],
    ['2', [400]],
  ]);
  expect(out.missingShards).toEqual([]);
  expect(out.seriesScanned).toBe(12);
  expect(out.samplesScanned).toBe(1200);
});

test('a failed shard fails the query, or with partial=true is listed as missing', async () => {
  const shards = [localShard(stores[0]!), failing, localShard(stores[2]!)];
  const err = await rejection(runQuery(spec, shards));
  expect(err.reason).toBe('no_leader');
  const out = await runQuery(spec, shards, { partial: true });
  expect(out.results.map((r) => r.tags.shard)).toEqual(['0', '2']);
  expect(out.missingShards).toEqual([
    { shard: 1, code: 'UNAVAILABLE', reason: 'no_leader', message: 'shard 1 has no leader' },
  ]);
});

test('the deadline cancels outstanding shards; partial=true returns what arrived', async () => {
  const h = hanging();
  const err = await rejection(runQuery(spec, [localShard(stores[0]!), h.fn], { deadlineMs: 30 }));
  expect(err.code).toBe('DEADLINE_EXCEEDED');
  expect(err.reason).toBe('query_deadline');
  expect(h.cancelled()).toBe(true);
  const h2 = hanging();
  const out = await runQuery(spec, [localShard(stores[0]!), h2.fn], { deadlineMs: 30, partial: true });
  expect(out.results.map((r) => r.tags.shard)).toEqual(['0']);
  expect(out.missingShards.map((m) => [m.shard, m.reason])).toEqual([[1, 'query_deadline']]);
  expect(h2.cancelled()).toBe(true);
});

test('a shard that ignores its signal is still cut off at the deadline', async () => {
  const deaf: ShardFn = () => new Promise(() => {});
  const err = await rejection(runQuery(spec, [deaf], { deadlineMs: 20 }));
  expect(err.code).toBe('DEADLINE_EXCEEDED');
});

test('the first failure cancels the other shards (without partial)', async () => {
  const h = hanging();
  const err = await rejection(runQuery(spec, [h.fn, failing]));
  expect(err.reason).toBe('no_leader');
  expect(h.cancelled()).toBe(true);
});

test('the caller can cancel', async () => {
  const ctl = new AbortController();
  const h = hanging();
  const p = runQuery(spec, [h.fn], { signal: ctl.signal });
  ctl.abort();
  const err = await rejection(p);
  expect(err.code).toBe('DEADLINE_EXCEEDED');
  expect(h.cancelled()).toBe(true);
});

test('the executor stops scanning once its signal aborts', async () => {
  const q = planQuery(spec);
  const ctl = new AbortController();
  setImmediate(() => ctl.abort());
  const err = await rejection(executeShard(stores[1]!, q, ctl.signal, { yieldEvery: 1 }));
  expect(err.reason).toBe('query_deadline');
});

test.each([
  [{ maxSeries: 3 }, 'query_series_limit', 'limits.maxSeries', /tag filters/],
  [{ maxSeries: 10 }, 'query_series_limit', 'limits.maxSeries', /tag filters/],
  [{ maxSamples: 150 }, 'query_samples_limit', 'limits.maxSamples', /time range/],
  [{ maxSamples: 1000 }, 'query_samples_limit', 'limits.maxSamples', /time range/],
])('limit %j -> %s (per shard or merged), even with partial=true', async (limits, reason, field, hint) => {
  for (const partial of [false, true]) {
    const err = await rejection(runQuery(spec, stores.map(localShard), { limits, partial }));
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.reason).toBe(reason);
    expect(err.field).toBe(field);
    expect(err.message).toMatch(hint);
    expect(err.retryAfterMs).toBeUndefined();
  }
});

test('result points limit: per shard partial and merged result', async () => {
  const raw: QuerySpec = { ...spec, queries: [{ metric: 'cpu', aggregator: 'none' }] };
  const err = await rejection(runQuery(raw, stores.map(localShard), { limits: { maxPoints: 399 } }));
  expect(err.reason).toBe('query_points_limit');
  expect(err.field).toBe('limits.maxPoints');
  // Each shard has 400 points (under 1000) but the merged result has 1200.
  const merged = await rejection(runQuery(raw, stores.map(localShard), { limits: { maxPoints: 1000 } }));
  expect(merged.reason).toBe('query_points_limit');
  expect((await runQuery(raw, stores.map(localShard), { limits: { maxPoints: 1200 } })).results).toHaveLength(
    12,
  );
});

test('invalid queries are rejected before any shard is called', async () => {
  let called = false;
  const shard: ShardFn = async () => {
    called = true;
    throw new Error('unreachable');
  };
  const err = await rejection(runQuery({ ...spec, end: T0 - 1 }, [shard]));
  expect(err.code).toBe('INVALID_ARGUMENT');
  expect(err.field).toBe('end');
  expect(called).toBe(false);
});

test('literal_or selects the same series per literal (large shard) and by one metric scan (small shard)', async () => {
  // 5 hosts × 8 other metrics' series: 45 series, more than 8 per literal for 2 literals (one select
  // per literal); the first 3 series alone: fewer (one select over the metric's postings).
  const data = [
    ...Array.from({ length: 5 }, (_, i) => ({
      series: { metric: 'cpu', tags: { host: `h${i}` } },
      ts: [T0, T0 + 1000],
      vals: [i, 10 * i],
    })),
    ...Array.from({ length: 40 }, (_, i) => ({
      series: { metric: `other${i % 8}`, tags: { host: `h${i % 5}`, k: String(i) } },
      ts: [T0],
      vals: [1],
    })),
  ];
  const q: QuerySpec = {
    start: T0,
    end: T0 + 1000,
    queries: [
      {
        metric: 'cpu',
        aggregator: 'sum',
        filters: [{ tagk: 'host', type: 'literal_or', filter: 'h1|h3|nope', groupBy: true }],
      },
    ],
  };
  const large = new MemoryShardStore();
  const small = new MemoryShardStore();
  await load(large, data);
  await load(small, data.slice(0, 3).concat(data.slice(3, 5)));
  for (const store of [large, small]) {
    const out = await runQuery(q, [localShard(store)]);
    expect(out.results.map((r) => [r.tags.host, [...r.ts], [...r.vals]])).toEqual([
      ['h1', [T0, T0 + 1000], [1, 10]],
      ['h3', [T0, T0 + 1000], [3, 30]],
    ]);
    expect(out.seriesScanned).toBe(2);
  }
});
