/**
 * Randomized differential test: the same random operations (batches with out-of-order, duplicate,
 * too-old and invalid samples; deletes; retention; re-applied indexes; checkpoints; reopen) on the
 * LMDB store and the in-memory reference must give identical results and identical query answers.
 * Run twice: with the store's own write-ahead records, and with an external log (`externalLog`, as under
 * Raft), where a crash image recovers by re-applying the logged entries after its appliedIndex().
 * Seeded: set TIDEMARK_SEED=<n> (or <a>-<b>) to replay seeds; a failure names its seed.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Series } from '../../src/model/index.js';
import {
  LmdbShardStore,
  type LmdbStoreOptions,
  type Matcher,
  MemoryShardStore,
  type SelectRequest,
  type ShardStore,
  type StoreOptions,
} from '../../src/storage/index.js';
import { batch, dump, rng, series, tempDir } from './helpers.js';

const cleanups: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanups) c();
});

// TIDEMARK_SEED=7 runs one seed, TIDEMARK_SEED=7-40 a range (for soak runs).
function seedList(spec: string | undefined): number[] {
  if (!spec) return [1, 2, 3, 4, 5, 6];
  const [a, b] = spec.split('-').map(Number);
  return Array.from({ length: (b ?? a!) - a! + 1 }, (_, i) => a! + i);
}
const seeds = seedList(process.env.TIDEMARK_SEED);

const POOL: Series[] = [];
for (let i = 0; i < 14; i++) {
  const tags: Record<string, string> = { host: `h${i % 5}` };
  if (i % 3 !== 0) tags.dc = i % 2 ? 'us-east' : 'eu';
  if (i % 4 === 0) tags.role = 'db';
  POOL.push(series(i < 9 ? 'cpu' : 'mem', tags));
}

let lastOps: string[] = [];

/** What the external log (Raft's, in production) holds: every indexed operation, in order. */
type Logged =
  | { index: number; kind: 'batch'; b: ReturnType<typeof batch>; meta: Record<string, Uint8Array> }
  | { index: number; kind: 'delete'; req: Parameters<ShardStore['applyDelete']>[1] };

