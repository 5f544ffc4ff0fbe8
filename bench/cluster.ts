/**
 * Cluster benchmark (`npm run bench:cluster`): real `tidemark start` processes on free loopback ports, each
 * with its own temp data dir.
 *
 *   1. 3 nodes, R=3: acknowledged ingest samples/s through the SDK (TidemarkClient, concurrent writers,
 *      1000-sample batches of 10 series each, 100 series per writer) and through HTTP `/write` (line
 *      protocol, concurrent posts), each after an untimed warm-up that writes every series of the phase
 *      once (steady-state ingest, not series creation); p50/p99 write
 *      latency at half the measured SDK rate (open loop); then kill -9 of shard 0's leader and the time to
 *      the first acknowledged write to shard 0.
 *   2. 1 node, R=1: acknowledged ingest samples/s through the SDK.
 *
 * Bounded runtime (about 2 minutes). The last line is one JSON object:
 *   {"bench":"cluster","r3":{...},"r1":{...},"failoverMs":...,"nodeCpuSPerMSamples":{...}}
 * where nodeCpuSPerMSamples is the node processes' CPU seconds per million acknowledged samples of each
 * throughput phase (Linux /proc): steadier across runs on a shared machine than the rates.
 * Environment: BENCH_SECONDS (seconds per throughput phase, default 10), BENCH_WRITERS (default 64),
 * BENCH_SHARDS (default 8).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TidemarkClient } from '../src/client/index.js';
import { type Series, seriesId, shardOf } from '../src/model/index.js';
import type { NodePorts } from '../test/cluster/fixtures/node-cluster.js';
import { ProcessCluster } from '../test/cluster/fixtures/node-process.js';
import { processCpuSeconds } from './proc.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const WRITERS = Number(process.env.BENCH_WRITERS ?? 64);
const SHARDS = Number(process.env.BENCH_SHARDS ?? 8);
/** BENCH_CLUSTERS: `r3`, `r1` or both (default), for quicker A/B runs of one configuration. */
const CLUSTERS = (process.env.BENCH_CLUSTERS ?? 'r3,r1').split(',');
const BATCH = 1000;
const SERIES_PER_BATCH = 10;
/** Hosts each writer rotates through; a rotation (HOSTS / SERIES_PER_BATCH writes) touches all its series. */
const HOSTS = 100;
const ROTATION = HOSTS / SERIES_PER_BATCH;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * BENCH_PROFILE_DIR: marks each throughput phase with `<dir>/on` (holding the phase name) so that nodes started
 * with the profiling preload (NODE_OPTIONS=--import=./bench/cluster-profile.mjs) profile exactly that phase.
 */
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR;
async function profiled<T>(phase: string, fn: () => Promise<T>): Promise<T> {
  if (PROFILE_DIR === undefined) return fn();
  writeFileSync(join(PROFILE_DIR, 'on'), phase);
  await sleep(300);
  try {
    return await fn();
  } finally {
    rmSync(join(PROFILE_DIR, 'on'), { force: true });
    await sleep(500);
  }
}

