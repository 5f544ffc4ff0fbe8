/**
 * Randomized differential test of the query engine: random datasets and random queries (every
 * function, fill policy, filter type, group-by and rate option). For each query:
 *  1. the engine over one store equals the naive reference (./reference.ts): exactly for
 *     sum/avg/count/min/max/first/last, within the sketch's relative error for percentile aggregators;
 *  2. the engine over a random split of the series across 1-4 shards (memory and LMDB stores, partials
 *     round-tripped through the protobuf codec) equals the engine over one store, exactly.
 * Seeded: TIDEMARK_SEED=<n> (or <a>-<b>) npx vitest run test/query/differential.test.ts replays.
 */
import { afterAll, expect, test } from 'vitest';
import {
  decodeShardPartial,
  decodeShardQuery,
  encodeShardPartial,
  encodeShardQuery,
} from '../../src/query/codec.js';
import { runQuery, type ShardFn } from '../../src/query/engine.js';
import { executeShard } from '../../src/query/executor.js';
import { LmdbShardStore, MemoryShardStore, type ShardStore } from '../../src/storage/index.js';
import { Rng } from '../../src/util/random.js';
import { load, seedList, tempDir } from './helpers.js';
import { compareToReference, plain, randomData, randomSpec } from './random.js';
import { type RefSeries, referenceQuery } from './reference.js';

const seeds = seedList(process.env.TIDEMARK_SEED, [1, 2, 3, 4, 5, 6, 7, 8]);
const QUERIES_PER_SEED = 60;

const cleanups: (() => void)[] = [];
const stores: ShardStore[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
  for (const c of cleanups) c();
});

async function openStore(r: Rng, lmdb = r.chance(0.5)): Promise<ShardStore> {
  const opts = { sealSamples: r.pick([4, 16, 64, 1024]), sealSpanMs: r.pick([60_000, 7_200_000]) };
  let s: ShardStore;
  if (!lmdb) s = new MemoryShardStore(opts);
  else {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    s = await LmdbShardStore.open(dir, opts);
  }
  stores.push(s);
  return s;
}

/** A shard reached through the wire format, as the cluster will (query and partial both round-trip). */
function wireShard(store: ShardStore): ShardFn {
  return async (q, signal) => {
    const p = await executeShard(store, decodeShardQuery(encodeShardQuery(q)), signal, { yieldEvery: 5000 });
    return decodeShardPartial(encodeShardPartial(p));
  };
}

test.each(seeds)(
  'engine = reference, and any shard split = one store (seed %i)',
  async (seed) => {
    let current = '';
    try {
      const r = new Rng(seed);
      const data = randomData(r);
      // The single store alternates between the two implementations; shards are mixed at random.
      const whole = await openStore(r, seed % 2 === 0);
      await load(whole, data);
      const nShards = r.int(1, 5);
      const parts: RefSeries[][] = Array.from({ length: nShards }, () => []);
      for (const d of data) parts[r.int(0, nShards)]!.push(d);
      const shards: ShardFn[] = [];
      for (const p of parts) {
        const s = await openStore(r);
        await load(s, p);
        shards.push(wireShard(s));
      }
      let nonEmpty = 0;
      for (let i = 0; i < QUERIES_PER_SEED; i++) {
        const spec = randomSpec(r);
        current = JSON.stringify(spec);
        const one = await runQuery(spec, [wireShard(whole)]);
        compareToReference(spec, plain(one.results), referenceQuery(data, spec));
        const split = await runQuery(spec, shards);
        expect(plain(split.results)).toEqual(plain(one.results));
        expect(split.results.map((x) => x.seriesIds)).toEqual(one.results.map((x) => x.seriesIds));
        if (one.results.some((x) => x.ts.length > 0)) nonEmpty++;
      }
      // Guard against a generator that only produces empty answers (which would compare trivially).
      expect(nonEmpty).toBeGreaterThanOrEqual(QUERIES_PER_SEED / 10);
    } catch (err) {
      console.error(
        `query differential test failed with seed ${seed} (rerun: TIDEMARK_SEED=${seed} npx vitest run test/query/differential.test.ts)\nquery: ${current}`,
      );
      throw err;
    }
  },
  60_000,
);
