/**
 * Peers benchmark (`npm run bench:peers -- --scale N --duration D`): Tidemark (1 node R=1 and 3 nodes R=3)
 * side by side with VictoriaMetrics single-node and QuestDB, on the same machine in one run, with the same
 * data and the same client concurrency. A benchmark, not a test: it prints numbers and never asserts —
 * except that every system's query answers equal the first system's (the cross-check), reported per shape.
 *
 * Per system, one after the other (never two at once): start it on free loopback ports with a temp data dir;
 * load the TSBS cpu-only data (bench/peers/workload.ts) as line-protocol bodies through `/write` with
 * `--concurrency` writers (ingest samples/s = samples / time until the last acknowledgement); make the data
 * visible; run the five TSBS query shapes (the same seeded parameters for every system, one at a time, p50 /
 * p99); read the peak RSS (VmHWM, summed over a system's processes); stop it gracefully (every system flushes)
 * and measure the bytes allocated under its data dirs / samples.
 *
 * Options: --scale hosts (10), --duration data span (1h), --concurrency writers (8), --batch lines per request
 * (1000 = 10k samples), --runs queries per shape (20; double-groupby-all and lastpoint a fifth, at least 3),
 * --systems comma list (tidemark-r1,tidemark-r3,victoriametrics,questdb), --shards (8), --out dir for the
 * result JSON and the SVG plots (bench/peers/results). Last line:
 *   {"bench":"peers","systems":{"tidemark-r1":{ingestSamplesPerSec,bytesPerSample,p50Ms,p99Ms,rssMb},...},...}
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { processCpuSeconds } from '../proc.js';
import { ingestChart, latencyChart } from './svg.js';
import {
  diskBreakdown,
  diskBytes,
  peakRssMb,
  peerPath,
  peerVersions,
  QuestDbSystem,
  type System,
  TidemarkSystem,
  VictoriaMetricsSystem,
} from './systems.js';
import {
  type CheckResult,
  crossCheck,
  lineBatches,
  makeQueries,
  type Normalized,
  parseDuration,
  percentile,
  type QueryParams,
  Rng,
  rateSeries,
  SHAPES,
  type Shape,
  toleranceOf,
} from './workload.js';

const { values: args } = parseArgs({
  options: {
    scale: { type: 'string', default: '10' },
    duration: { type: 'string', default: '1h' },
    concurrency: { type: 'string', default: '8' },
    batch: { type: 'string', default: '1000' },
    runs: { type: 'string', default: '20' },
    systems: { type: 'string', default: 'tidemark-r1,tidemark-r3,victoriametrics,questdb' },
    shards: { type: 'string', default: '8' },
    out: { type: 'string', default: 'bench/peers/results' },
    seed: { type: 'string', default: '1' },
  },
});

const hosts = Number(args.scale);
const durationMs = parseDuration(args.duration!);
const concurrency = Number(args.concurrency);
const batchLines = Number(args.batch);
const runs = Number(args.runs);
const shards = Number(args.shards);
const seed = Number(args.seed);

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

interface SystemResult {
  ingestSamplesPerSec: number;
  bytesPerSample: number;
  p50Ms: Record<string, number>;
  p99Ms: Record<string, number>;
  rssMb: number;
  version: string;
  ingestSec: number;
  /** CPU seconds (user + system, every process of the system) per million samples during ingest. */
  ingestCpuSPerMSamples: number;
  visibleMs: number;
  diskBytes: number;
  writeRetries: number;
  retryReasons: Record<string, number>;
}

/** The largest entries (3 levels down) of a system's data dirs, for the detail file. */
function topDisk(dirs: string[]): Record<string, number> {
  const all = dirs.flatMap((d, i) => Object.entries(diskBreakdown(d, 3, dirs.length > 1 ? `${i}:` : '')));
  return Object.fromEntries(all.sort((a, b) => b[1] - a[1]).slice(0, 12));
}

/** Closed-loop load: `concurrency` writers, each sending its own bodies (its own hosts) one after another. */
async function ingest(
  urls: string[],
  bodies: string[][],
  samplesPer: number[][],
): Promise<{
  ms: number;
  events: [number, number][];
  retries: number;
  retryReasons: Record<string, number>;
}> {
  let retries = 0;
  const retryReasons: Record<string, number> = {};
  const events: [number, number][] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      const url = urls[w % urls.length]!;
      const mine = bodies[w] ?? [];
      for (let i = 0; i < mine.length; i++) {
        for (let attempt = 1; ; attempt++) {
          let status = 0;
          let text = '';
          try {
            const res = await fetch(url, { method: 'POST', body: mine[i] });
            text = await res.text();
            status = res.status;
          } catch (err) {
            text = String(err);
          }
          if (status === 204 || status === 200) break;
          // Overload answers (429, 5xx) and dropped connections are retried, as a loader does; writes are
          // idempotent in every system here (same series, same timestamps).
          if ((status === 0 || status === 429 || status >= 500) && attempt < 20) {
            retries++;
            const reason = status === 0 ? text.slice(0, 80) : `HTTP ${status} ${text.slice(0, 80)}`;
            retryReasons[reason] = (retryReasons[reason] ?? 0) + 1;
            await new Promise((r) => setTimeout(r, 50 * attempt));
            continue;
          }
          throw new Error(`${url}: HTTP ${status} ${text.slice(0, 300)}`);
        }
        events.push([performance.now() - t0, samplesPer[w]![i]!]);
      }
    }),
  );
  return { ms: performance.now() - t0, events, retries, retryReasons };
}

