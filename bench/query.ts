/**
 * Query benchmark (`npm run bench:query`). A benchmark, not a test: it prints numbers, never asserts.
 *
 * The TSBS cpu-only dataset (bench/datasets.ts; default 100 hosts x 10 metrics x 24 h at 10 s = 8.64 M
 * samples). Default: loaded through the SDK into a 3-node R=3 cluster of real `tidemark start` processes
 * (16 shards), queried over HTTP as Grafana does (POST /api/query, POST /api/query/last). With
 * `--in-process`: split by series id over `--shards` (default 3) LMDB stores in this process, queried through runQuery with
 * in-process shard functions (the engine alone: no gRPC, no Raft). TSBS query shapes:
 *  - single-groupby-1-1-1: 1 metric, 1 host, 1 h, max per minute;
 *  - single-groupby-5-8-1: 5 metrics, 8 hosts, 1 h, max per minute;
 *  - cpu-max-all-8: all 10 metrics, 8 hosts, 12 h, max per hour;
 *  - double-groupby-all: all 10 metrics, avg per host per hour, 12 h;
 *  - lastpoint: the newest sample of every series (/api/query/last logic, 1 h back-scan).
 * Options: --hosts N, --hours H, --runs R (per query), --quick, --in-process, --batch S (samples per load
 * write, default 20,000), --inflight N (load lanes: writes in flight, each lane over its own series in time
 * order, default 8), --modes (comma-separated read modes
 * measured one after the other on the same data: `index` = linearizable with ReadIndex (the default),
 * `stale` (no read barrier), `lease` = linearizable with leader leases: the nodes are restarted with
 * --raft-read-mode=lease; default `index,stale,lease`), --stale (= --modes stale), --shapes (comma-separated
 * subset of the shapes below), --cpu-prof DIR (the nodes are restarted after loading with `--cpu-prof` into
 * DIR and stopped gracefully at the end, so the profiles cover the queries only), --settle S (seconds to wait
 * after restarting the nodes, default 15: leadership moves to the preferred nodes meanwhile), --nodes N
 * (cluster size, default 3, always R = 3: with N > 3 every node lacks some shards and queries them through
 * ShardQueryService.ExecuteBatch on other nodes, queried through node a). Last line:
 * {"bench":"query","p50Ms":{...},"p99Ms":{...},"byMode":{mode:{p50Ms,p99Ms}},...}: p50Ms/p99Ms are the
 * first mode's. In cluster mode also `nodeCpuMsPerQuery` {mode:{shape:ms}}: the CPU the three node
 * processes used per query (from /proc, their idle CPU measured just before subtracted), a steadier
 * measure of a query's fixed cost than wall time on a shared machine.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
    runs: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'in-process': { type: 'boolean', default: false },
    stale: { type: 'boolean', default: false },
    batch: { type: 'string', default: '20000' },
    inflight: { type: 'string', default: '8' },
    modes: { type: 'string', default: 'index,stale,lease' },
    shapes: { type: 'string', default: '' },
    shards: { type: 'string', default: '3' },
    settle: { type: 'string', default: '15' },
    'cpu-prof': { type: 'string', default: '' },
    nodes: { type: 'string', default: '3' },
  },
});
type Mode = 'index' | 'stale' | 'lease';
const modes = (args.stale ? 'stale' : args.modes!).split(',').map((m) => m.trim()) as Mode[];
for (const m of modes) {
  if (!['index', 'stale', 'lease'].includes(m)) throw new Error(`--modes: unknown mode ${m}`);
}
const inProcess = args['in-process'] === true;
const cpuProf = args['cpu-prof'] ?? '';
const onlyShapes = (args.shapes ?? '')
  .split(',')
  .map((x) => x.trim())
  .filter((x) => x !== '');
const hosts = args.quick ? 10 : Number(args.hosts);
const hours = args.quick ? 13 : Number(args.hours);
const runs = args.runs !== undefined ? Number(args.runs) : args.quick ? 5 : 50;
const SHARDS = Number(args.shards);
const NODES = Number(args.nodes);
if (!Number.isInteger(NODES) || NODES < 1 || NODES > 9) throw new Error('--nodes: 1 to 9');
/** Preloaded into profiled nodes (--cpu-prof): samples every 500 us, writes DIR/cpu-<pid>.cpuprofile at exit. */
const profilePreload = (dir: string): string => `import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
const s = new Session();
s.connect();
s.post('Profiler.enable');
s.post('Profiler.setSamplingInterval', { interval: 500 });
s.post('Profiler.start');
process.on('exit', () => {
  s.post('Profiler.stop', (err, r) => {
    if (!err) writeFileSync(${JSON.stringify(dir)} + '/cpu-' + process.pid + '.cpuprofile', JSON.stringify(r.profile));
  });
});
`;
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

