/**
 * Kafka → cluster, exactly once in effect, against a real Apache Kafka broker and three real node
 * processes (`tidemark start --kafka-brokers ...`, S = 4 shards, R = 3):
 *
 *  - ~1M samples in 1,000-sample records across all partitions, in mixed formats (protobuf, line
 *    protocol, OpenTSDB JSON; the topic's format is `auto`), 0.1% bad records and some records produced
 *    to the wrong partition (their samples are forwarded to their own shard), while during consumption a
 *    leader is stopped with SIGTERM (it hands its leaderships away) and restarted, and another node is
 *    killed with kill -9 and restarted. Afterwards every node answers exactly the produced data (same
 *    count, same values, no duplicates) and the dead-letter topic holds exactly the bad records.
 *  - The whole cluster stopped and restarted on the same data dirs resumes from the stored offsets: it
 *    reads only the records produced since (no re-read from 0) and no record is missing.
 *
 * Seeded: TIDEMARK_SEED=n replays the same data and chaos choices.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaPartitionOf } from '../../src/client/kafka-producer.js';
import { WriteRequestSchema } from '../../src/gen/tidemark/v1/client_pb.js';
import { createTopic, DLQ_HEADERS, PlatformaticKafkaIo } from '../../src/ingest/kafka/index.js';
import type { Series } from '../../src/model/index.js';
import { Rng } from '../../src/util/random.js';
import { KAFKA_HOOK_TIMEOUT_MS, startKafka, type TestKafka } from '../helpers/kafka.js';
import { produce as produceRaw, type RawRecord } from '../ingest/kafka/helpers.js';
import { waitFor } from './fixtures/node-cluster.js';
import { type Client, ProcessCluster } from './fixtures/node-process.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);
const S = 4;
const IDS = ['k0', 'k1', 'k2'];
const TOPIC = 'metrics';
const DLQ = 'metrics-dlq';
const METRIC = 'kt_value';
const SERIES = 200;
const SERIES_PER_RECORD = 10;
const SAMPLES_PER_SERIES = 100; // 1,000 samples per record
const RECORDS = 1000; // 1,000,000 samples
const BASE_MS = 1_700_000_000_000;

const replay = () => `replay: TIDEMARK_SEED=${SEED} npx vitest run test/cluster/kafka-process.test.ts`;

/** The data: what was produced, per series, and the bad records' positions. */
class Workload {
  readonly rng = new Rng(SEED);
  readonly series: Series[] = [];
  readonly byPartition: number[][] = Array.from({ length: S }, () => []);
  /** Next timestamp step of each series. */
  private readonly step = new Int32Array(SERIES);
  private readonly rot = new Int32Array(S);
  /** host → (timestamp → value) of every good sample produced. */
  readonly expected = new Map<string, Map<number, number>>();
  /** Records produced so far per partition (= the next offset: a fresh topic, no transactions). */
  readonly ends = new Array<number>(S).fill(0);
  /** `partition/offset` → value of every bad record. */
  readonly bad = new Map<string, string>();
  samples = 0;
  misrouted = 0;
  records = 0;

  constructor() {
    for (let i = 0; i < SERIES; i++) {
      const s: Series = { metric: METRIC, tags: { host: `h${i}`, job: 'kafka' } };
      this.series.push(s);
      this.byPartition[kafkaPartitionOf(s, S)]!.push(i);
      this.expected.set(`h${i}`, new Map());
    }
    for (const p of this.byPartition) if (p.length < SERIES_PER_RECORD) throw new Error('too few series');
  }

  /** `n` good records (formats rotating, ~3% to a wrong partition) and `bad` bad ones among them. */
  batch(n: number, bad: number): RawRecord[] {
    const out: RawRecord[] = [];
    const badAt = new Set<number>();
    while (badAt.size < bad) badAt.add(this.rng.int(0, n));
    for (let k = 0; k < n; k++) {
      if (badAt.has(k)) out.push(this.badRecord());
      out.push(this.goodRecord());
    }
    return out;
  }

  private place(partition: number, value: Buffer | string): RawRecord {
    const offset = this.ends[partition]!++;
    this.records++;
    return { partition, value, key: `${partition}/${offset}` };
  }

  private badRecord(): RawRecord {
    const partition = this.rng.int(0, S);
    const value =
      this.rng.next() < 0.5 ? `{"metric": "${METRIC}", "timestamp": ` : `kt,host=bad value=oops ${BASE_MS}`;
    const r = this.place(partition, value);
    this.bad.set(`${partition}/${this.ends[partition]! - 1}`, value);
    return r;
  }

