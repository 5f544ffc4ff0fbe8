/**
 * Kafka benchmark (`npm run bench:kafka`): a real broker (scripts/kafka.sh) and three real `tidemark start`
 * processes (R = 3, S = BENCH_SHARDS partitions/shards) consuming one topic of protobuf records of 1,000
 * samples each, co-partitioned like the SDK producer does.
 *
 *   1. Throughput: BENCH_SAMPLES samples are produced before the nodes start; the rate is the samples
 *      committed (the shards' applied Kafka offsets, from each node's Status) per second between 10% and 90% of
 *      the backlog — sustained Kafka → committed samples/s. Also printed: how long until every replica (not
 *      only the leaders) had applied the backlog, and the CPU each process used.
 *   2. Latency at half that rate (open loop, BENCH_SECONDS): each record's produce-to-queryable time =
 *      from when it was due to be sent until its shard's applied offset passes it, polled every
 *      BENCH_POLL_MS (default 20) with the gRPC Status call of each node, each node on its own (so a figure
 *      is up to ~20 ms late). The records are encoded before the phase starts, so the producer keeps to its
 *      schedule. Printed per record: due → send, send → broker ack, ack → applied; the CPU each process
 *      used, and the nodes' CPU seconds per million samples (comparable across runs on a shared machine).
 *
 * Last line: {"bench":"kafka","samplesPerSec":…,"e2eP50Ms":…,"e2eP99Ms":…}
 * Environment: BENCH_SAMPLES (default 10,000,000: with 3,000,000 the 10%..90% window lasted 2–3 s right after
 * the nodes started, a burst rather than a sustained rate), BENCH_SECONDS (default 15), BENCH_SHARDS (default 8),
 * BENCH_LATENCY_RATE (samples/s; default half the measured rate), BENCH_POLL_MS, BENCH_NODE_FLAGS (extra
 * `tidemark start` flags, space-separated).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { create, toBinary } from '@bufbuild/protobuf';
import { Producer } from '@platformatic/kafka';
import { kafkaPartitionOf } from '../src/client/kafka-producer.js';
import { WriteRequestSchema } from '../src/gen/tidemark/v1/client_pb.js';
import { createTopic } from '../src/ingest/kafka/index.js';
import type { Series } from '../src/model/index.js';
import { ProcessCluster } from '../test/cluster/fixtures/node-process.js';
import { startKafka } from '../test/helpers/kafka.js';
import { processCpuSeconds, USER_HZ } from './proc.js';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 10_000_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const S = Number(process.env.BENCH_SHARDS ?? 8);
const IDS = ['b0', 'b1', 'b2'];
const TOPIC = 'bench';
/** How often the latency phase reads the applied offsets (a Status call to every node). */
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 20);
const SERIES_PER_RECORD = 10;
const PER_SERIES = 100;
const RECORD_SAMPLES = SERIES_PER_RECORD * PER_SERIES;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Record generator: per partition, rotating over its series with increasing timestamps. */
class Records {
  private readonly byPartition: Series[][] = Array.from({ length: S }, () => []);
  private readonly step = new Map<Series, number>();
  private readonly rot = new Int32Array(S);
  readonly ends = new Array<number>(S).fill(0);
  private next = 0;

  constructor() {
    for (let i = 0; this.byPartition.some((p) => p.length < SERIES_PER_RECORD * 4); i++) {
      const s: Series = { metric: 'bench_value', tags: { host: `h${i}`, job: 'bench' } };
      this.byPartition[kafkaPartitionOf(s, S)]!.push(s);
      this.step.set(s, 0);
    }
  }

  /** The next record: its partition, offset and bytes. */
  make(baseMs: number): { partition: number; offset: number; value: Buffer } {
    const partition = this.next++ % S;
    const list = this.byPartition[partition]!;
    const series = [];
    for (let i = 0; i < SERIES_PER_RECORD; i++) {
      const s = list[(this.rot[partition]! + i) % list.length]!;
      const from = this.step.get(s)!;
      this.step.set(s, from + PER_SERIES);
      series.push({
        series: { metric: s.metric, tags: s.tags },
        timestamps: Array.from({ length: PER_SERIES }, (_, j) => BigInt(baseMs + (from + j) * 10)),
        values: Array.from({ length: PER_SERIES }, (_, j) => Math.sin(from + j) * 100),
      });
    }
    this.rot[partition] = (this.rot[partition]! + SERIES_PER_RECORD) % list.length;
    const value = Buffer.from(
      toBinary(WriteRequestSchema, create(WriteRequestSchema, { batch: { series } })),
    );
    return { partition, offset: this.ends[partition]!++, value };
  }
}

