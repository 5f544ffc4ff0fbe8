/**
 * Randomized differential test: the same random operations (batches with out-of-order, duplicate,
 * too-old and invalid samples; deletes; retention; re-applied indexes; checkpoints; reopen) on the
 * LMDB store and the in-memory reference must give identical results and identical query answers.
 * Seeded: set TIDEMARK_SEED=<n> (or <a>-<b>) to replay seeds; a failure names its seed.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Series } from '../../src/model/index.js';
import {
  LmdbShardStore,
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

async function runSeed(seed: number): Promise<void> {
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
  const mem = new MemoryShardStore(opts);
  const { dir, cleanup } = tempDir('tidemark-diff-');
  cleanups.push(cleanup);
  let lm: ShardStore = await LmdbShardStore.open(dir, opts);
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
    expect(lm.appliedIndex()).toBe(mem.appliedIndex());
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
      const a = await lm.applyBatch(index, b);
      const e = await mem.applyBatch(index, b);
      ops.push(
        `batch ${index} ${process.env.TIDEMARK_DEBUG ? JSON.stringify(samples.map(([x, t, v]) => [x.tags.host, x.metric, t, v])) : n}`,
      );
      expect(a, `batch ${index}`).toEqual(e);
    } else if (x < 0.68) {
      const req = { metric: pick(['cpu', 'mem']), matchers: randomMatchers(), ...randomRange() };
      index++;
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
      lm = await LmdbShardStore.open(dir, opts);
      ops.push('reopen');
    } else if (x < 0.94) {
      // A crash image: the data file as it is now (everything acknowledged is flushed), opened
      // elsewhere without a clean close, so recovery must redo the write-ahead records.
      const copy = tempDir('tidemark-diff-crash-');
      cleanups.push(copy.cleanup);
      copyFileSync(join(dir, 'data.mdb'), join(copy.dir, 'data.mdb'));
      const crashed = await LmdbShardStore.open(copy.dir, opts);
      try {
        for (const metric of ['cpu', 'mem']) {
          expect(dump(crashed, { metric }), `crash image at step ${step}`).toEqual(dump(mem, { metric }));
        }
        expect(crashed.appliedIndex()).toBe(mem.appliedIndex());
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
  lm = await LmdbShardStore.open(dir, opts);
  compare('after final reopen');
  expect(dump(lm, { metric: 'mem' })).toEqual(dump(mem, { metric: 'mem' }));
  await lm.close();
}

describe('LmdbShardStore vs MemoryShardStore (randomized, seeded)', () => {
  for (const seed of seeds) {
    it(`seed ${seed}`, async () => {
      try {
        await runSeed(seed);
      } catch (err) {
        console.error(`differential test failed with seed ${seed} (rerun: TIDEMARK_SEED=${seed})`);
        if (process.env.TIDEMARK_DEBUG) console.error(lastOps.join('\n'));
        throw err;
      }
    });
  }
});