  private goodRecord(): RawRecord {
    const home = this.rng.int(0, S);
    const own = this.byPartition[home]!;
    const picked: number[] = [];
    for (let i = 0; i < SERIES_PER_RECORD; i++) picked.push(own[(this.rot[home]! + i) % own.length]!);
    this.rot[home] = (this.rot[home]! + SERIES_PER_RECORD) % own.length;
    const rows = picked.map((si) => {
      const from = this.step[si]!;
      this.step[si] = from + SAMPLES_PER_SERIES;
      const ts: number[] = [];
      const vs: number[] = [];
      const exp = this.expected.get(`h${si}`)!;
      for (let j = 0; j < SAMPLES_PER_SERIES; j++) {
        // 500 ms steps: a series spans < 1 h (the store's out-of-order window), so misrouted records,
        // applied after newer samples of their series, are still accepted.
        const t = BASE_MS + (from + j) * 500;
        // Quarter steps: exact in binary and in decimal text (line protocol, JSON).
        const v = (si * 7919 + from + j) / 4 - 1000;
        ts.push(t);
        vs.push(v);
        exp.set(t, v);
      }
      this.samples += ts.length;
      return { s: this.series[si]!, ts, vs };
    });
    const misrouted = this.rng.chance(0.03);
    if (misrouted) this.misrouted++;
    const partition = misrouted ? (home + 1) % S : home;
    const format = this.records % 3;
    let value: Buffer | string;
    if (format === 0) {
      const req = create(WriteRequestSchema, {
        batch: {
          series: rows.map((r) => ({
            series: { metric: r.s.metric, tags: r.s.tags },
            timestamps: r.ts.map((t) => BigInt(t)),
            values: r.vs,
          })),
        },
      });
      value = Buffer.from(toBinary(WriteRequestSchema, req));
    } else if (format === 1) {
      // Line protocol as Telegraf sends it: several lines per record, nanosecond timestamps.
      value = rows
        .flatMap((r) => r.ts.map((t, j) => `kt,host=${r.s.tags.host},job=kafka value=${r.vs[j]} ${t}000000`))
        .join('\n');
    } else {
      value = JSON.stringify(
        rows.flatMap((r) =>
          r.ts.map((t, j) => ({ metric: METRIC, timestamp: t, value: r.vs[j], tags: r.s.tags })),
        ),
      );
    }
    return this.place(partition, value);
  }
}

/** Produces in small sends: a record is up to ~50 KB and a produce batch must stay under the broker's 1 MB. */
async function produce(brokers: string[], topic: string, records: RawRecord[]): Promise<void> {
  for (let i = 0; i < records.length; i += 200) {
    await produceRaw(brokers, topic, records.slice(i, i + 200), 12);
  }
}

/** Per-partition gauges/counters from a node's /metrics (undefined when it does not answer). */
async function kafkaMetrics(httpPort: number): Promise<Map<string, Map<number, number>> | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) return undefined;
    const out = new Map<string, Map<number, number>>();
    for (const line of (await res.text()).split('\n')) {
      const m = /^(tidemark_kafka_[a-z_]+)\{partition="(\d+)"\} (\S+)$/.exec(line);
      if (m === null) continue;
      const per = out.get(m[1]!) ?? new Map<number, number>();
      per.set(Number(m[2]), Number(m[3]));
      out.set(m[1]!, per);
    }
    return out;
  } catch {
    return undefined;
  }
}

async function queryAll(c: Client): Promise<Map<string, { ts: number[]; vs: number[] }>> {
  const out = new Map<string, { ts: number[]; vs: number[] }>();
  for await (const m of c.query({ metric: METRIC }, { timeoutMs: 60_000 })) {
    for (const s of m.series) {
      const host = s.series!.tags.host!;
      const e = out.get(host) ?? { ts: [], vs: [] };
      for (const t of s.timestamps) e.ts.push(Number(t));
      for (const v of s.values) e.vs.push(v);
      out.set(host, e);
    }
  }
  return out;
}