async function waitFor<T>(
  fn: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The test suite's process cluster (same launcher, ports and data dirs) plus an SDK client. */
class Cluster extends ProcessCluster {
  sdk!: TidemarkClient;

  constructor(ids: string[], replication: number) {
    super(ids, [`--shards=${SHARDS}`, `--replication=${replication}`]);
  }

  async boot(): Promise<void> {
    await this.init();
    for (const id of this.ids) this.start(id);
    this.sdk = await TidemarkClient.connect({
      endpoints: this.ports.map((p) => `127.0.0.1:${p.grpc}`),
      deadlineMs: 10_000,
    });
    for (const p of this.ports) {
      await waitFor(
        async () => {
          const s = await this.sdk.status(`127.0.0.1:${p.grpc}`, { deadlineMs: 2000 });
          return (
            s.replicas.length > 0 &&
            s.replicas.every((r) => r.leader !== '' && r.applied >= r.commit) &&
            (await this.httpReady(p))
          );
        },
        `node ${p.id} ready: ${this.output.get(p.id)?.join('')}`,
        60_000,
      );
    }
  }

  private async httpReady(p: NodePorts): Promise<boolean> {
    const res = await fetch(`http://127.0.0.1:${p.http}/readyz`);
    await res.arrayBuffer();
    return res.status === 200;
  }

  override async close(): Promise<void> {
    await this.sdk?.close().catch(() => {});
    await super.close();
  }
}

class Feed {
  private t = 1_700_000_000_000;
  private round = 0;
  constructor(
    private readonly w: number,
    private readonly metric: string,
  ) {}

  next(): {
    series: { metric: string; tags: Record<string, string> };
    timestamps: number[];
    values: number[];
  }[] {
    const per = BATCH / SERIES_PER_BATCH;
    const out = [];
    // Rotate through HOSTS hosts per writer so batches spread over the shards.
    const base = (this.round++ * SERIES_PER_BATCH) % HOSTS;
    const t0 = this.t;
    this.t += per;
    for (let s = 0; s < SERIES_PER_BATCH; s++) {
      const timestamps = new Array<number>(per);
      const values = new Array<number>(per);
      for (let i = 0; i < per; i++) {
        timestamps[i] = t0 + i;
        values[i] = (i * 7 + s) % 101;
      }
      out.push({
        series: { metric: this.metric, tags: { writer: `w${this.w}`, host: `h${base + s}` } },
        timestamps,
        values,
      });
    }
    return out;
  }

  lines(): string {
    const per = BATCH / SERIES_PER_BATCH;
    const base = (this.round++ * SERIES_PER_BATCH) % HOSTS;
    const t0 = this.t;
    this.t += per;
    const parts: string[] = [];
    for (let s = 0; s < SERIES_PER_BATCH; s++) {
      for (let i = 0; i < per; i++) {
        parts.push(`${this.metric},writer=w${this.w},host=h${base + s} value=${(i * 7 + s) % 101} ${t0 + i}`);
      }
    }
    return parts.join('\n');
  }
}

/** CPU seconds the cluster's node processes have used so far (Linux /proc). */
function nodeCpuSeconds(c: Cluster): number {
  let s = 0;
  for (const p of c.procs.values()) s += processCpuSeconds(p.pid);
  return s;
}

/**
 * Closed loop: `writers` concurrent loops for `seconds`; acknowledged samples/s, and the nodes' CPU seconds per
 * million acknowledged samples (steadier than the rate on a shared machine: other load slows the nodes down
 * without making them spend more CPU per sample).
 */
async function closedLoop(
  c: Cluster,
  seconds: number,
  writers: number,
  once: (w: number) => Promise<number>,
): Promise<{ samplesPerSec: number; writesPerSec: number; errors: number; nodeCpuSPerMSamples: number }> {
  const cpu0 = nodeCpuSeconds(c);
  const end = performance.now() + seconds * 1000;
  let samples = 0;
  let writes = 0;
  let errors = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      while (performance.now() < end) {
        try {
          // (not `samples += await …`: that reads `samples` before the await and loses concurrent adds)
          const n = await once(w);
          samples += n;
          writes++;
        } catch {
          errors++;
          await sleep(20);
        }
      }
    }),
  );
  const el = (performance.now() - t0) / 1000;
  const cpu = nodeCpuSeconds(c) - cpu0;
  return {
    samplesPerSec: Math.round(samples / el),
    writesPerSec: writes / el,
    errors,
    nodeCpuSPerMSamples: samples > 0 ? Math.round((cpu / (samples / 1e6)) * 100) / 100 : 0,
  };
}

async function sdkThroughput(c: Cluster, metric: string, seconds: number) {
  const feeds = Array.from({ length: WRITERS }, (_, w) => new Feed(w, metric));
  // Warm-up (untimed): connections, the shard map, and every series the phase writes (each writer one
  // rotation over its hosts), so the timed loop measures steady-state ingest into known series, not series
  // creation. On a loaded machine a first write can exceed the SDK's per-attempt deadline (outcome
  // unknown); the timed loop below counts only acknowledged writes.
  await Promise.all(
    feeds.map(async (f) => {
      for (let i = 0; i < ROTATION; i++) await c.sdk.write(f.next()).catch(() => {});
    }),
  );
  return profiled(`${metric}-${c.ids.length}`, () =>
    closedLoop(c, seconds, WRITERS, async (w) => (await c.sdk.write(feeds[w]!.next())).accepted),
  );
}

async function lineProtocolThroughput(c: Cluster, metric: string, seconds: number) {
  const feeds = Array.from({ length: WRITERS }, (_, w) => new Feed(w, metric));
  const urls = c.ports.map((p) => `http://127.0.0.1:${p.http}/write?precision=ms`);
  // Warm-up as for the SDK: every series of the phase exists before the timed loop.
  await Promise.all(
    feeds.map(async (f, w) => {
      for (let i = 0; i < ROTATION; i++) {
        await fetch(urls[w % urls.length]!, { method: 'POST', body: f.lines() })
          .then((r) => r.arrayBuffer())
          .catch(() => {});
      }
    }),
  );
  return profiled(`${metric}-${c.ids.length}`, () =>
    closedLoop(c, seconds, WRITERS, async (w) => {
      const res = await fetch(urls[w % urls.length]!, { method: 'POST', body: feeds[w]!.lines() });
      await res.arrayBuffer();
      if (res.status !== 204) throw new Error(`HTTP ${res.status}`);
      return BATCH;
    }),
  );
}

/** Open loop at `rate` writes/s for `seconds`: latency percentiles of acknowledged writes. */
async function latencyAt(c: Cluster, metric: string, rate: number, seconds: number) {
  const feed = new Feed(0, metric);
  const lat: number[] = [];
  const inflight: Promise<void>[] = [];
  const t0 = performance.now();
  const total = Math.max(1, Math.round(rate * seconds));
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const batch = feed.next();
    const s = performance.now();
    inflight.push(
      c.sdk.write(batch).then(
        () => {
          lat.push(performance.now() - s);
        },
        () => {},
      ),
    );
  }
  await Promise.all(inflight);
  lat.sort((a, b) => a - b);
  const pct = (q: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]! : 0);
  return { p50Ms: round(pct(0.5)), p99Ms: round(pct(0.99)), n: lat.length };
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

