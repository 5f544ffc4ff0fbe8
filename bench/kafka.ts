/**
 * Kafka benchmark (`npm run bench:kafka`): a real broker (scripts/kafka.sh) and three real `tidemark start`
 * processes (R = 3, S = BENCH_SHARDS partitions/shards) consuming one topic of protobuf records of 1,000
 * samples each, co-partitioned like the SDK producer does.
 *
 *   1. Throughput: BENCH_SAMPLES samples are produced before the nodes start; the rate is the samples
 *      committed (the shards' applied Kafka offsets, from each node's Status) per second between 10% and 90% of
 *      the backlog — sustained Kafka → committed samples/s.
 *   2. Latency at half that rate (open loop, BENCH_SECONDS): each record's produce-to-queryable time =
 *      from when it was due to be sent until its shard's applied offset passes it, polled every
 *      BENCH_POLL_MS (default 20) with the gRPC Status call of every node (so a figure is up to ~20 ms
 *      late). The producer's send-to-ack time is reported too.
 *
 * Last line: {"bench":"kafka","samplesPerSec":…,"e2eP50Ms":…,"e2eP99Ms":…}
 * Environment: BENCH_SAMPLES (default 3,000,000), BENCH_SECONDS (default 15), BENCH_SHARDS (default 8),
 * BENCH_LATENCY_RATE (samples/s; default half the measured rate), BENCH_POLL_MS.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { Producer } from '@platformatic/kafka';
import { kafkaPartitionOf } from '../src/client/kafka-producer.js';
import { WriteRequestSchema } from '../src/gen/tidemark/v1/client_pb.js';
import { createTopic } from '../src/ingest/kafka/index.js';
import type { Series } from '../src/model/index.js';
import { ProcessCluster } from '../test/cluster/fixtures/node-process.js';
import { startKafka } from '../test/helpers/kafka.js';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 3_000_000);
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
    for (;;) {
      const done = sum(await appliedOffsets(cluster));
      marks.push({ t: Date.now(), done });
      if (done >= backlog) break;
      if (Date.now() > deadline) throw new Error(`backlog not consumed: ${done} of ${backlog} records`);
      await sleep(100);
    }
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

    // 2. Latency at half the rate, open loop: a tick every 50 ms sends what is due.
    // Records per second; BENCH_LATENCY_RATE (samples/s) overrides half the measured rate.
    const rate = Number(process.env.BENCH_LATENCY_RATE ?? samplesPerSec / 2) / RECORD_SAMPLES;
    const sent: { partition: number; offset: number; at: number }[] = [];
    const seen = new Map<number, number>(); // index in `sent` → applied time
    let stop = false;
    const poller = (async () => {
      let first = 0;
      while (!stop || first < sent.length) {
        const applied = await appliedOffsets(cluster);
        const now = Date.now();
        for (let i = first; i < sent.length; i++) {
          const s = sent[i]!;
          if (!seen.has(i) && applied[s.partition]! > s.offset) seen.set(i, now);
        }
        while (first < sent.length && seen.has(first)) first++;
        if (stop && now - sent[sent.length - 1]!.at > 30_000) break;
        // Each poll costs the nodes a little CPU: not more often than this.
        await sleep(POLL_MS);
      }
    })();
    const start = Date.now();
    let produced = 0;
    // One send at a time (an idempotent producer's sequence numbers must arrive in order), each carrying
    // every record due by then; a record's time counts from when it was due (record i at start + i/rate),
    // so a slow send shows in the latency (open loop).
    const acks: number[] = [];
    while (Date.now() - start < SECONDS * 1000) {
      const due = Math.floor(((Date.now() - start) / 1000) * rate) - produced;
      if (due <= 0) {
        await sleep(5);
        continue;
      }
      const recs = Array.from({ length: due }, () => gen.make(base + 3_000_000));
      for (let i = 0; i < due; i++) {
        const r = recs[i]!;
        sent.push({
          partition: r.partition,
          offset: r.offset,
          at: start + ((produced + i + 1) * 1000) / rate,
        });
      }
      produced += due;
      const t = Date.now();
      await producer.send({
        messages: recs.map((r) => ({ topic: TOPIC, partition: r.partition, value: r.value })),
      });
      acks.push(Date.now() - t);
    }
    stop = true;
    await poller;
    const lat = sent
      .map((s, i) => (seen.get(i) ?? Number.NaN) - s.at)
      .filter(Number.isFinite)
      .sort((a, b) => a - b);
    const e2eP50Ms = Math.round(percentile(lat, 50));
    const e2eP99Ms = Math.round(percentile(lat, 99));
    console.log(
      `latency at ${Math.round(rate * RECORD_SAMPLES)} samples/s: ${lat.length} of ${sent.length} records seen; ` +
        `p50 ${e2eP50Ms} ms, p99 ${e2eP99Ms} ms; producer send-to-ack p50 ${percentile(
          acks.sort((a, b) => a - b),
          50,
        )} ms, p99 ${percentile(acks, 99)} ms`,
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
