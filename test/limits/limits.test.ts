/**
 * Unit tests of src/limits: the token bucket, per-client query slots, the series limiter (cardinality per
 * metric per shard, new-series rate) and the guard's request-size checks. Clocks are injected.
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { TidemarkError } from '../../src/errors/index.js';
import { BatchBuilder } from '../../src/ingest/batch.js';
import {
  ClientConcurrency,
  clientOfAddress,
  DEFAULT_LIMIT_SETTINGS,
  LimitGuard,
  limitOfError,
  limitSettingsOf,
  mergeAdmission,
  NEW_SERIES_RATE_LIMITED,
  SERIES_PER_METRIC_LIMIT,
  SeriesLimiter,
  TokenBucket,
  writeAdmitted,
} from '../../src/limits/index.js';
import { makeSeries, seriesId, seriesIdHex } from '../../src/model/index.js';
import type { SampleBatch } from '../../src/storage/store.js';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function batchOf(points: [string, Record<string, string>, number][]): SampleBatch {
  const b = new BatchBuilder();
  for (const [metric, tags, t] of points) b.add(makeSeries(metric, tags, 'series'), t, 1);
  return b.build();
}

const hex = (metric: string, tags: Record<string, string>): string =>
  seriesIdHex(seriesId(makeSeries(metric, tags, 's')));

async function counterValue(registry: Registry, limit: string): Promise<number> {
  const m = await registry.getSingleMetric('tidemark_limit_rejections_total')!.get();
  return m.values.find((v) => v.labels.limit === limit)?.value ?? 0;
}

describe('TokenBucket', () => {
  it('holds one minute of tokens and refills continuously', () => {
    const c = clock();
    const b = new TokenBucket(60, c.now);
    for (let i = 0; i < 60; i++) expect(b.tryTake()).toBe(true);
    expect(b.tryTake()).toBe(false);
    expect(b.retryAfterMs()).toBe(1000);
    c.advance(999);
    expect(b.tryTake()).toBe(false);
    c.advance(1);
    expect(b.tryTake()).toBe(true);
    c.advance(10 * 60_000);
    expect(b.available()).toBe(60);
  });

  it('ignores a clock that goes backwards and rejects a non-positive rate', () => {
    const c = clock();
    const b = new TokenBucket(1, c.now);
    expect(b.tryTake()).toBe(true);
    c.advance(-5000);
    expect(b.tryTake()).toBe(false);
    expect(() => new TokenBucket(0, c.now)).toThrow(RangeError);
  });
});

describe('ClientConcurrency', () => {
  it('limits queries in flight per client, not across clients', () => {
    const q = new ClientConcurrency(2, 750);
    const r1 = q.acquire('alice');
    const r2 = q.acquire('alice');
    const other = q.acquire('bob');
    let err: unknown;
    try {
      q.acquire('alice');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TidemarkError);
    const e = err as TidemarkError;
    expect(e.code).toBe('RESOURCE_EXHAUSTED');
    expect(e.reason).toBe('too_many_concurrent_queries');
    expect(e.details).toMatchObject({
      setting: 'limits.maxConcurrentQueriesPerClient',
      limit: 2,
      retryAfterMs: 750,
      client: 'alice',
    });
    expect(limitOfError(e)).toBe('maxConcurrentQueriesPerClient');
    r1();
    r1(); // idempotent: does not free a second slot
    expect(q.count('alice')).toBe(1);
    const r3 = q.acquire('alice');
    expect(() => q.acquire('alice')).toThrow(TidemarkError);
    r2();
    r3();
    other();
    expect(q.clients).toBe(0);
  });

  it('0 means unlimited', () => {
    const q = new ClientConcurrency(0);
    for (let i = 0; i < 1000; i++) q.acquire('x');
    expect(q.clients).toBe(0);
  });

  it('keys clients by host, without the port', () => {
    expect(clientOfAddress('127.0.0.1:5000')).toBe('127.0.0.1');
    expect(clientOfAddress('ipv4:10.0.0.1:443')).toBe('10.0.0.1');
    expect(clientOfAddress('[::1]:4243')).toBe('::1');
    expect(clientOfAddress('ipv6:[fe80::1]:4243')).toBe('fe80::1');
    expect(clientOfAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(clientOfAddress('::1')).toBe('::1');
    expect(clientOfAddress(undefined)).toBe('unknown');
  });
});

describe('SeriesLimiter', () => {
  it('caps series per metric per shard at ceil(L / shards), counting what the store holds', () => {
    const stored = new Map<string, string[]>([['cpu', [hex('cpu', { h: 'a' }), hex('cpu', { h: 'b' })]]]);
    let seeds = 0;
    const lim = new SeriesLimiter({
      maxNewSeriesPerMinute: 0,
      maxSeriesPerMetric: 10,
      shards: 4, // ceil(10 / 4) = 3 per shard
      seed: (_shard, metric) => {
        seeds++;
        return stored.get(metric) ?? [];
      },
    });
    expect(lim.perShardCap).toBe(3);
    // Known series pass; one new fits (2 stored + 1); the next new one is over.
    const b = batchOf([
      ['cpu', { h: 'a' }, 1],
      ['cpu', { h: 'c' }, 1],
      ['cpu', { h: 'd' }, 1],
      ['cpu', { h: 'd' }, 2],
      ['cpu', { h: 'b' }, 3],
      ['mem', { h: 'a' }, 1],
    ]);
    const adm = lim.admit(0, 1, b)!;
    expect(adm.rejected).toEqual([
      { index: 2, reason: SERIES_PER_METRIC_LIMIT },
      { index: 3, reason: SERIES_PER_METRIC_LIMIT },
    ]);
    expect(adm.rejectedPerMetric).toBe(2);
    expect(Array.from(adm.origin)).toEqual([0, 1, 4, 5]);
    expect(adm.batch.length).toBe(4);
    expect(Array.from(adm.batch.timestamps)).toEqual([1, 1, 3, 1]);
    // Admitted series are remembered: the same batch again is all known except d.
    const again = lim.admit(0, 1, b)!;
    expect(again.rejected.map((r) => r.index)).toEqual([2, 3]);
    // Other shards have their own count.
    expect(lim.admit(1, 1, batchOf([['cpu', { h: 'd' }, 1]]))).toBeUndefined();
    expect(seeds).toBe(3); // cpu and mem on shard 0, cpu on shard 1
    // A new term (another leader may have added series) re-reads the store.
    stored.set('cpu', []);
    expect(lim.admit(0, 2, batchOf([['cpu', { h: 'd' }, 1]]))).toBeUndefined();
  });

  it('re-reads a metric after reseedAfterMs', () => {
    const c = clock();
    let stored: string[] = [hex('m', { k: '1' })];
    const lim = new SeriesLimiter({
      maxNewSeriesPerMinute: 0,
      maxSeriesPerMetric: 1,
      shards: 1,
      seed: () => stored,
      now: c.now,
      reseedAfterMs: 1000,
    });
    const b = batchOf([['m', { k: '2' }, 1]]);
    expect(lim.admit(0, 1, b)?.rejected).toHaveLength(1);
    stored = []; // the series was deleted
    expect(lim.admit(0, 1, b)?.rejected).toHaveLength(1);
    c.advance(1000);
    expect(lim.admit(0, 1, b)).toBeUndefined();
  });

  it('takes one token per new series, per node, and none for known series', () => {
    const c = clock();
    const lim = new SeriesLimiter({
      maxNewSeriesPerMinute: 2,
      maxSeriesPerMetric: 0,
      shards: 2,
      seed: (_s, m) => (m === 'old' ? [hex('old', {})] : []),
      now: c.now,
    });
    expect(lim.admit(0, 1, batchOf([['old', {}, 1]]))).toBeUndefined();
    expect(lim.admit(0, 1, batchOf([['a', {}, 1]]))).toBeUndefined();
    // The bucket is per node: a series of another shard takes from it too.
    expect(lim.admit(1, 1, batchOf([['b', {}, 1]]))).toBeUndefined();
    const adm = lim.admit(
      0,
      1,
      batchOf([
        ['c', {}, 1],
        ['c', {}, 2],
        ['a', {}, 3],
        ['old', {}, 4],
      ]),
    )!;
    expect(adm.rejected).toEqual([
      { index: 0, reason: NEW_SERIES_RATE_LIMITED },
      { index: 1, reason: NEW_SERIES_RATE_LIMITED },
    ]);
    expect(adm.rejectedNewSeries).toBe(2);
    expect(lim.retryAfterMs()).toBe(30_000);
    c.advance(30_000);
    expect(lim.admit(0, 1, batchOf([['c', {}, 1]]))).toBeUndefined();
  });

  it('the same series under two refs of one batch gets one verdict and one token', () => {
    const lim = new SeriesLimiter({
      maxNewSeriesPerMinute: 1,
      maxSeriesPerMetric: 0,
      shards: 1,
      seed: () => [],
    });
    const s1 = makeSeries('x', { a: '1' }, 's');
    const s2 = makeSeries('x', { a: '1' }, 's');
    const s3 = makeSeries('y', {}, 's');
    const b: SampleBatch = {
      series: [s1, s2, s3, makeSeries('y', {}, 's')],
      seriesRef: Uint32Array.from([0, 1, 2, 3]),
      timestamps: Float64Array.from([1, 2, 3, 4]),
      values: Float64Array.from([1, 2, 3, 4]),
      length: 4,
    };
    const adm = lim.admit(0, 1, b)!;
    expect(adm.rejected.map((r) => r.index)).toEqual([2, 3]);
  });

  it('writeAdmitted writes the admitted part and maps the store rejections back', async () => {
    const registry = new Registry();
    const guard = new LimitGuard({
      settings: { maxSeriesPerMetric: 1 },
      registry,
      seed: () => [],
      shards: 1,
    });
    const b = batchOf([
      ['m', { k: '1' }, 1],
      ['m', { k: '2' }, 2],
      ['m', { k: '1' }, 3],
    ]);
    const seen: SampleBatch[] = [];
    const out = await writeAdmitted(
      guard.series,
      guard.counter,
      0,
      () => 1,
      b,
      async (x) => {
        seen.push(x);
        return { accepted: 1, rejected: [{ index: 1, reason: 'too_old' }] };
      },
    );
    expect(seen[0]!.length).toBe(2);
    expect(out).toEqual({
      accepted: 1,
      rejected: [
        { index: 1, reason: SERIES_PER_METRIC_LIMIT },
        { index: 2, reason: 'too_old' },
      ],
    });
    expect(await counterValue(registry, 'maxSeriesPerMetric')).toBe(1);
    // All rejected: nothing is proposed.
    const none = await writeAdmitted(
      guard.series,
      guard.counter,
      0,
      () => 1,
      batchOf([['m', { k: '3' }, 1]]),
      () => {
        throw new Error('must not write');
      },
    );
    expect(none).toEqual({ accepted: 0, rejected: [{ index: 0, reason: SERIES_PER_METRIC_LIMIT }] });
    expect(mergeAdmission({ ...lim0(), rejected: [] }, { accepted: 0, rejected: [] })).toEqual({
      accepted: 0,
      rejected: [],
    });
  });
});

function lim0() {
  return {
    batch: batchOf([]),
    origin: new Uint32Array(0),
    rejected: [],
    rejectedNewSeries: 0,
    rejectedPerMetric: 0,
  };
}

describe('LimitGuard', () => {
  it('checks samples and series per request, naming the setting and its value, and counts', async () => {
    const registry = new Registry();
    const g = new LimitGuard({ settings: { maxSamplesPerRequest: 10, maxSeriesPerRequest: 2 }, registry });
    expect(() => g.checkWriteSize(10, 2)).not.toThrow();
    let e = catchErr(() => g.checkWriteSize(11, 1, 'batch.series'));
    expect(e).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'batch_too_many_samples' });
    expect(e.details).toEqual({ field: 'batch.series', setting: 'limits.maxSamplesPerRequest', limit: 10 });
    expect(e.message).toContain('11 samples');
    e = catchErr(() => g.checkWriteSize(1, 3));
    expect(e.details).toMatchObject({ setting: 'limits.maxSeriesPerRequest', limit: 2 });
    expect(await counterValue(registry, 'maxSamplesPerRequest')).toBe(1);
    expect(await counterValue(registry, 'maxSeriesPerRequest')).toBe(1);
    expect(g.series).toBeUndefined();
  });

  it('countError recognises the limit errors of other layers and adds the setting', async () => {
    const registry = new Registry();
    const g = new LimitGuard({ registry });
    const e = new TidemarkError('INVALID_ARGUMENT', 'batch_too_many_series', 'x', { field: 'maxSeries' });
    expect(g.countError(e)).toBe('maxSeriesPerRequest');
    expect(e.details.setting).toBe('limits.maxSeriesPerRequest');
    expect(g.countError({ error: new TidemarkError('INVALID_ARGUMENT', 'body_too_large', 'x') })).toBe(
      'maxRequestBytes',
    );
    expect(g.countError(new TidemarkError('INVALID_ARGUMENT', 'json_invalid', 'x'))).toBeUndefined();
    expect(g.countError(new Error('x'))).toBeUndefined();
    expect(await counterValue(registry, 'maxRequestBytes')).toBe(1);
    // Two guards on one registry share the family.
    const g2 = new LimitGuard({ registry });
    g2.counter.inc('maxRequestBytes');
    expect(await counterValue(registry, 'maxRequestBytes')).toBe(2);
  });

  it('limitSettingsOf fills what a configuration leaves out with the defaults', () => {
    expect(limitSettingsOf({ limits: { maxProposalQueue: 1, maxRequestBytes: 2048 } })).toEqual({
      ...DEFAULT_LIMIT_SETTINGS,
      maxRequestBytes: 2048,
    });
    expect(DEFAULT_LIMIT_SETTINGS).toMatchObject({
      maxLineBytes: 65_536,
      maxSamplesPerRequest: 1_000_000,
      maxSeriesPerRequest: 100_000,
      maxNewSeriesPerMinute: 0,
      maxSeriesPerMetric: 0,
    });
  });
});

function catchErr(fn: () => void): TidemarkError {
  try {
    fn();
  } catch (e) {
    return e as TidemarkError;
  }
  throw new Error('expected a throw');
}