function seriesOnShard(shard: number, metric: string): Series {
  for (let i = 0; ; i++) {
    const s = { metric, tags: { host: `f${i}` } };
    if (shardOf(seriesId(s), SHARDS) === shard) return s;
  }
}

/** kill -9 of shard 0's leader → ms until the first acknowledged write to shard 0 (through a survivor). */
async function failover(c: Cluster): Promise<number> {
  const s = seriesOnShard(0, 'bench_failover');
  await c.sdk.write({ series: s, timestamps: [1], values: [1] });
  const leader = await waitFor(
    async () => {
      for (const p of c.ports) {
        const st = await c.sdk.status(`127.0.0.1:${p.grpc}`, { deadlineMs: 2000 });
        const r = st.replicas.find((x) => x.shard === 0);
        if (r?.leader) return r.leader;
      }
      return undefined;
    },
    'a leader of shard 0',
    10_000,
  );
  const survivors = c.ports.filter((p) => p.id !== leader).map((p) => `127.0.0.1:${p.grpc}`);
  const sc = await TidemarkClient.connect({ endpoints: survivors, deadlineMs: 1000 });
  try {
    await c.kill9(leader);
    const killedAt = performance.now();
    let t = 2;
    for (;;) {
      try {
        const r = await sc.write({ series: s, timestamps: [t++], values: [1] }, { deadlineMs: 1000 });
        if (r.accepted === 1) return Math.round(performance.now() - killedAt);
      } catch {
        // not yet
      }
      if (performance.now() - killedAt > 30_000) return -1;
      await sleep(10);
    }
  } finally {
    await sc.close().catch(() => {});
  }
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

async function main(): Promise<void> {
  const started = performance.now();
  const result = {
    bench: 'cluster',
    r3: { sdkSamplesPerSec: 0, lineProtocolSamplesPerSec: 0, writeP99Ms: 0 },
    r1: { sdkSamplesPerSec: 0, lineProtocolSamplesPerSec: 0 },
    failoverMs: 0,
    /** The nodes' CPU seconds per million acknowledged samples, per phase (compare these across runs). */
    nodeCpuSPerMSamples: { r3: { sdk: 0, lineProtocol: 0 }, r1: { sdk: 0, lineProtocol: 0 } },
  };

  const r3 = new Cluster(['a', 'b', 'c'], 3);
  if (CLUSTERS.includes('r3'))
    try {
      await r3.boot();
      log(`r3: cluster ready after ${Math.round(performance.now() - started)} ms`);
      const sdk = await sdkThroughput(r3, 'bench_sdk', SECONDS);
      log(`r3 sdk: ${JSON.stringify(sdk)}`);
      result.r3.sdkSamplesPerSec = sdk.samplesPerSec;
      result.nodeCpuSPerMSamples.r3.sdk = sdk.nodeCpuSPerMSamples;
      const lp = await lineProtocolThroughput(r3, 'bench_lp', SECONDS);
      log(`r3 line protocol: ${JSON.stringify(lp)}`);
      result.r3.lineProtocolSamplesPerSec = lp.samplesPerSec;
      result.nodeCpuSPerMSamples.r3.lineProtocol = lp.nodeCpuSPerMSamples;
      const lat = await latencyAt(r3, 'bench_lat', Math.max(1, sdk.writesPerSec / 2), Math.min(SECONDS, 8));
      log(`r3 latency at ${(sdk.writesPerSec / 2).toFixed(1)} writes/s: ${JSON.stringify(lat)}`);
      result.r3.writeP99Ms = lat.p99Ms;
      result.failoverMs = await failover(r3);
      log(`r3 failover: ${result.failoverMs} ms`);
    } finally {
      await r3.close();
    }

  const r1 = new Cluster(['solo'], 1);
  if (CLUSTERS.includes('r1'))
    try {
      await r1.boot();
      const sdk = await sdkThroughput(r1, 'bench_sdk', SECONDS);
      log(`r1 sdk: ${JSON.stringify(sdk)}`);
      result.r1.sdkSamplesPerSec = sdk.samplesPerSec;
      result.nodeCpuSPerMSamples.r1.sdk = sdk.nodeCpuSPerMSamples;
      const lp = await lineProtocolThroughput(r1, 'bench_lp', SECONDS);
      log(`r1 line protocol: ${JSON.stringify(lp)}`);
      result.r1.lineProtocolSamplesPerSec = lp.samplesPerSec;
      result.nodeCpuSPerMSamples.r1.lineProtocol = lp.nodeCpuSPerMSamples;
    } finally {
      await r1.close();
    }
  log(`total ${Math.round((performance.now() - started) / 1000)} s`);
  console.log(JSON.stringify(result));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