/** Differences between what a node answers and what was produced (empty = exactly equal). */
function diff(w: Workload, got: Map<string, { ts: number[]; vs: number[] }>): string[] {
  const problems: string[] = [];
  let total = 0;
  for (const [host, exp] of w.expected) {
    const g = got.get(host) ?? { ts: [], vs: [] };
    total += g.ts.length;
    if (g.ts.length !== exp.size) problems.push(`${host}: ${g.ts.length} samples, produced ${exp.size}`);
    const seen = new Set<number>();
    for (let i = 0; i < g.ts.length; i++) {
      const t = g.ts[i]!;
      if (seen.has(t)) problems.push(`${host}: duplicate timestamp ${t}`);
      seen.add(t);
      const v = exp.get(t);
      if (v === undefined) problems.push(`${host}: unexpected timestamp ${t}`);
      else if (v !== g.vs[i]) problems.push(`${host}@${t}: value ${g.vs[i]}, produced ${v}`);
    }
  }
  for (const host of got.keys()) if (!w.expected.has(host)) problems.push(`unexpected series ${host}`);
  if (total !== w.samples) problems.push(`${total} samples stored, ${w.samples} produced`);
  return problems.slice(0, 20);
}

/** Every record of the dead-letter topic: key → value and source headers. */
async function readDeadLetters(kafka: TestKafka): Promise<Map<string, { value: string; offset: string }[]>> {
  const io = new PlatformaticKafkaIo({ brokers: kafka.brokers, clientId: 'test-dlq-reader' });
  const f = io.openFetcher(DLQ, 0);
  const out = new Map<string, { value: string; offset: string }[]>();
  try {
    let offset = 0n;
    for (;;) {
      const r = await f.fetch(offset, 100, 1 << 20);
      for (const rec of r.records) {
        const key = rec.key?.toString() ?? '';
        const headers = new Map(rec.headers.map(([k, v]) => [k?.toString(), v?.toString()]));
        const list = out.get(key) ?? [];
        list.push({ value: rec.value?.toString() ?? '', offset: headers.get(DLQ_HEADERS.offset) ?? '' });
        out.set(key, list);
      }
      offset = r.nextOffset;
      if (offset >= r.highWatermark) break;
    }
  } finally {
    f.close();
    await io.close();
  }
  return out;
}