async function runSeed(seed: number, mode: Partial<LmdbStoreOptions>): Promise<void> {
  const externalLog = mode.externalLog === true;
  const r = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const opts: Partial<StoreOptions> = {
    sealSamples: pick([2, 3, 5, 8, 16]),
    sealSpanMs: pick([50, 200, 1000, 100_000]),
    oooWindowMs: pick([0, 30, 150, 1000]),
    retentionMs: pick([0, 500, 2000]),
    checkpointRecords: pick([1, 3, 10, 1000, 1000]),
  };
  const lmOpts: Partial<LmdbStoreOptions> = { ...opts, ...mode };
  const mem = new MemoryShardStore(opts);
  const { dir, cleanup } = tempDir('tidemark-diff-');
  cleanups.push(cleanup);
  let lm: ShardStore = await LmdbShardStore.open(dir, lmOpts);
  const log: Logged[] = [];
  /** A store reopened from its files alone: re-applies what the log holds after its appliedIndex(). */
  const replay = async (s: ShardStore) => {
    if (!externalLog) return;
    const from = s.appliedIndex();
    expect(from, 'an external-log store never reports more than was applied').toBeLessThanOrEqual(
      mem.appliedIndex(),
    );
    // User meta is as of the same index (the Kafka rule compares it with each re-applied entry's offsets).
    let offset: Uint8Array | undefined;
    for (const e of log) if (e.index <= from && e.kind === 'batch' && e.meta.offset) offset = e.meta.offset;
    expect(s.getMeta('offset'), `user meta as of index ${from}`).toEqual(offset);
    for (const e of log) {
      if (e.index <= from) continue;
      if (e.kind === 'batch') await s.applyBatch(e.index, e.b, e.meta);
      else await s.applyDelete(e.index, e.req);
    }
  };
  let now = 10_000;
  let index = 0;
  const ops: string[] = [];
  lastOps = ops;
  if (process.env.TIDEMARK_DEBUG) ops.push(JSON.stringify(opts));

  const randomMatchers = (): Matcher[] => {
    const out: Matcher[] = [];
    const n = int(0, 2);
    for (let i = 0; i < n; i++) {
      const name = pick(['host', 'dc', 'role', 'none']);
      const op = pick(['=', '!=', '=~', '!~'] as const);
      const value =
        op === '=~' || op === '!~'
          ? pick(['h[0-2]', 'us-.*', 'eu|db', '', '.*', 'h'])
          : pick(['h1', 'h3', 'us-east', 'eu', 'db', '']);
      out.push({ name, op, value });
    }
    return out;
  };
  const randomRange = (): { minT?: number; maxT?: number } => {
    const a = now - int(0, 3000);
    const b = a + int(0, 2500);
    return pick([{}, { minT: a }, { maxT: b }, { minT: a, maxT: b }]);
  };
  const compare = (what: string) => {
    for (let q = 0; q < 4; q++) {
      const req: SelectRequest = {
        metric: pick(['cpu', 'mem']),
        matchers: randomMatchers(),
        ...randomRange(),
      };
      expect(dump(lm, req), `${what}: select ${JSON.stringify(req)}`).toEqual(dump(mem, req));
    }
    expect(lm.seriesCount(), `${what}: seriesCount`).toBe(mem.seriesCount());
    expect(lm.metricNames()).toEqual(mem.metricNames());
    expect(lm.labelNames()).toEqual(mem.labelNames());
    expect(lm.labelValues('dc')).toEqual(mem.labelValues('dc'));
    if (externalLog) expect(lm.appliedIndex()).toBeLessThanOrEqual(mem.appliedIndex());
    else expect(lm.appliedIndex()).toBe(mem.appliedIndex());
    expect(lm.getMeta('offset')).toEqual(mem.getMeta('offset'));
  };

  for (let step = 0; step < 160; step++) {
    const x = r();
    if (x < 0.6) {
      const n = int(0, 40);
      const samples: [Series, number, number][] = [];
      // now and then a burst for one series (large out-of-order merges, chunk splits)
      const burst = r() < 0.15 ? pick(POOL) : null;
      for (let i = 0; i < n; i++) {
        const s = burst ?? pick(POOL);
        let t = now + int(-1200, 40);
        if (t > now) now = t;
        if (r() < 0.03) t = pick([Number.NaN, -5, 1.5, 2 ** 60]);
        const v = r() < 0.05 ? Number.NaN : Math.round(r() * 1000) / 10;
        samples.push([s, t, v]);
      }
      // re-send a recent sample now and then (last write wins)
      if (samples.length > 0 && r() < 0.3) samples.push([samples[0]![0], samples[0]![1], 42]);
      index += r() < 0.1 ? 2 : 1; // indexes may skip
      const b = batch(samples);
      // A Kafka-style offset in the user meta, written with the samples.
      const meta: Record<string, Uint8Array> =
        r() < 0.5 ? { offset: new Uint8Array([index & 255, index >> 8]) } : {};
      log.push({ index, kind: 'batch', b, meta });
      const a = await lm.applyBatch(index, b, meta);
      const e = await mem.applyBatch(index, b, meta);
      ops.push(
        `batch ${index} ${process.env.TIDEMARK_DEBUG ? JSON.stringify(samples.map(([x, t, v]) => [x.tags.host, x.metric, t, v])) : n}`,
      );
      expect(a, `batch ${index}`).toEqual(e);
    } else if (x < 0.68) {
      const req = { metric: pick(['cpu', 'mem']), matchers: randomMatchers(), ...randomRange() };
      index++;
      log.push({ index, kind: 'delete', req });
      const a = await lm.applyDelete(index, req);
      const e = await mem.applyDelete(index, req);
      ops.push(`delete ${index} ${JSON.stringify(req)}`);
      expect(a, `delete ${JSON.stringify(req)}`).toEqual(e);
    } else if (x < 0.74) {
      now += int(0, 400);
      const a = await lm.applyRetention(now);
      const e = await mem.applyRetention(now);
      ops.push(`retention ${now}`);
      expect({ ...a, chunksDropped: 0 }).toEqual(e);
    } else if (x < 0.8) {
      const old = int(Math.max(1, index - 5), Math.max(1, index));
      const b = batch([[pick(POOL), now, 1]]);
      expect(await lm.applyBatch(old, b)).toEqual(await mem.applyBatch(old, b));
      ops.push(`reapply ${old}`);
    } else if (x < 0.86) {
      await lm.checkpoint();
      ops.push('checkpoint');
    } else if (x < 0.9) {
      await lm.close();
      lm = await LmdbShardStore.open(dir, lmOpts);
      if (externalLog)
        expect(lm.appliedIndex(), 'a clean close checkpoints everything').toBe(mem.appliedIndex());
      ops.push('reopen');
    } else if (x < 0.97) {
      // A crash image: the data file as it is now (everything acknowledged is flushed), opened
      // elsewhere without a clean close, so recovery must redo the write-ahead records (or, with an
      // external log, the caller re-applies the logged entries after the image's appliedIndex()).
      const copy = tempDir('tidemark-diff-crash-');
      cleanups.push(copy.cleanup);
      // The caller may have compacted its log up to what the store reported: the image must not need more.
      const reported = lm.appliedIndex();
      copyFileSync(join(dir, 'data.mdb'), join(copy.dir, 'data.mdb'));
      const crashed = await LmdbShardStore.open(copy.dir, lmOpts);
      try {
        expect(crashed.appliedIndex(), 'recovers at least the reported durable index').toBeGreaterThanOrEqual(
          reported,
        );
        await replay(crashed);
        for (const metric of ['cpu', 'mem']) {
          expect(dump(crashed, { metric }), `crash image at step ${step}`).toEqual(dump(mem, { metric }));
        }
        if (!externalLog) expect(crashed.appliedIndex()).toBe(mem.appliedIndex());
        expect(crashed.getMeta('offset')).toEqual(mem.getMeta('offset'));
        expect(crashed.seriesCount()).toBe(mem.seriesCount());
      } finally {
        await crashed.close();
      }
      ops.push('crash image');
    } else {
      now += int(0, 300);
    }
    compare(`step ${step} (${ops[ops.length - 1] ?? 'advance'})`);
  }
  compare('end');
  const all = { metric: 'cpu' };
  expect(dump(lm, all)).toEqual(dump(mem, all));
  await lm.close();
  lm = await LmdbShardStore.open(dir, lmOpts);
  compare('after final reopen');
  expect(dump(lm, { metric: 'mem' })).toEqual(dump(mem, { metric: 'mem' }));
  await lm.close();
}

describe.each([
  ['its own write-ahead records', {}],
  ['an external log', { externalLog: true }],
  ['an external log and pipelined sync (as under Raft)', { externalLog: true, pipelinedSync: true }],
])(
  'LmdbShardStore vs MemoryShardStore (randomized, seeded), %s',
  (_name, mode: Partial<LmdbStoreOptions>) => {
    for (const seed of seeds) {
      it(`seed ${seed}`, async () => {
        try {
          await runSeed(seed, mode);
        } catch (err) {
          console.error(`differential test failed with seed ${seed} (rerun: TIDEMARK_SEED=${seed})`);
          if (process.env.TIDEMARK_DEBUG) console.error(lastOps.join('\n'));
          throw err;
        }
      });
    }
  },
);
