/**
 * Query benchmark (`npm run bench:query`). A benchmark, not a test: it prints numbers, never asserts.
 *
 * The TSBS cpu-only dataset (bench/datasets.ts; default 100 hosts x 10 metrics x 24 h at 10 s = 8.64 M
 * samples). Default: loaded through the SDK into a 3-node R=3 cluster of real `tidemark start` processes
 * (16 shards), queried over HTTP as Grafana does (POST /api/query, POST /api/query/last). With
 * `--in-process`: split by series id over 3 LMDB stores in this process, queried through runQuery with
 * in-process shard functions (the engine alone: no gRPC, no Raft). TSBS query shapes:
 *  - single-groupby-1-1-1: 1 metric, 1 host, 1 h, max per minute;
 *  - single-groupby-5-8-1: 5 metrics, 8 hosts, 1 h, max per minute;
 *  - cpu-max-all-8: all 10 metrics, 8 hosts, 12 h, max per hour;
 *  - double-groupby-all: all 10 metrics, avg per host per hour, 12 h;
 *  - lastpoint: the newest sample of every series (/api/query/last logic, 1 h back-scan).
 * Options: --hosts N, --hours H, --runs R (per query), --quick, --in-process, --stale (no ReadIndex). Last line:
 * {"bench":"query","p50Ms":{...},"p99Ms":{...},...}.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TidemarkClient } from '../src/client/index.js';
import { seriesId, shardOf } from '../src/model/index.js';
import { localShard, runQuery } from '../src/query/engine.js';
import type { QuerySpec, SubQuery } from '../src/query/model.js';
import { queryLast } from '../src/query/opentsdb.js';
import { LmdbShardStore, type SampleBatch } from '../src/storage/index.js';
import { Rng } from '../src/util/random.js';
import { ProcessCluster } from '../test/cluster/fixtures/node-process.js';
import { type SeriesData, START_MS, TSBS_FIELDS, tsbs } from './datasets.js';

const { values: args } = parseArgs({
  options: {
    hosts: { type: 'string', default: '100' },
    hours: { type: 'string', default: '24' },
    runs: { type: 'string', default: '50' },
    quick: { type: 'boolean', default: false },
    'in-process': { type: 'boolean', default: false },
    stale: { type: 'boolean', default: false },
  },
});
const consistency = args.stale ? '?consistency=stale' : '';
const inProcess = args['in-process'] === true;
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

async function post(url: string, body: unknown): Promise<unknown> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** A spec as the OpenTSDB POST body Grafana would send. */
function toOpenTsdb(spec: QuerySpec): unknown {
  const unit = (ms: number) => (ms % HOUR === 0 ? `${ms / HOUR}h` : `${ms / 60_000}m`);
  return {
    start: spec.start,
    end: spec.end,
    msResolution: true,
    queries: spec.queries.map((q) => ({
      metric: q.metric,
      aggregator: q.aggregator,
      ...(q.downsample
        ? {
            downsample: `${q.downsample.interval === 'all' ? '0all' : unit(q.downsample.interval)}-${q.downsample.fn}`,
          }
        : {}),
      filters: (q.filters ?? []).map((f) => ({
        type: f.type,
        tagk: f.tagk,
        filter: f.filter,
        groupBy: f.groupBy ?? false,
      })),
    })),
  };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]! * 100) / 100;
};

async function main(): Promise<void> {
  const ds = tsbs(hosts, (hours * HOUR) / 10_000);
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-query-'));
  const stores: LmdbShardStore[] = [];
  let cluster: ProcessCluster | undefined;
  let sdk: TidemarkClient | undefined;
  let http = '';
  try {
    const t0 = performance.now();
    if (!inProcess) {
      cluster = new ProcessCluster(['a', 'b', 'c'], ['--shards=16', '--replication=3']);
      await cluster.init();
      for (const id of cluster.ids) cluster.start(id);
      const endpoints = cluster.ports.map((p) => `127.0.0.1:${p.grpc}`);
      sdk = await TidemarkClient.connect({ endpoints, deadlineMs: 30_000 });
      http = `http://127.0.0.1:${cluster.ports[0]!.http}`;
      for (const p of cluster.ports) {
        for (;;) {
          const r = await fetch(`http://127.0.0.1:${p.http}/readyz`).catch(() => undefined);
          await r?.arrayBuffer();
          if (r?.status === 200) break;
          await new Promise((res) => setTimeout(res, 200));
        }
      }
      const pending: Promise<unknown>[] = [];
      for (const b of batches(ds.series, 10_000)) {
        const input = b.series.map((series) => ({
          series,
          timestamps: [] as number[],
          values: [] as number[],
        }));
        for (let i = 0; i < b.length; i++) {
          const x = input[b.seriesRef[i]!]!;
          x.timestamps.push(b.timestamps[i]!);
          x.values.push(b.values[i]!);
        }
        // A loader retries: under a loaded machine a write may time out (writes are idempotent).
        const client = sdk;
        pending.push(
          (async () => {
            for (let attempt = 1; ; attempt++) {
              try {
                return await client.write(input);
              } catch (err) {
                if (attempt >= 5) throw err;
                console.error(`load: write failed (${String(err)}), retrying`);
              }
            }
          })(),
        );
        if (pending.length >= 16) await pending.shift();
      }
      await Promise.all(pending);
    }
    for (let s = 0; inProcess && s < SHARDS; s++) {
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
      `loaded ${ds.samples} samples (${ds.series.length} series) ${inProcess ? `into ${SHARDS} stores` : 'into a 3-node R=3 cluster'} in ${loadSec.toFixed(1)} s`,
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
        if (spec === 'last' && !inProcess) {
          const out = (await post(`${http}/api/query/last${consistency}`, {
            queries: TSBS_FIELDS.map((f) => ({ metric: metric(f), tags: {} })),
            backScan: 0,
          })) as unknown[];
          points[name] = out.length;
        } else if (spec === 'last') {
          const out = queryLast(
            stores,
            { queries: TSBS_FIELDS.map((f) => ({ metric: metric(f), tags: {} })), backScan: 1 },
            end,
          );
          points[name] = out.length;
        } else if (!inProcess) {
          const out = (await post(`${http}/api/query${consistency}`, toOpenTsdb(spec))) as { dps: object }[];
          points[name] = out.reduce((a, r) => a + Object.keys(r.dps).length, 0);
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
        shards: inProcess ? SHARDS : 16,
        transport: inProcess ? 'in-process' : 'http, 3 nodes R=3',
        consistency: args.stale ? 'stale' : 'linearizable',
        p50Ms: p50,
        p99Ms: p99,
      }),
    );
  } finally {
    await sdk?.close();
    await cluster?.close();
    for (const s of stores) await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