describe('Kafka ingestion into three node processes', () => {
  let kafka: TestKafka;
  let cluster: ProcessCluster;
  const w = new Workload();

  beforeAll(async () => {
    kafka = await startKafka();
    await createTopic(kafka.brokers, TOPIC, S);
    await createTopic(kafka.brokers, DLQ, 1, { 'cleanup.policy': 'compact' });
    cluster = new ProcessCluster(IDS, [
      `--shards=${S}`,
      '--replication=3',
      `--kafka-brokers=${kafka.bootstrap}`,
      `--kafka-topic=${TOPIC}`,
      '--kafka-format=auto',
      `--kafka-dead-letter-topic=${DLQ}`,
    ]);
    await cluster.init();
  }, KAFKA_HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await cluster?.close();
    await kafka?.stop();
  }, 120_000);

  const http = (id: string) => cluster.ports.find((p) => p.id === id)!.http;
  const alive = new Set<string>();

  function start(id: string): void {
    cluster.start(id);
    alive.add(id);
  }

  async function ready(id: string): Promise<void> {
    await waitFor(
      async () => {
        const s = await cluster.client(id).status({}, { timeoutMs: 2000 });
        return s.replicas.length === S && s.replicas.every((r) => r.leader !== '' && r.applied >= r.commit);
      },
      `node ${id} ready (${cluster.output.get(id)?.join('')})`,
      90_000,
      200,
    );
  }

  /** Per partition, the largest applied offset any live node reports. */
  async function applied(): Promise<number[]> {
    const out = new Array<number>(S).fill(0);
    for (const id of alive) {
      const m = await kafkaMetrics(http(id));
      for (const [p, v] of m?.get('tidemark_kafka_applied_offset') ?? []) out[p] = Math.max(out[p]!, v);
    }
    return out;
  }

  async function leaderOf(shard: number): Promise<string> {
    for (const id of alive) {
      try {
        const s = await cluster.client(id).status({}, { timeoutMs: 2000 });
        const l = s.replicas.find((r) => r.shard === shard)?.leader;
        if (l) return l;
      } catch {
        // try the next node
      }
    }
    throw new Error(`no leader of shard ${shard} known`);
  }

  async function caughtUp(what: string): Promise<void> {
    await waitFor(
      async () => {
        const a = await applied();
        return a.every((v, p) => v === w.ends[p]) ? a : undefined;
      },
      `${what}: every partition applied up to ${w.ends.join(',')} (${replay()})`,
      120_000,
      250,
    );
  }

  it('stores exactly what was produced across SIGTERM, kill -9 and restarts; bad records go to the DLQ', async () => {
    const t0 = Date.now();
    // Phase 1 before the nodes start; 2 and 3 while they consume, between the faults.
    await produce(kafka.brokers, TOPIC, w.batch(400, 1));
    for (const id of IDS) start(id);
    for (const id of IDS) await ready(id);
    await waitFor(async () => (await applied()).some((v) => v > 0), 'consumption started', 60_000, 100);
    const progress1 = await applied();

    // A leader transfer: SIGTERM hands every leadership of the node away, then it comes back.
    const term = await leaderOf(0);
    const p2 = produce(kafka.brokers, TOPIC, w.batch(300, 0));
    expect(await cluster.stop(term)).toBe(0);
    alive.delete(term);
    await p2;
    start(term);
    await ready(term);
    const progress2 = await applied();

    // A crash: kill -9 the leader of shard 1 in the middle of consuming, then restart it.
    const p3 = produce(kafka.brokers, TOPIC, w.batch(RECORDS - 700, 1));
    const victim = await leaderOf(1);
    await cluster.kill9(victim);
    alive.delete(victim);
    await p3;
    start(victim);
    await ready(victim);
    await caughtUp('after the faults');
    console.log(
      `kafka e2e: ${w.records} records (${w.bad.size} bad, ${w.misrouted} misrouted), ${w.samples} samples; ` +
        `applied at SIGTERM of ${term}: ${progress1.join(',')}, at kill -9 of ${victim}: ${progress2.join(',')}; ` +
        `caught up after ${Date.now() - t0} ms`,
    );
    expect(w.samples).toBeGreaterThanOrEqual(1_000_000);

    // Status over gRPC (what `tidemark status` shows): per partition exactly one consumer, at the end offset.
    await waitFor(
      async () => {
        const consumers = new Array<string[]>(S).fill([]).map(() => [] as string[]);
        for (const id of IDS) {
          for (const k of (await cluster.client(id).status({}, { timeoutMs: 2000 })).kafka) {
            if (k.consuming && Number(k.appliedOffset) === w.ends[k.partition] && k.lag === 0n) {
              consumers[k.partition]!.push(id);
            }
          }
        }
        return consumers.every((c) => c.length === 1);
      },
      `status: one consumer per partition at the end offset (${replay()})`,
      30_000,
      250,
    );

    // Every node answers exactly what was produced.
    for (const id of IDS) {
      const problems = diff(w, await queryAll(cluster.client(id)));
      expect(problems, `node ${id} (${replay()})`).toEqual([]);
    }

    // The dead-letter topic holds exactly the bad records (a crash may repeat one, under the same key).
    const dead = await readDeadLetters(kafka);
    const want = [...w.bad.keys()].map((k) => `${TOPIC}/${k}`).sort();
    expect([...dead.keys()].sort(), replay()).toEqual(want);
    for (const [k, v] of w.bad) {
      for (const d of dead.get(`${TOPIC}/${k}`)!) {
        expect(d.value).toBe(v);
        expect(d.offset).toBe(k.split('/')[1]);
      }
    }
    // (The dead-letter counters are per process, lost with a killed node: kafka-node.test.ts checks them.)
  }, 420_000);

  it('resumes from the stored offsets after the whole cluster restarts', async () => {
    const before = [...w.ends];
    const codes = await Promise.all(IDS.map((id) => cluster.stop(id)));
    expect(codes).toEqual([0, 0, 0]);
    alive.clear();
    const records = w.records;
    await produce(kafka.brokers, TOPIC, w.batch(40, 0));
    const fresh = w.records - records;
    for (const id of IDS) start(id);
    for (const id of IDS) await ready(id);
    await caughtUp('after a full restart');
    // Counters restart with the processes: what they read is what was produced since, not the topic
    // from 0 (a leadership move right after start may re-read a batch; never the earlier records).
    let read = 0;
    for (const id of IDS) {
      const m = await kafkaMetrics(http(id));
      for (const v of m?.get('tidemark_kafka_records_total')?.values() ?? []) read += v;
    }
    console.log(`kafka restart: stored offsets ${before.join(',')}; read ${read} records, ${fresh} new`);
    expect(read).toBeGreaterThanOrEqual(fresh);
    expect(read).toBeLessThan(records / 4);
    for (const id of IDS) {
      expect(diff(w, await queryAll(cluster.client(id))), `node ${id} (${replay()})`).toEqual([]);
    }
  }, 300_000);
});
