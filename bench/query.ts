/**
 * Query benchmark (the engine alone; optional `npm run bench:query` once the lead adds the script).
 * A benchmark, not a test: it prints numbers, never asserts.
 *
 * The TSBS cpu-only dataset (bench/datasets.ts; default 100 hosts x 10 metrics x 24 h at 10 s = 8.64 M
 * samples) split by series id over 3 LMDB shard stores in this process; queries run through runQuery
 * with in-process shard functions (no gRPC, no Raft: the cluster adds those). TSBS query shapes:
 *  - single-groupby-1-1-1: 1 metric, 1 host, 1 h, max per minute;
 *  - single-groupby-5-8-1: 5 metrics, 8 hosts, 1 h, max per minute;
 *  - cpu-max-all-8: all 10 metrics, 8 hosts, 12 h, max per hour;
 *  - double-groupby-all: all 10 metrics, avg per host per hour, 12 h;
 *  - lastpoint: the newest sample of every series (/api/query/last logic, 1 h back-scan).
 * Options: --hosts N, --hours H, --runs R (per query), --quick. Last line:
 * {"bench":"query","p50Ms":{...},"p99Ms":{...},...}.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { seriesId, shardOf } from '../src/model/index.js';
import { localShard, runQuery } from '../src/query/engine.js';
import type { QuerySpec, SubQuery } from '../src/query/model.js';
import { queryLast } from '../src/query/opentsdb.js';
import { LmdbShardStore, type SampleBatch } from '../src/storage/index.js';
import { Rng } from '../src/util/random.js';
import { type SeriesData, START_MS, TSBS_FIELDS, tsbs } from './datasets.js';

const { values: args } = parseArgs({
  options: {
    hosts: { type: 'string', default: '100' },
    hours: { type: 'string', default: '24' },
    runs: { type: 'string', default: '50' },
    quick: { type: 'boolean', default: false },
  },
});
const hosts = args.quick ? 10 : Number(args.hosts);
const hours = args.quick ? 13 : Number(args.hours);
const runs = args.quick ? 5 : Number(args.runs);
const SHARDS = 3;
const HOUR = 3_600_000;

function* batches(series: SeriesData[], batchSamples: number): Generator<SampleBatch> {
  const list = series.map((s) => s.series);
  const steps = Math.max(1, Math.floor(batchSamples / series.length));
  const total = series[0]?.ts.length ?? 0;
  for (let i0 = 0; i0 < total; i0 += steps) {
    const i1 = Math.min(total, i0 + steps);
    const length = (i1 - i0) * series.length;
    const b: SampleBatch = {
      series: list,
      seriesRef: new Uint32Array(length),
      timestamps: new Float64Array(length),
      values: new Float64Array(length),
      length,
    };
    let k = 0;
    for (let i = i0; i < i1; i++) {
      for (let s = 0; s < series.length; s++) {
        b.seriesRef[k] = s;
        b.timestamps[k] = series[s]!.ts[i]!;
        b.values[k++] = series[s]!.vals[i]!;
      }
    }
    yield b;
  }
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]! * 100) / 100;
};

async function main(): Promise<void> {
  const ds = tsbs(hosts, (hours * HOUR) / 10_000);
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-query-'));
  const stores: LmdbShardStore[] = [];
  try {
    const t0 = performance.now();
    for (let s = 0; s < SHARDS; s++) {
      const store = await LmdbShardStore.open(join(dir, `shard-${s}`));
      const mine = ds.series.filter((x) => shardOf(seriesId(x.series), SHARDS) === s);
      const pending: Promise<unknown>[] = [];
      for (const b of batches(mine, 20_000)) {
        pending.push(store.append(b));
        if (pending.length >= 8) await pending.shift();
      }
      await Promise.all(pending);
      await store.checkpoint();
      stores.push(store);
    }
    const loadSec = (performance.now() - t0) / 1000;
    console.log(
      `loaded ${ds.samples} samples (${ds.series.length} series) into ${SHARDS} stores in ${loadSec.toFixed(1)} s`,
    );
    const shards = stores.map(localShard);
    const end = START_MS + hours * HOUR - 1;
    const rng = new Rng(7);
    const hostList = (n: number) => {
      const set = new Set<string>();
      while (set.size < Math.min(n, hosts)) set.add(`host_${rng.int(0, hosts)}`);
      return [...set].join('|');
    };
    const rangeOf = (h: number) => {
      const start = START_MS + rng.int(0, hours - h + 1) * HOUR;
      return { start, end: Math.min(end, start + h * HOUR - 1) };
    };
    const metric = (f: string) => `cpu_${f}`;
    const shapes: Record<string, () => QuerySpec | 'last'> = {
      'single-groupby-1-1-1': () => ({
        ...rangeOf(1),
        queries: [
          {
            metric: metric(rng.pick(TSBS_FIELDS)),
            aggregator: 'max',
            filters: [{ tagk: 'hostname', type: 'literal_or', filter: hostList(1) }],
            downsample: { interval: 60_000, fn: 'max' },
          },
        ],
      }),
      'single-groupby-5-8-1': () => {
        const hs = hostList(8);
        return {
          ...rangeOf(1),
          queries: TSBS_FIELDS.slice(0, 5).map(
            (f): SubQuery => ({
              metric: metric(f),
              aggregator: 'max',
              filters: [{ tagk: 'hostname', type: 'literal_or', filter: hs }],
              downsample: { interval: 60_000, fn: 'max' },
            }),
          ),
        };
      },
      'cpu-max-all-8': () => {
        const hs = hostList(8);
        return {
          ...rangeOf(Math.min(12, hours)),
          queries: TSBS_FIELDS.map(
            (f): SubQuery => ({
              metric: metric(f),
              aggregator: 'max',
              filters: [{ tagk: 'hostname', type: 'literal_or', filter: hs }],
              downsample: { interval: HOUR, fn: 'max' },
            }),
          ),
        };
      },
      'double-groupby-all': () => ({
        ...rangeOf(Math.min(12, hours)),
        queries: TSBS_FIELDS.map(
          (f): SubQuery => ({
            metric: metric(f),
            aggregator: 'avg',
            filters: [{ tagk: 'hostname', type: 'wildcard', filter: '*', groupBy: true }],
            downsample: { interval: HOUR, fn: 'avg' },
          }),
        ),
      }),
      lastpoint: () => 'last',
    };
    const p50: Record<string, number> = {};
    const p99: Record<string, number> = {};
    const points: Record<string, number> = {};
    for (const [name, make] of Object.entries(shapes)) {
      const n =
        name === 'double-groupby-all' || name === 'lastpoint' ? Math.max(3, Math.floor(runs / 5)) : runs;
      const times: number[] = [];
      for (let i = 0; i < n; i++) {
        const spec = make();
        const t = performance.now();
        if (spec === 'last') {
          const out = queryLast(
            stores,
            { queries: TSBS_FIELDS.map((f) => ({ metric: metric(f), tags: {} })), backScan: 1 },
            end,
          );
          points[name] = out.length;
        } else {
          const out = await runQuery(spec, shards);
          points[name] = out.results.reduce((a, r) => a + r.ts.length, 0);
        }
        times.push(performance.now() - t);
      }
      p50[name] = pct(times, 0.5);
      p99[name] = pct(times, 0.99);
      console.log(
        `${name}: p50 ${p50[name]} ms, p99 ${p99[name]} ms over ${n} runs (${points[name]} points)`,
      );
    }
    console.log(
      JSON.stringify({
        bench: 'query',
        hosts,
        hours,
        samples: ds.samples,
        shards: SHARDS,
        transport: 'in-process',
        p50Ms: p50,
        p99Ms: p99,
      }),
    );
  } finally {
    for (const s of stores) await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