async function runQueries(
  sys: System,
  queries: Map<Shape, QueryParams[]>,
): Promise<{ p50: Record<string, number>; p99: Record<string, number>; answers: Map<Shape, Normalized[]> }> {
  const p50: Record<string, number> = {};
  const p99: Record<string, number> = {};
  const answers = new Map<Shape, Normalized[]>();
  for (const [shape, list] of queries) {
    const times: number[] = [];
    const got: Normalized[] = [];
    for (const q of list) {
      const t = performance.now();
      const r = await sys.query(q);
      times.push(performance.now() - t);
      got.push(r);
    }
    p50[shape] = percentile(times, 0.5);
    p99[shape] = percentile(times, 0.99);
    answers.set(shape, got);
    log(
      `  ${shape}: p50 ${p50[shape]} ms, p99 ${p99[shape]} ms over ${list.length} queries (${got[0]?.size ?? 0} points in the first)`,
    );
  }
  return { p50, p99, answers };
}

async function main(): Promise<void> {
  const started = performance.now();
  const load0 = loadavg();
  const data = lineBatches(hosts, durationMs, batchLines, concurrency, seed);
  const samplesPer = data.bodies.map((list) =>
    list.map((b) => {
      let n = 0;
      for (let i = 0; i < b.length; i++) if (b.charCodeAt(i) === 10) n++;
      return n * 10;
    }),
  );
  log(
    `data: TSBS cpu-only, ${hosts} hosts x ${args.duration} at 10 s = ${data.lines} lines, ${data.samples} samples, ${data.bodies.flat().length} bodies of <= ${batchLines} lines; ${concurrency} writers, each with its own hosts (TSBS --hash-workers)`,
  );
  const rng = new Rng(seed * 7919 + 7);
  const queries = new Map<Shape, QueryParams[]>();
  for (const shape of SHAPES) {
    const n =
      shape === 'double-groupby-all' || shape === 'lastpoint' ? Math.max(3, Math.floor(runs / 5)) : runs;
    queries.set(shape, makeQueries(shape, n, hosts, (data.lines / hosts) * 10_000, rng));
  }

  const versions = peerVersions();
  const wanted = args
    .systems!.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const make = (name: string): System => {
    switch (name) {
      case 'tidemark-r1':
        return new TidemarkSystem(name, 1, 1, shards);
      case 'tidemark-r3':
        return new TidemarkSystem(name, 3, 3, shards);
      case 'victoriametrics':
        return new VictoriaMetricsSystem(peerPath('victoriametrics'), versions.victoriametrics ?? '?');
      case 'questdb':
        return new QuestDbSystem(peerPath('questdb'), versions.questdb ?? '?');
      default:
        throw new Error(`unknown system ${name}`);
    }
  };

  const results: Record<string, SystemResult> = {};
  const timelines: Record<string, [number, number][]> = {};
  const answers = new Map<string, Map<Shape, Normalized[]>>();
  const diskTop: Record<string, Record<string, number>> = {};
  for (const name of wanted) {
    const sys = make(name);
    log(`${name} ${sys.version}: starting`);
    try {
      await sys.start();
      const cpu0 = sys.pids().reduce((a, pid) => a + processCpuSeconds(pid), 0);
      const ing = await ingest(sys.writeUrls(), data.bodies, samplesPer);
      const ingestCpu = sys.pids().reduce((a, pid) => a + processCpuSeconds(pid), 0) - cpu0;
      const ingestCpuSPerMSamples = Math.round((ingestCpu / (data.samples / 1e6)) * 100) / 100;
      const tv = performance.now();
      await sys.makeVisible(data.lines, data.lastMs);
      const visibleMs = Math.round(performance.now() - tv);
      const ingestSamplesPerSec = Math.round(data.samples / (ing.ms / 1000));
      log(
        `  ingest: ${ingestSamplesPerSec} samples/s (${(ing.ms / 1000).toFixed(2)} s, ${ingestCpuSPerMSamples} CPU s per M samples, ${ing.retries} retries ${JSON.stringify(ing.retryReasons)}), visible after ${visibleMs} ms more`,
      );
      timelines[name] = ing.events;
      const q = await runQueries(sys, queries);
      answers.set(name, q.answers);
      const rssMb = sys.pids().reduce((a, pid) => a + peakRssMb(pid), 0);
      await sys.stop();
      const disk = sys.dataDirs().reduce((a, d) => a + diskBytes(d), 0);
      diskTop[name] = topDisk(sys.dataDirs());
      if (sys instanceof TidemarkSystem) {
        const compacted = await sys.compactedStoreBytes();
        diskTop[name]!.compactedStores = compacted;
        log(
          `  compacted copies of the shard stores: ${compacted} bytes = ${(compacted / data.samples).toFixed(3)} bytes/sample`,
        );
      }
      log(`  largest on disk: ${JSON.stringify(diskTop[name])}`);
      const bytesPerSample = Math.round((disk / data.samples) * 1000) / 1000;
      log(`  peak RSS ${rssMb} MiB; disk ${disk} bytes = ${bytesPerSample} bytes/sample`);
      results[name] = {
        ingestSamplesPerSec,
        bytesPerSample,
        p50Ms: q.p50,
        p99Ms: q.p99,
        rssMb,
        version: sys.version,
        ingestSec: Math.round(ing.ms) / 1000,
        ingestCpuSPerMSamples,
        visibleMs,
        diskBytes: disk,
        writeRetries: ing.retries,
        retryReasons: ing.retryReasons,
      };
    } finally {
      await sys.cleanup();
    }
  }

  // Cross-check: every system's answer to every query against the first system's.
  const ref = wanted[0]!;
  const check: Record<
    string,
    Record<string, { equal: boolean; queries: number; points: number; first?: CheckResult }>
  > = {};
  let allEqual = true;
  for (const name of wanted.slice(1)) {
    check[name] = {};
    for (const shape of SHAPES) {
      const want = answers.get(ref)?.get(shape) ?? [];
      const got = answers.get(name)?.get(shape) ?? [];
      const list = queries.get(shape)!;
      let points = 0;
      let first: CheckResult | undefined;
      list.forEach((qp, i) => {
        const c = crossCheck(want[i] ?? new Map(), got[i] ?? new Map(), toleranceOf(qp));
        points += c.points;
        if (!c.equal && !first) first = c;
      });
      check[name][shape] = { equal: !first, queries: list.length, points, ...(first ? { first } : {}) };
      if (first) {
        allEqual = false;
        log(`cross-check ${name} vs ${ref}, ${shape}: DIFFERENT ${JSON.stringify(first)}`);
      }
    }
  }
  log(`cross-check against ${ref}: ${allEqual ? 'every answer equal' : 'DIFFERENCES (above)'}`);

  const maxMs = Math.max(...Object.values(timelines).flatMap((e) => e.map((x) => x[0])), 1);
  const interval = Math.min(5000, Math.max(100, Math.round(maxMs / 40)));
  const series: Record<string, [number, number][]> = {};
  for (const [n, e] of Object.entries(timelines)) series[n] = rateSeries(e, interval);
  const lat: Record<string, Record<string, { p50: number; p99: number }>> = {};
  for (const [n, r] of Object.entries(results)) {
    lat[n] = Object.fromEntries(SHAPES.map((s) => [s, { p50: r.p50Ms[s] ?? 0, p99: r.p99Ms[s] ?? 0 }]));
  }
  const load1 = loadavg();
  const summary = {
    bench: 'peers',
    systems: results,
    scale: hosts,
    duration: args.duration,
    samples: data.samples,
    concurrency,
    batchLines,
    shards,
    crossCheckEqual: allEqual,
    load: {
      start: load0.map((x) => Math.round(x * 100) / 100),
      end: load1.map((x) => Math.round(x * 100) / 100),
    },
  };
  mkdirSync(args.out!, { recursive: true });
  const tag = `scale${hosts}-${args.duration}`;
  writeFileSync(
    join(args.out!, `peers-${tag}-ingest.svg`),
    ingestChart(
      `Ingest, TSBS cpu-only ${hosts} hosts x ${args.duration}, ${concurrency} writers (${interval} ms windows)`,
      series,
    ),
  );
  writeFileSync(
    join(args.out!, `peers-${tag}-latency.svg`),
    latencyChart(`Query latency, TSBS cpu-only ${hosts} hosts x ${args.duration}`, SHAPES, lat),
  );
  writeFileSync(
    join(args.out!, `peers-${tag}.json`),
    `${JSON.stringify({ ...summary, crossCheck: check, disk: diskTop, ingestRate: series }, null, 1)}\n`,
  );
  log(
    `plots and details in ${args.out}/peers-${tag}*; total ${Math.round((performance.now() - started) / 1000)} s`,
  );
  console.log(JSON.stringify(summary));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