/**
 * CPU ms (user + system) the cluster's node processes have used so far, from /proc (Linux; 0 elsewhere).
 * Per query it is the fixed cost that wall time hides on a shared machine: every process's work counts,
 * whether or not it was on the critical path, and other programs' load does not.
 */
function clusterCpuMs(cluster: ProcessCluster | undefined): number {
  let ticks = 0;
  for (const proc of cluster?.procs.values() ?? []) {
    try {
      // Fields after the command (which may hold spaces): utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${proc.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      return 0;
    }
  }
  return ticks * 10; // USER_HZ = 100 on Linux
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]! * 100) / 100;
};

/** Waits until every node answers /readyz with 200. */
async function ready(cluster: ProcessCluster): Promise<void> {
  for (const p of cluster.ports) {
    for (;;) {
      const r = await fetch(`http://127.0.0.1:${p.http}/readyz`).catch(() => undefined);
      await r?.arrayBuffer();
      if (r?.status === 200) break;
      await new Promise((res) => setTimeout(res, 200));
    }
  }
}

/**
 * After a restart the nodes recover, elect and then move shard leaders to their preferred nodes; a query
 * meanwhile retries NOT_LEADER with backoff. Measuring starts once that has settled.
 */
async function settle(): Promise<void> {
  await new Promise((res) => setTimeout(res, Number(args.settle) * 1000));
}

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
      cluster = new ProcessCluster(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].slice(0, NODES), [
        '--shards=16',
        '--replication=3',
      ]);
      await cluster.init();
      for (const id of cluster.ids) cluster.start(id);
      const endpoints = cluster.ports.map((p) => `127.0.0.1:${p.grpc}`);
      // A long deadline: a loaded machine answers big writes slowly, and an attempt gets half of what is left.
      sdk = await TidemarkClient.connect({ endpoints, deadlineMs: 120_000 });
      http = `http://127.0.0.1:${cluster.ports[0]!.http}`;
      await ready(cluster);
      const batchSamples = Number(args.batch);
      const inflight = Number(args.inflight);
      let written = 0;
      let rejected = 0;
      let rejectReason = '';
      let nextReport = 0.1;
      const client = sdk;
      // `inflight` lanes, each over its own series, writing them in time order one batch after the other: a
      // series never receives an older batch after a newer one (the store's out-of-order window is 1 h).
      const lane = async (k: number): Promise<void> => {
        const mine = ds.series.filter((_, i) => i % inflight === k);
        for (const b of batches(mine, batchSamples)) {
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
          for (let attempt = 1; ; attempt++) {
            try {
              const r = await client.write(input);
              if (r.rejected.length > 0) {
                rejected += r.rejected.length;
                rejectReason = r.rejected[0]!.reason;
              }
              break;
            } catch (err) {
              if (attempt >= 5) throw err;
              console.error(`load: write failed (${String(err)}), retrying`);
            }
          }
          written += b.length;
          if (written >= nextReport * ds.samples) {
            nextReport += 0.1;
            const secs = (performance.now() - t0) / 1000;
            console.log(
              `load: ${((100 * written) / ds.samples).toFixed(0)}% in ${secs.toFixed(0)} s (${Math.round(written / secs)} samples/s)`,
            );
          }
        }
      };
      await Promise.all(Array.from({ length: inflight }, (_, k) => lane(k)));
      if (rejected > 0) console.error(`load: ${rejected} samples rejected (e.g. ${rejectReason})`);
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
      `loaded ${ds.samples} samples (${ds.series.length} series) ${inProcess ? `into ${SHARDS} stores` : `into a ${NODES}-node R=${Math.min(3, NODES)} cluster`} in ${loadSec.toFixed(1)} s`,
    );
    const shards = stores.map(localShard);
    const end = START_MS + hours * HOUR - 1;
    // Re-seeded per mode: every mode answers the same queries.
    let rng = new Rng(7);
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
    for (const name of onlyShapes) if (!(name in shapes)) throw new Error(`--shapes: unknown shape ${name}`);
    if (cpuProf !== '' && cluster !== undefined) {
      // `--cpu-prof` is not allowed in NODE_OPTIONS: the nodes (which inherit it) preload a module that runs
      // the inspector's profiler and writes the profile at exit. Restarted now, the profiles cover the queries.
      await Promise.all(cluster.ids.map((id) => cluster!.stop(id)));
      mkdirSync(cpuProf, { recursive: true });
      const preload = join(cpuProf, 'profile-preload.mjs');
      writeFileSync(preload, profilePreload(cpuProf));
      process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`;
      for (const id of cluster.ids) cluster.start(id);
      await ready(cluster);
      await settle();
    }
    const byMode: Record<string, { p50Ms: Record<string, number>; p99Ms: Record<string, number> }> = {};
    const byCpu: Record<string, Record<string, number>> = {};
    const byNodeCpu: Record<string, Record<string, number>> = {};
    for (const mode of inProcess ? (['index'] as Mode[]) : modes) {
      if (mode === 'lease' && cluster !== undefined) {
        // Same data, restarted with leader-lease reads.
        await Promise.all(cluster.ids.map((id) => cluster!.stop(id)));
        cluster.extraFlags.push('--raft-read-mode=lease');
        for (const id of cluster.ids) cluster.start(id);
        await ready(cluster);
        await settle();
      }
      const consistency = mode === 'stale' ? '?consistency=stale' : '';
      rng = new Rng(7);
      const p50: Record<string, number> = {};
      const p99: Record<string, number> = {};
      const cpuP50: Record<string, number> = {};
      const points: Record<string, number> = {};
      const nodeCpu: Record<string, number> = {};
      for (const [name, make] of Object.entries(shapes)) {
        if (onlyShapes.length > 0 && !onlyShapes.includes(name)) continue;
        const n =
          name === 'double-groupby-all' || name === 'lastpoint' ? Math.max(3, Math.floor(runs / 5)) : runs;
        const times: number[] = [];
        // In-process, all the work is this process's: its CPU time per query is a steadier measure than
        // wall time on a shared, loaded machine.
        const cpu: number[] = [];
        let cpu0 = 0;
        let wall0 = 0;
        // The nodes' idle CPU (ticks, heartbeats of every shard), measured over 2 s without queries, is
        // subtracted: it accrues with wall time, which other programs' load stretches.
        let idlePerMs = 0;
        if (cluster !== undefined) {
          const c0 = clusterCpuMs(cluster);
          const w0 = performance.now();
          await new Promise((res) => setTimeout(res, 2000));
          idlePerMs = (clusterCpuMs(cluster) - c0) / (performance.now() - w0);
        }
        // Untimed runs first (JIT warm-up, connection set-up).
        for (let i = -3; i < n; i++) {
          if (i === 0) {
            cpu0 = clusterCpuMs(cluster);
            wall0 = performance.now();
          }
          const spec = make();
          const t = performance.now();
          const c = process.cpuUsage();
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
            const out = (await post(`${http}/api/query${consistency}`, toOpenTsdb(spec))) as {
              dps: object;
            }[];
            points[name] = out.reduce((a, r) => a + Object.keys(r.dps).length, 0);
          } else {
            const out = await runQuery(spec, shards);
            points[name] = out.results.reduce((a, r) => a + r.ts.length, 0);
          }
          if (i >= 0) {
            times.push(performance.now() - t);
            const d = process.cpuUsage(c);
            cpu.push((d.user + d.system) / 1000);
          }
        }
        if (cluster !== undefined) {
          const used = clusterCpuMs(cluster) - cpu0 - idlePerMs * (performance.now() - wall0);
          nodeCpu[name] = Math.round((used / n) * 10) / 10;
        }
        p50[name] = pct(times, 0.5);
        if (inProcess) cpuP50[name] = pct(cpu, 0.5);
        p99[name] = pct(times, 0.99);
        console.log(
          `${mode} ${name}: p50 ${p50[name]} ms, p99 ${p99[name]} ms over ${n} runs (${points[name]} points)${inProcess ? `, CPU p50 ${cpuP50[name]} ms` : `, nodes' CPU ${nodeCpu[name]} ms/query`}`,
        );
      }
      byMode[mode] = { p50Ms: p50, p99Ms: p99 };
      byCpu[mode] = cpuP50;
      byNodeCpu[mode] = nodeCpu;
    }
    const first = Object.values(byMode)[0]!;
    console.log(
      JSON.stringify({
        bench: 'query',
        hosts,
        hours,
        samples: ds.samples,
        loadSec: Math.round(loadSec * 10) / 10,
        shards: inProcess ? SHARDS : 16,
        transport: inProcess ? 'in-process' : `http, ${NODES} nodes R=${Math.min(3, NODES)}`,
        consistency: inProcess ? 'in-process' : Object.keys(byMode)[0],
        p50Ms: first.p50Ms,
        p99Ms: first.p99Ms,
        byMode,
        ...(inProcess ? { cpuP50Ms: Object.values(byCpu)[0] ?? {} } : { nodeCpuMsPerQuery: byNodeCpu }),
      }),
    );
  } finally {
    await sdk?.close();
    // A profiled node writes its profile on a graceful exit only.
    if (cpuProf !== '' && cluster !== undefined)
      await Promise.all(cluster.ids.map((id) => cluster!.stop(id)));
    await cluster?.close();
    for (const s of stores) await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
