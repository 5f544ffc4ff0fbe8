/**
 * The shard store contract: every ShardStore implementation runs this suite. Tests that need
 * persistence check `store.capabilities.persistent` and return early for stores without it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isTidemarkError, type TidemarkError } from '../../src/errors/index.js';
import { MAX_TIMESTAMP_MS } from '../../src/model/index.js';
import type { ShardStore, StoreOptions } from '../../src/storage/index.js';
import { batch, dump, series } from './helpers.js';

export interface ShardStoreFactory {
  /** A fresh, empty store. */
  create(options?: Partial<StoreOptions>): Promise<ShardStore>;
  /** Closes the store and opens its data again (only called when store.capabilities.persistent). */
  reopen(store: ShardStore, options?: Partial<StoreOptions>): Promise<ShardStore>;
}

const H = 3600_000;
const cpu0 = series('cpu', { host: 'a', dc: 'us-east' });
const cpu1 = series('cpu', { host: 'b', dc: 'us' });
const cpu2 = series('cpu', { host: 'c' });
const mem0 = series('mem', { host: 'a' });

function expectError(fn: () => unknown, code: string, field?: string): TidemarkError {
  try {
    fn();
  } catch (err) {
    expect(isTidemarkError(err)).toBe(true);
    const e = err as TidemarkError;
    expect(e.code).toBe(code);
    if (field !== undefined) expect(e.field).toBe(field);
    return e;
  }
  throw new Error('expected an error');
}

async function expectRejects(p: Promise<unknown>, code: string, field?: string): Promise<void> {
  await expect(p).rejects.toSatisfy(
    (e: unknown) => isTidemarkError(e) && e.code === code && (field === undefined || e.field === field),
  );
}

/**
 * appliedIndex() counts only durable effects; a store with deferred sync makes them durable at its next
 * sync, which checkpoint() forces.
 */
async function durableApplied(s: ShardStore): Promise<number> {
  if (s.capabilities.syncDeferred) await s.checkpoint();
  return s.appliedIndex();
}