async function appliedOffsets(cluster: ProcessCluster): Promise<number[]> {
  const out = new Array<number>(S).fill(0);
  // The gRPC Status call (StatusResponse.kafka): a few hundred bytes, unlike a /metrics render, which under
  // load took long enough to dominate the latency it was measuring.
  await Promise.all(
    cluster.ports.map(async (p) => {
      try {
        const res = await cluster.client(p.id).status({}, { deadline: Date.now() + 2000 });
        for (const k of res.kafka) {
          out[k.partition] = Math.max(out[k.partition]!, Number(k.appliedOffset));
        }
      } catch {
        // a node not answering yet
      }
    }),
  );
  return out;
}

/** Per shard: the highest commit index any node reports, and the lowest applied index over its replicas. */
async function raftIndexes(
  cluster: ProcessCluster,
): Promise<{ commit: Map<number, number>; minApplied: Map<number, number> }> {
  const commit = new Map<number, number>();
  const minApplied = new Map<number, number>();
  await Promise.all(
    cluster.ports.map(async (p) => {
      try {
        const res = await cluster.client(p.id).status({}, { deadline: Date.now() + 2000 });
        for (const r of res.replicas) {
          commit.set(r.shard, Math.max(commit.get(r.shard) ?? 0, Number(r.commit)));
          minApplied.set(r.shard, Math.min(minApplied.get(r.shard) ?? Infinity, Number(r.applied)));
        }
      } catch {
        for (let s = 0; s < S; s++) minApplied.set(s, -1); // a node not answering: not known to be done
      }
    }),
  );
  return { commit, minApplied };
}

/**
 * CPU seconds used so far (Linux /proc; undefined elsewhere): per node process, by the broker (the java
 * process started for this bench), by this process, and by the whole machine (busy, and its core count).
 */
function cpuSeconds(cluster: ProcessCluster): Record<string, number> | undefined {
  const ofPid = processCpuSeconds;
  try {
    const out: Record<string, number> = {};
    for (const [id, proc] of cluster.procs) out[id] = ofPid(proc.pid);
    // The broker: the process test/helpers/kafka.ts started for us (it watches our pid).
    let broker = 0;
    for (const d of readdirSync('/proc')) {
      if (!/^[0-9]+$/.test(d)) continue;
      try {
        if (readFileSync(`/proc/${d}/environ`, 'latin1').includes(`KAFKA_WATCH_PID=${process.pid}\0`))
          broker += ofPid(Number(d));
      } catch {
        // gone, or not ours to read
      }
    }
    out.broker = broker;
    out.bench = ofPid(process.pid);
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    out.machine = (sum(cpu.slice(0, 8)) - cpu[3]! - cpu[4]!) / USER_HZ;
    out.cores = cpus().length;
    return out;
  } catch {
    return undefined;
  }
}

/** CPU seconds the three nodes used between two cpuSeconds() readings. */
function nodeCpu(a: Record<string, number> | undefined, b: Record<string, number> | undefined): number {
  if (a === undefined || b === undefined) return Number.NaN;
  return IDS.reduce((n, id) => n + (b[id] ?? 0) - (a[id] ?? 0), 0);
}

/** "b0 0.45, b1 0.41, …": cores used per process between two cpuSeconds() readings over `ms`. */
function cpuLine(a: Record<string, number> | undefined, b: Record<string, number> | undefined, ms: number) {
  if (a === undefined || b === undefined) return 'n/a';
  return Object.keys(b)
    .filter((k) => k !== 'cores')
    .map((k) => `${k} ${(((b[k]! - (a[k] ?? 0)) * 1000) / ms).toFixed(2)}`)
    .join(', ')
    .concat(` (cores used; ${b.cores} cores)`);
}