export function describeShardStore(name: string, factory: ShardStoreFactory): void {
  describe(`ShardStore contract: ${name}`, () => {
    const open: ShardStore[] = [];
    const make = async (options?: Partial<StoreOptions>) => {
      const s = await factory.create(options);
      open.push(s);
      return s;
    };
    const reopen = async (s: ShardStore, options?: Partial<StoreOptions>) => {
      const r = await factory.reopen(s, options);
      open.push(r);
      return r;
    };
    afterEach(async () => {
      for (const s of open.splice(0)) await s.close();
    });

    it('appends and reads back exact values', async () => {
      const s = await make();
      const r = await s.append(
        batch([
          [cpu0, 1000, 1.5],
          [cpu0, 2000, Number.NaN],
          [cpu1, 1000, Number.POSITIVE_INFINITY],
          [mem0, 1500, -7],
        ]),
      );
      expect(r).toEqual({ accepted: 4, rejected: [], duplicate: false });
      expect(await durableApplied(s)).toBe(1);
      const cpu = dump(s, { metric: 'cpu' });
      expect(cpu).toHaveLength(2);
      const byName = Object.fromEntries(cpu.map((d) => [d.series, d]));
      expect(byName['cpu{dc=us-east,host=a}']).toEqual({
        series: 'cpu{dc=us-east,host=a}',
        ts: [1000, 2000],
        vals: [1.5, Number.NaN],
      });
      expect(byName['cpu{dc=us,host=b}']!.vals).toEqual([Number.POSITIVE_INFINITY]);
      expect(dump(s, { metric: 'mem' })).toEqual([{ series: 'mem{host=a}', ts: [1500], vals: [-7] }]);
      expect(dump(s, { metric: 'disk' })).toEqual([]);
      expect(s.seriesCount()).toBe(3);
    });

    it('select returns series sorted by id with labels', async () => {
      const s = await make();
      await s.append(batch([cpu0, cpu1, cpu2].map((x, i) => [x, 10, i] as const)));
      const sel = s.select({ metric: 'cpu' });
      const hex = sel.map((x) => Buffer.from(x.id).toString('hex'));
      expect(hex).toEqual([...hex].sort());
      expect(sel.map((x) => x.series.tags.host).sort()).toEqual(['a', 'b', 'c']);
    });

    it('matchers: each op, absent tags, anchoring, invalid regex', async () => {
      const s = await make();
      await s.append(batch([cpu0, cpu1, cpu2].map((x) => [x, 10, 1] as const)));
      const hosts = (matchers: { name: string; op: '=' | '!=' | '=~' | '!~'; value: string }[]) =>
        dump(s, { metric: 'cpu', matchers })
          .map((d) => d.series)
          .sort();
      expect(hosts([{ name: 'dc', op: '=', value: 'us' }])).toEqual(['cpu{dc=us,host=b}']);
      // != matches series that lack the tag
      expect(hosts([{ name: 'dc', op: '!=', value: 'us' }])).toEqual([
        'cpu{dc=us-east,host=a}',
        'cpu{host=c}',
      ]);
      // anchored: 'us' does not match 'us-east'
      expect(hosts([{ name: 'dc', op: '=~', value: 'us' }])).toEqual(['cpu{dc=us,host=b}']);
      expect(hosts([{ name: 'dc', op: '=~', value: 'us.*' }])).toEqual([
        'cpu{dc=us,host=b}',
        'cpu{dc=us-east,host=a}',
      ]);
      expect(hosts([{ name: 'dc', op: '=~', value: 'east' }])).toEqual([]);
      // !~ matches series that lack the tag
      expect(hosts([{ name: 'dc', op: '!~', value: 'us-.*' }])).toEqual(['cpu{dc=us,host=b}', 'cpu{host=c}']);
      // = '' selects the series without the tag
      expect(hosts([{ name: 'dc', op: '=', value: '' }])).toEqual(['cpu{host=c}']);
      expect(hosts([{ name: 'nope', op: '=', value: 'x' }])).toEqual([]);
      expect(hosts([{ name: 'nope', op: '!=', value: 'x' }])).toHaveLength(3);
      expect(
        hosts([
          { name: 'host', op: '=~', value: 'a|b' },
          { name: 'dc', op: '!=', value: 'us' },
        ]),
      ).toEqual(['cpu{dc=us-east,host=a}']);
      expectError(
        () => s.select({ metric: 'cpu', matchers: [{ name: 'dc', op: '=~', value: '(' }] }),
        'INVALID_ARGUMENT',
        'matchers[0].value',
      );
      expectError(
        () => s.select({ metric: 'cpu', matchers: [{ name: 'dc', op: '==' as '=', value: 'x' }] }),
        'INVALID_ARGUMENT',
        'matchers[0].op',
      );
      expectError(() => s.select({ metric: '' }), 'INVALID_ARGUMENT', 'metric');
      expectError(() => s.select({ metric: 'cpu', minT: 1.5 }), 'INVALID_ARGUMENT', 'minT');
    });

    it('time range bounds are inclusive at both ends', async () => {
      const s = await make({ sealSamples: 3 });
      await s.append(batch([10, 20, 30, 40, 50, 60, 70].map((t) => [cpu0, t, t / 10] as const)));
      const ts = (minT: number, maxT: number) => dump(s, { metric: 'cpu', minT, maxT })[0]?.ts ?? [];
      expect(ts(20, 50)).toEqual([20, 30, 40, 50]);
      expect(ts(21, 49)).toEqual([30, 40]);
      expect(ts(70, 70)).toEqual([70]);
      expect(ts(10, 10)).toEqual([10]);
      expect(ts(31, 39)).toEqual([]);
      expect(ts(0, MAX_TIMESTAMP_MS)).toEqual([10, 20, 30, 40, 50, 60, 70]);
      expect(ts(71, 100)).toEqual([]);
      expect(ts(50, 20)).toEqual([]);
      // A series with no sample in range is not returned.
      expect(s.select({ metric: 'cpu', minT: 31, maxT: 39 })).toEqual([]);
    });

    it('selectLast: the newest sample in range per series, from the head or the sealed chunks', async () => {
      const s = await make({ sealSamples: 4 });
      // cpu0: chunks [10..40] [50..80], head [90, 100]; cpu1: one sample; cpu2: chunks only (sealed at 4).
      await s.append(
        batch([
          ...[10, 20, 30, 40, 50, 60, 70, 80, 90, 100].map((t) => [cpu0, t, t / 10] as const),
          [cpu1, 55, -1],
          ...[5, 15, 25, 35].map((t) => [cpu2, t, t] as const),
        ]),
      );
      const last = (minT?: number, maxT?: number) =>
        s
          .selectLast({
            metric: 'cpu',
            ...(minT === undefined ? {} : { minT }),
            ...(maxT === undefined ? {} : { maxT }),
          })
          .map((x) => [x.series.tags.host, x.t, x.v]);
      const sorted = (rows: (string | number | undefined)[][]) =>
        [...rows].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
      expect(sorted(last())).toEqual([
        ['a', 100, 10],
        ['b', 55, -1],
        ['c', 35, 35],
      ]);
      // maxT inside the head, below the head (the newest chunk answers), inside an older chunk.
      expect(sorted(last(0, 95))).toEqual([
        ['a', 90, 9],
        ['b', 55, -1],
        ['c', 35, 35],
      ]);
      expect(sorted(last(0, 85))).toEqual([
        ['a', 80, 8],
        ['b', 55, -1],
        ['c', 35, 35],
      ]);
      expect(sorted(last(0, 45))).toEqual([
        ['a', 40, 4],
        ['c', 35, 35],
      ]);
      // minT past a series' newest sample leaves it out; an empty range gives nothing.
      expect(sorted(last(36, 54))).toEqual([['a', 50, 5]]);
      expect(last(41, 49)).toEqual([]);
      expect(last(60, 50)).toEqual([]);
      // Sorted by id like select, and the same series.
      expect(s.selectLast({ metric: 'cpu' }).map((x) => x.id)).toEqual(
        s.select({ metric: 'cpu' }).map((x) => x.id),
      );
      // Deletes: the newest chunk left with nothing at or below maxT falls back to an older one.
      await s.deleteSeries({
        metric: 'cpu',
        matchers: [{ name: 'host', op: '=', value: 'a' }],
        minT: 50,
        maxT: 95,
      });
      expect(sorted(last(0, 99))).toEqual([
        ['a', 40, 4],
        ['b', 55, -1],
        ['c', 35, 35],
      ]);
      expect(sorted(last())[0]).toEqual(['a', 100, 10]);
      expect(() =>
        s.selectLast({ metric: 'cpu', matchers: [{ name: 'x', op: '=~', value: '[' }] }),
      ).toThrow();
    });

    it('iterator: next, seek, at, and bulk blocks across chunk boundaries', async () => {
      const s = await make({ sealSamples: 4 });
      const ts = Array.from({ length: 23 }, (_, i) => 100 + i * 10);
      await s.append(batch(ts.map((t) => [cpu0, t, t * 2] as const)));
      const [sd] = s.select({ metric: 'cpu', minT: 125, maxT: 305 });
      const it = sd!.iterator();
      expect(it.seek(0)).toBe(true);
      expect(it.at()).toEqual({ t: 130, v: 260 });
      expect(it.seek(131)).toBe(true);
      expect(it.at().t).toBe(140);
      expect(it.seek(140)).toBe(true); // never moves backwards, stays
      expect(it.at().t).toBe(140);
      expect(it.seek(255)).toBe(true);
      expect(it.at().t).toBe(260);
      expect(it.next()).toBe(true);
      expect(it.at().t).toBe(270);
      expect(it.seek(301)).toBe(false);
      expect(it.next()).toBe(false);
      expect(it.err()).toBeNull();
      const blocks: number[][] = [];
      sd!.forEachBlock((bt, _bv, n) => blocks.push([...bt.subarray(0, n)]));
      const flat = blocks.flat();
      expect(flat).toEqual(ts.filter((t) => t >= 125 && t <= 305));
      // fresh iterator: seek first
      const it2 = sd!.iterator();
      expect(it2.seek(1000)).toBe(false);
      const it3 = sd!.iterator();
      expect(it3.next()).toBe(true);
      expect(it3.at().t).toBe(130);
    });

    it('accepts out-of-order samples inside the window (head and sealed chunks) and rejects older ones', async () => {
      const s = await make({ sealSamples: 4, oooWindowMs: H });
      const base = 10 * H;
      await s.append(batch(Array.from({ length: 10 }, (_, i) => [cpu0, base + i * 60_000, i] as const)));
      // newest is base + 9 min; samples before base + 9min - 1h are too old.
      const r = await s.append(
        batch([
          [cpu0, base + 30_000, 100], // between sealed samples
          [cpu0, base + 8 * 60_000 + 1, 101], // inside the head
          [cpu0, base - 10 * 60_000, 102], // before everything, inside the window
          [cpu0, base + 9 * 60_000 - H - 1, 103], // too old
          [cpu0, base + 9 * 60_000 - H, 104], // exactly at the window edge: accepted
          [cpu0, base + 60_000, 105], // replaces a sealed sample
        ]),
      );
      expect(r.accepted).toBe(5);
      expect(r.rejected).toEqual([{ index: 3, reason: 'too_old' }]);
      const [d] = dump(s, { metric: 'cpu' });
      const expected = new Map<number, number>();
      for (let i = 0; i < 10; i++) expected.set(base + i * 60_000, i);
      expected.set(base + 30_000, 100);
      expected.set(base + 8 * 60_000 + 1, 101);
      expected.set(base - 10 * 60_000, 102);
      expected.set(base + 9 * 60_000 - H, 104);
      expected.set(base + 60_000, 105);
      const sorted = [...expected.entries()].sort((a, b) => a[0] - b[0]);
      expect(d!.ts).toEqual(sorted.map((e) => e[0]));
      expect(d!.vals).toEqual(sorted.map((e) => e[1]));
      // the window is per series: a new series accepts anything
      const r2 = await s.append(batch([[cpu1, 5, 1]]));
      expect(r2.accepted).toBe(1);
    });

    it('last write wins, within a batch and across batches; re-applying a batch changes nothing', async () => {
      const s = await make({ sealSamples: 4 });
      const b = batch([
        [cpu0, 10, 1],
        [cpu0, 20, 2],
        [cpu0, 10, 3], // later in the batch wins
        [cpu0, 30, 4],
        [cpu0, 40, 5],
        [cpu0, 50, 6],
        [cpu0, 20, 7], // into a sealed chunk, later wins
      ]);
      await s.applyBatch(1, b);
      const first = dump(s, { metric: 'cpu' });
      expect(first[0]).toEqual({
        series: 'cpu{dc=us-east,host=a}',
        ts: [10, 20, 30, 40, 50],
        vals: [3, 7, 4, 5, 6],
      });
      await s.applyBatch(2, b);
      expect(dump(s, { metric: 'cpu' })).toEqual(first);
      await s.applyBatch(3, batch([[cpu0, 30, 40]]));
      expect(dump(s, { metric: 'cpu' })[0]!.vals).toEqual([3, 7, 40, 5, 6]);
    });

    it('applied index: duplicates are no-ops, meta is recorded with the batch', async () => {
      const s = await make();
      expect(await durableApplied(s)).toBe(0);
      const r = await s.applyBatch(5, batch([[cpu0, 10, 1]]), { 'kafka/0': new Uint8Array([1, 2]) });
      expect(r.duplicate).toBe(false);
      expect(await durableApplied(s)).toBe(5);
      expect(s.getMeta('kafka/0')).toEqual(new Uint8Array([1, 2]));
      const dup = await s.applyBatch(5, batch([[cpu0, 10, 99]]), { 'kafka/0': new Uint8Array([9]) });
      expect(dup).toEqual({ accepted: 0, rejected: [], duplicate: true });
      const older = await s.applyBatch(3, batch([[cpu0, 10, 99]]));
      expect(older.duplicate).toBe(true);
      expect(s.getMeta('kafka/0')).toEqual(new Uint8Array([1, 2]));
      expect(dump(s, { metric: 'cpu' })[0]!.vals).toEqual([1]);
      await s.append(batch([[cpu0, 20, 2]]));
      expect(await durableApplied(s)).toBe(6);
      expect(s.getMeta('missing')).toBeUndefined();
      await expect(s.applyBatch(0, batch([]))).rejects.toSatisfy((e) =>
        isTidemarkError(e, 'INVALID_ARGUMENT'),
      );
      await expect(s.applyBatch(1.5, batch([]))).rejects.toSatisfy((e) =>
        isTidemarkError(e, 'INVALID_ARGUMENT'),
      );
      // a malformed batch is a caller bug: it throws and applies nothing
      for (const bad of [
        null,
        { ...batch([]), length: -1 },
        { ...batch([]), timestamps: [1] },
        { ...batch([]), series: 'x' },
      ]) {
        await expectRejects(s.applyBatch(7, bad as never), 'INVALID_ARGUMENT', 'batch');
      }
      expect(await durableApplied(s)).toBe(6);
      // an empty batch still advances the index
      await s.applyBatch(7, batch([]));
      expect(await durableApplied(s)).toBe(7);
    });

    it('rejects invalid samples deterministically without throwing', async () => {
      const s = await make();
      const b = batch([
        [cpu0, 10, 1],
        [cpu0, Number.NaN, 1],
        [cpu0, 1.5, 1],
        [cpu0, -1, 1],
        [cpu0, MAX_TIMESTAMP_MS + 1, 1],
        [series('', {}), 10, 1],
        [series('bad metric!', {}), 10, 1],
        [cpu0, MAX_TIMESTAMP_MS, 2],
      ]);
      b.seriesRef = Uint32Array.from([...b.seriesRef, 99]);
      b.timestamps = Float64Array.from([...b.timestamps, 10]);
      b.values = Float64Array.from([...b.values, 1]);
      b.length = 10; // the last index is past the arrays
      const r = await s.append(b);
      expect(r.accepted).toBe(2);
      expect(r.rejected).toEqual([
        { index: 1, reason: 'invalid_timestamp' },
        { index: 2, reason: 'invalid_timestamp' },
        { index: 3, reason: 'invalid_timestamp' },
        { index: 4, reason: 'invalid_timestamp' },
        { index: 5, reason: 'invalid_series' },
        { index: 6, reason: 'invalid_series' },
        { index: 8, reason: 'invalid_series' },
        { index: 9, reason: 'invalid_sample' },
      ]);
      expect(s.seriesCount()).toBe(1);
      expect(dump(s, { metric: 'cpu' })[0]!.ts).toEqual([10, MAX_TIMESTAMP_MS]);
    });

    it('retention drops old samples, trims the head, removes empty series, rejects writes below the cutoff', async () => {
      const s = await make({ sealSamples: 4, retentionMs: 100 * H, oooWindowMs: 1000 * H });
      const samples: [typeof cpu0, number, number][] = [];
      for (let i = 0; i < 20; i++) samples.push([cpu0, i * H, i]);
      samples.push([cpu1, 2 * H, 1], [cpu1, 3 * H, 2]);
      await s.append(batch(samples));
      expect((await s.applyRetention(50 * H)).cutoff).toBe(0); // nothing yet (cutoff would be negative)
      const r = await s.applyRetention(110 * H); // cutoff 10h
      expect(r.cutoff).toBe(10 * H);
      expect(r.seriesRemoved).toBe(1);
      expect(dump(s, { metric: 'cpu' })).toEqual([
        {
          series: 'cpu{dc=us-east,host=a}',
          ts: Array.from({ length: 10 }, (_, i) => (i + 10) * H),
          vals: Array.from({ length: 10 }, (_, i) => i + 10),
        },
      ]);
      expect(s.seriesCount()).toBe(1);
      expect(s.labelValues('host')).toEqual(['a']);
      const w = await s.append(
        batch([
          [cpu0, 10 * H - 1, 1],
          [cpu0, 10 * H, 99],
          [cpu1, 5 * H, 1],
        ]),
      );
      expect(w.rejected).toEqual([
        { index: 0, reason: 'out_of_retention' },
        { index: 2, reason: 'out_of_retention' },
      ]);
      expect(dump(s, { metric: 'cpu', maxT: 10 * H })[0]!.vals).toEqual([99]);
      // the cutoff never moves back
      expect((await s.applyRetention(105 * H)).cutoff).toBe(10 * H);
      // everything expires: the series goes away
      const all = await s.applyRetention(1000 * H);
      expect(all.seriesRemoved).toBe(1);
      expect(s.seriesCount()).toBe(0);
      expect(s.metricNames()).toEqual([]);
      expect(dump(s, { metric: 'cpu' })).toEqual([]);
    });

    it('retention is a no-op without a configured retention', async () => {
      const s = await make();
      await s.append(batch([[cpu0, 1, 1]]));
      const r = await s.applyRetention(10 ** 13);
      expect(r).toEqual({ cutoff: 0, chunksDropped: 0, seriesRemoved: 0 });
      expect(dump(s, { metric: 'cpu' })).toHaveLength(1);
    });

    it('delete: whole chunks, partial chunks and the head; counts; empty series removed', async () => {
      const s = await make({ sealSamples: 4 });
      const ts = Array.from({ length: 14 }, (_, i) => (i + 1) * 10); // chunks [10..40] [50..80] [90..120], head [130,140]
      await s.append(batch([...ts.map((t) => [cpu0, t, t] as const), [cpu1, 10, 1], [cpu1, 500, 2]]));
      const r = await s.deleteSeries({
        metric: 'cpu',
        matchers: [{ name: 'host', op: '=', value: 'a' }],
        minT: 30,
        maxT: 135,
      });
      expect(r).toEqual({ seriesAffected: 1, samplesDeleted: 11, seriesRemoved: 0, duplicate: false });
      expect(dump(s, { metric: 'cpu', matchers: [{ name: 'host', op: '=', value: 'a' }] })[0]!.ts).toEqual([
        10, 20, 140,
      ]);
      // writes after a delete still work, including into the deleted range
      await s.append(batch([[cpu0, 60, 6]]));
      expect(dump(s, { metric: 'cpu', matchers: [{ name: 'host', op: '=', value: 'a' }] })[0]!.ts).toEqual([
        10, 20, 60, 140,
      ]);
      const all = await s.deleteSeries({ metric: 'cpu' });
      expect(all).toEqual({ seriesAffected: 2, samplesDeleted: 6, seriesRemoved: 2, duplicate: false });
      expect(s.seriesCount()).toBe(0);
      expect(dump(s, { metric: 'cpu' })).toEqual([]);
      expect(s.labelNames()).toEqual([]);
      // a removed series starts over: its out-of-order window is reset
      const again = await s.append(batch([[cpu0, 5, 1]]));
      expect(again.accepted).toBe(1);
    });

    it('delete: index semantics and invalid requests', async () => {
      const s = await make();
      await s.append(batch([[cpu0, 10, 1]]));
      await expectRejects(
        s.deleteSeries({ metric: 'cpu', matchers: [{ name: 'x', op: '=~', value: '[' }] }),
        'INVALID_ARGUMENT',
        'matchers[0].value',
      );
      expect(await durableApplied(s)).toBe(1);
      const bad = await s.applyDelete(2, { metric: 'cpu', matchers: [{ name: 'x', op: '=~', value: '[' }] });
      expect(bad.error?.field).toBe('matchers[0].value');
      expect(await durableApplied(s)).toBe(2);
      const dup = await s.applyDelete(2, { metric: 'cpu' });
      expect(dup.duplicate).toBe(true);
      expect(dump(s, { metric: 'cpu' })).toHaveLength(1);
      const ok = await s.applyDelete(3, { metric: 'cpu' }, { k: new Uint8Array([3]) });
      expect(ok.samplesDeleted).toBe(1);
      expect(s.getMeta('k')).toEqual(new Uint8Array([3]));
    });

    it('sealing boundaries: exactly full, one past, span-based', async () => {
      for (const n of [3, 4, 5, 8, 9, 17]) {
        const s = await make({ sealSamples: 4, sealSpanMs: 1000 });
        const ts = Array.from({ length: n }, (_, i) => i * 100);
        await s.append(batch(ts.map((t) => [cpu0, t, t + 0.25] as const)));
        expect(dump(s, { metric: 'cpu' })[0]!.ts).toEqual(ts);
        expect(s.stats().headSamples + s.stats().chunkSamples).toBe(n);
        // one sample at a time too
        const s2 = await make({ sealSamples: 4, sealSpanMs: 250 });
        for (const t of ts) await s2.append(batch([[cpu0, t, t + 0.25]]));
        expect(dump(s2, { metric: 'cpu' })[0]!.vals).toEqual(ts.map((t) => t + 0.25));
      }
    });

    it('many series and list helpers', async () => {
      const s = await make({ sealSamples: 8 });
      const list = Array.from({ length: 1500 }, (_, i) =>
        series(i % 3 === 0 ? 'm.a' : 'm.b', {
          host: `h${i % 50}`,
          idx: String(i),
          ...(i % 2 ? { odd: 'y' } : {}),
        }),
      );
      for (let round = 0; round < 3; round++) {
        await s.append(batch(list.map((x, i) => [x, 1000 + round * 10, i + round] as const)));
      }
      expect(s.seriesCount()).toBe(1500);
      expect(s.metricNames()).toEqual(['m.a', 'm.b']);
      expect(s.labelNames()).toEqual(['host', 'idx', 'odd']);
      expect(s.labelValues('host')).toHaveLength(50);
      expect(s.labelValues('odd')).toEqual(['y']);
      expect(s.labelValues('none')).toEqual([]);
      expect(s.select({ metric: 'm.a' })).toHaveLength(500);
      const one = dump(s, { metric: 'm.b', matchers: [{ name: 'idx', op: '=', value: '7' }] });
      expect(one).toEqual([{ series: 'm.b{host=h7,idx=7,odd=y}', ts: [1000, 1010, 1020], vals: [7, 8, 9] }]);
      expect(s.select({ metric: 'm.b', matchers: [{ name: 'odd', op: '!=', value: 'y' }] })).toHaveLength(
        500,
      );
      // Removed series leave every path (a metric resolved in memory or through `=` postings on disk).
      await s.deleteSeries({ metric: 'm.a', matchers: [{ name: 'host', op: '=', value: 'h3' }] });
      expect(s.select({ metric: 'm.a', matchers: [{ name: 'host', op: '=', value: 'h3' }] })).toEqual([]);
      expect(
        s.select({ metric: 'm.a', matchers: [{ name: 'host', op: '=~', value: 'h3|h6' }] }),
      ).toHaveLength(10);
      expect(s.select({ metric: 'm.a' })).toHaveLength(490);
      expect(s.selectLast({ metric: 'm.a' })).toHaveLength(490);
      expect(s.select({ metric: 'm.b', matchers: [{ name: 'host', op: '=', value: 'h3' }] })).toHaveLength(
        20,
      );
    });

    it('reads are snapshots: later writes do not change a selection', async () => {
      const s = await make({ sealSamples: 4 });
      await s.append(batch([1, 2, 3, 5, 6].map((t) => [cpu0, t, t] as const)));
      const [sd] = s.select({ metric: 'cpu' });
      await s.append(
        batch([
          [cpu0, 4, 4],
          [cpu0, 7, 7],
          [cpu0, 2, 20],
        ]),
      );
      await s.deleteSeries({ metric: 'cpu', minT: 5, maxT: 5 });
      expect([...sd!.toArrays().ts]).toEqual([1, 2, 3, 5, 6]);
      expect([...sd!.toArrays().vals]).toEqual([1, 2, 3, 5, 6]);
      expect(dump(s, { metric: 'cpu' })[0]!.vals).toEqual([1, 20, 3, 4, 6, 7]);
    });

    it('pipelined writes (several in flight) apply in order and resolve durable', async () => {
      const s = await make({ sealSamples: 8 });
      const inFlight: Promise<unknown>[] = [];
      for (let k = 0; k < 20; k++) {
        inFlight.push(
          s.append(
            batch([
              [cpu0, 100 + k, k],
              [cpu1, 100 + k, -k],
            ]),
          ),
        );
        // reads between writes see whole batches only
        const seen = dump(s, { metric: 'cpu' });
        if (seen.length > 0) expect(seen.map((d) => d.ts.length)).toEqual(seen.map(() => seen[0]!.ts.length));
      }
      inFlight.push(
        s.deleteSeries({
          metric: 'cpu',
          matchers: [{ name: 'host', op: '=', value: 'b' }],
          minT: 105,
          maxT: 110,
        }),
      );
      const results = await Promise.all(inFlight);
      expect(results.slice(0, 20).every((r) => (r as { accepted: number }).accepted === 2)).toBe(true);
      expect(await durableApplied(s)).toBe(21);
      const lengths = Object.fromEntries(dump(s, { metric: 'cpu' }).map((d) => [d.series, d.ts.length]));
      expect(lengths).toEqual({ 'cpu{dc=us-east,host=a}': 20, 'cpu{dc=us,host=b}': 14 });
    });

    it('a closed store throws CLOSED', async () => {
      const s = await factory.create();
      await s.close();
      await s.close(); // idempotent
      expectError(() => s.appliedIndex(), 'CLOSED');
      expectError(() => s.select({ metric: 'cpu' }), 'CLOSED');
      await expectRejects(s.append(batch([[cpu0, 1, 1]])), 'CLOSED');
    });

    it('reopen keeps data, index, meta, applied index, cutoff and windows', async () => {
      const opts = { sealSamples: 4, retentionMs: 100 * H, oooWindowMs: H };
      let s = await make(opts);
      if (!s.capabilities.persistent) return;
      const samples: [typeof cpu0, number, number][] = [];
      for (let i = 0; i < 30; i++) samples.push([i % 2 ? cpu0 : cpu1, 200 * H + i * 60_000, i * 1.5]);
      await s.applyBatch(3, batch(samples), { off: new Uint8Array([7]) });
      await s.applyBatch(
        4,
        batch([
          [mem0, 150 * H, 1],
          [cpu0, 200 * H + 5 * 60_000, -1],
        ]),
      );
      await s.applyRetention(250 * H + 1); // cutoff 150h + 1: mem goes away
      await s.applyDelete(5, {
        metric: 'cpu',
        matchers: [{ name: 'host', op: '=', value: 'b' }],
        minT: 0,
        maxT: 200 * H + 20 * 60_000,
      });
      const before = { cpu: dump(s, { metric: 'cpu' }), mem: dump(s, { metric: 'mem' }) };
      const stats = s.stats();
      s = await reopen(s, opts);
      expect({ cpu: dump(s, { metric: 'cpu' }), mem: dump(s, { metric: 'mem' }) }).toEqual(before);
      expect(await durableApplied(s)).toBe(5);
      expect(s.getMeta('off')).toEqual(new Uint8Array([7]));
      expect(s.seriesCount()).toBe(stats.series);
      expect(s.stats().retentionCutoff).toBe(150 * H + 1);
      expect(s.labelValues('host').sort()).toEqual(['a', 'b']);
      const r = await s.append(
        batch([
          [cpu0, 150 * H, 1], // below the cutoff
          [cpu0, 200 * H + 29 * 60_000 - H - 1, 1], // too old relative to the newest (kept across reopen)
        ]),
      );
      expect(r.rejected.map((x) => x.reason)).toEqual(['out_of_retention', 'too_old']);
      expect((await s.applyBatch(5, batch([[cpu0, 300 * H, 1]]))).duplicate).toBe(true);
      // and again, after more writes without an explicit checkpoint
      await s.append(batch([[cpu0, 201 * H, 5]]));
      const mid = dump(s, { metric: 'cpu' });
      s = await reopen(s, opts);
      expect(dump(s, { metric: 'cpu' })).toEqual(mid);
    });
  });
}