const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const kafka = await startKafka();
  const cluster = new ProcessCluster(IDS, [
    `--shards=${S}`,
    '--replication=3',
    `--kafka-brokers=${kafka.bootstrap}`,
    `--kafka-topic=${TOPIC}`,
    '--kafka-format=protobuf',
    // Extra node flags for experiments, e.g. BENCH_NODE_FLAGS='--kafka-max-in-flight=1'.
    ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter((f) => f !== ''),
  ]);
  const producer = new Producer({
    clientId: 'tidemark-bench',
    bootstrapBrokers: kafka.brokers,
    idempotent: true,
    acks: -1,
    autocreateTopics: false,
  });
  try {
    await createTopic(kafka.brokers, TOPIC, S);
    const gen = new Records();
    const total = Math.ceil(SAMPLES / RECORD_SAMPLES);
    const base = Date.now() - 3_600_000;
    const t0 = Date.now();
    for (let i = 0; i < total; i += 40) {
      const recs = Array.from({ length: Math.min(40, total - i) }, () => gen.make(base));
      await producer.send({
        messages: recs.map((r) => ({ topic: TOPIC, partition: r.partition, value: r.value })),
      });
    }
    console.log(`produced ${total} records (${total * RECORD_SAMPLES} samples) in ${Date.now() - t0} ms`);

    // 1. Throughput: consume the backlog.
    await cluster.init();
    for (const id of IDS) cluster.start(id);
    const backlog = sum(gen.ends);
    const marks: { t: number; done: number }[] = [];
    const deadline = Date.now() + 600_000;
    let cpuFirst: Record<string, number> | undefined;
    let lo0 = 0; // records already applied when cpuFirst was read
    for (;;) {
      const done = sum(await appliedOffsets(cluster));
      marks.push({ t: Date.now(), done });
      if (done > 0 && cpuFirst === undefined) {
        cpuFirst = cpuSeconds(cluster);
        lo0 = done;
      }
      if (done >= backlog) break;
      if (Date.now() > deadline) throw new Error(`backlog not consumed: ${done} of ${backlog} records`);
      await sleep(100);
    }
    // The leaders applying the backlog is what the rate counts; the third replica of each shard may still
    // be behind (a majority commits). How long until every replica has applied it, for comparison.
    const leadersDone = Date.now();
    const commits = await raftIndexes(cluster);
    for (;;) {
      const now = await raftIndexes(cluster);
      if ([...commits.commit].every(([shard, c]) => (now.minApplied.get(shard) ?? -1) >= c)) break;
      if (Date.now() > deadline) throw new Error('replicas did not apply the backlog');
      await sleep(100);
    }
    const allDone = Date.now();
    const first = marks.find((m) => m.done > 0)!.t;
    const cpuDone = cpuSeconds(cluster);
    // Node CPU per million samples: how much work the nodes do per sample, whatever share of the
    // (shared) machine they got; compare with the latency phase's.
    console.log(
      `backlog CPU: ${cpuLine(cpuFirst, cpuDone, allDone - first)}; nodes ${(
        nodeCpu(cpuFirst, cpuDone) / ((backlog - lo0) * RECORD_SAMPLES * 1e-6)
      ).toFixed(2)} CPU s per 1M samples`,
    );
    console.log(
      `backlog: leaders applied it in ${leadersDone - first} ms from the first commit ` +
        `(${Math.round((backlog * RECORD_SAMPLES * 1000) / Math.max(1, leadersDone - first))} samples/s), ` +
        `every replica ${allDone - first} ms ` +
        `(${Math.round((backlog * RECORD_SAMPLES * 1000) / Math.max(1, allDone - first))} samples/s)`,
    );
    const at = (frac: number) => marks.find((m) => m.done >= frac * backlog)!;
    const lo = at(0.1);
    const hi = at(0.9);
    const samplesPerSec = Math.round(
      ((hi.done - lo.done) * RECORD_SAMPLES * 1000) / Math.max(1, hi.t - lo.t),
    );
    console.log(
      `throughput: ${samplesPerSec} samples/s (10%..90% of ${backlog} records in ${hi.t - lo.t} ms; ` +
        `first commit ${marks.find((m) => m.done > 0)!.t - marks[0]!.t} ms after the nodes started)`,
    );

    // 2. Latency at half the rate, open loop: a tick every 5 ms sends what is due.
    // Records per second; BENCH_LATENCY_RATE (samples/s) overrides half the measured rate.
    const rate = Number(process.env.BENCH_LATENCY_RATE ?? samplesPerSec / 2) / RECORD_SAMPLES;
    // Every record of this phase is encoded before it starts: encoding one (protobuf-es, 1,000 samples)
    // takes ~2 ms, so encoding them on the fly made the producer fall ~1-2 s behind its own schedule at
    // ~320 records/s, and that delay counted as produce-to-queryable latency.
    const pending = Array.from({ length: Math.ceil(SECONDS * rate) + 1 }, () => gen.make(base + 3_000_000));
    const sent: { partition: number; offset: number; at: number; send: number; ack: number }[] = [];
    const seen = new Map<number, number>(); // index in `sent` → applied time
    // Per partition, the indices in `sent` of its records (offsets ascending) and the first not yet seen.
    const byPartition: number[][] = Array.from({ length: S }, () => []);
    const unseen = new Int32Array(S);
    const observe = (partition: number, applied: number, now: number) => {
      const list = byPartition[partition]!;
      let i = unseen[partition]!;
      for (; i < list.length && sent[list[i]!]!.offset < applied; i++) seen.set(list[i]!, now);
      unseen[partition] = i;
    };
    let stop = false;
    // One poller per node, each on its own: a record counts as seen when the first answer showing its
    // offset applied arrives, not when the slowest of the three nodes has answered too.
    const pollers = cluster.ports.map(async (port) => {
      while (!stop || seen.size < sent.length) {
        try {
          const res = await cluster.client(port.id).status({}, { deadline: Date.now() + 2000 });
          const now = Date.now();
          for (const k of res.kafka) observe(k.partition, Number(k.appliedOffset), now);
        } catch {
          // a node not answering
        }
        if (stop && Date.now() - sent[sent.length - 1]!.at > 30_000) break;
        // Each poll costs the nodes a little CPU: not more often than this.
        await sleep(POLL_MS);
      }
    });
    const start = Date.now();
    const cpuStart = cpuSeconds(cluster);
    let produced = 0;
    // One send at a time (an idempotent producer's sequence numbers must arrive in order), each carrying
    // every record due by then; a record's time counts from when it was due (record i at start + i/rate),
    // so a slow send shows in the latency (open loop).
    const acks: number[] = [];
    while (Date.now() - start < SECONDS * 1000 && produced < pending.length) {
      // At most 40 records per send (as in the backlog phase): a producer that fell behind once sent
      // hundreds at a time, which the broker refused (MESSAGE_TOO_LARGE: over 1 MB for one partition).
      const due = Math.min(
        40,
        Math.min(pending.length, Math.floor(((Date.now() - start) / 1000) * rate)) - produced,
      );
      if (due <= 0) {
        await sleep(5);
        continue;
      }
      const recs = pending.slice(produced, produced + due);
      const t = Date.now();
      for (let i = 0; i < due; i++) {
        const r = recs[i]!;
        byPartition[r.partition]!.push(sent.length);
        sent.push({
          partition: r.partition,
          offset: r.offset,
          at: start + ((produced + i + 1) * 1000) / rate,
          send: t,
          ack: 0,
        });
      }
      produced += due;
      await producer.send({
        messages: recs.map((r) => ({ topic: TOPIC, partition: r.partition, value: r.value })),
      });
      const acked = Date.now();
      acks.push(acked - t);
      for (let i = sent.length - due; i < sent.length; i++) sent[i]!.ack = acked;
    }
    stop = true;
    console.log(`latency phase CPU: ${cpuLine(cpuStart, cpuSeconds(cluster), Date.now() - start)}`);
    await Promise.all(pollers);
    console.log(
      `latency phase: nodes ${(nodeCpu(cpuStart, cpuSeconds(cluster)) / (sent.length * RECORD_SAMPLES * 1e-6)).toFixed(2)} ` +
        'CPU s per 1M samples (until every record was seen)',
    );
    const lat = sent
      .map((s, i) => (seen.get(i) ?? Number.NaN) - s.at)
      .filter(Number.isFinite)
      .sort((a, b) => a - b);
    const e2eP50Ms = Math.round(percentile(lat, 50));
    const e2eP99Ms = Math.round(percentile(lat, 99));
    // Where the time went, per record: due → handed to the producer (the generator keeping up), the
    // producer's send → broker ack, and ack → seen applied (consume, propose, commit, apply, poll).
    const stage = (f: (s: (typeof sent)[number], i: number) => number) => {
      const d = sent
        .map(f)
        .filter(Number.isFinite)
        .sort((a, b) => a - b);
      return `p50 ${Math.round(percentile(d, 50))} ms, p99 ${Math.round(percentile(d, 99))} ms`;
    };
    console.log(
      `latency at ${Math.round(rate * RECORD_SAMPLES)} samples/s: ${lat.length} of ${sent.length} records seen; ` +
        `p50 ${e2eP50Ms} ms, p99 ${e2eP99Ms} ms (due→send ${stage((s) => s.send - s.at)}; ` +
        `send→ack ${stage((s) => s.ack - s.send)}; ack→applied ${stage(
          (s, i) => (seen.get(i) ?? Number.NaN) - s.ack,
        )}; ${acks.length} sends)`,
    );
    console.log(JSON.stringify({ bench: 'kafka', samplesPerSec, e2eP50Ms, e2eP99Ms }));
  } finally {
    await producer.close().catch(() => undefined);
    await Promise.all(IDS.map((id) => (cluster.procs.has(id) ? cluster.stop(id, 10_000) : undefined)));
    await cluster.close();
    await kafka.stop();
  }
}

main().catch((err) => {
  console.error(err);
  for (const e of (err as { errors?: { response?: unknown }[] }).errors ?? []) {
    console.error(
      JSON.stringify(e.response, (_, v) => (typeof v === 'bigint' ? String(v) : v)).slice(0, 2000),
    );
  }
  process.exit(1);
});
