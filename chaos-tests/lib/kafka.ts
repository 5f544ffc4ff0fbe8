/**
 * The Kafka-ingest workload of a chaos run (docs/chaos.md): a real single-node KRaft broker (scripts/kafka.sh,
 * jars cached in ~/.cache/tidemark), a topic with one partition per shard, producers that write uniquely
 * identifiable samples through the SDK's co-partitioning producer (`tidemark/client/kafka`), and a lag
 * monitor that samples, per partition, the topic's end offset and the offset the shard has applied.
 *
 * Kafka traffic does not go through Toxiproxy: the faults are the Tidemark ones (between nodes, on nodes),
 * and what is checked is that the nodes' consumers apply every acknowledged record exactly once across them.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Consumer } from '@platformatic/kafka';
import { kafkaPartitionOf, TidemarkKafkaProducer } from '../../src/client/kafka-producer.js';
import { createTopic } from '../../src/ingest/kafka/index.js';
import type { Rng } from '../../src/util/random.js';
import { fetchKafka, startKafka, type TestKafka } from '../../test/helpers/kafka.js';
import type { ChaosCluster } from './cluster.js';
import type { HistoryRecorder, WriteOp } from './history.js';
import type { LagSample } from './kafka-checkers.js';

/** The metric of every Kafka-ingested chaos sample (series differ by the `s` tag, `k<producer>-<n>`). */
export const CHAOS_KAFKA_METRIC = 'chaos_kafka_sample';
export const CHAOS_KAFKA_TOPIC = 'chaos';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves the broker's jars (a Maven download the first time); throws when that is impossible. */
export async function kafkaAvailable(): Promise<void> {
  await fetchKafka();
}

export class ChaosKafka {
  private constructor(
    readonly broker: TestKafka,
    readonly topic: string,
    readonly partitions: number,
  ) {}

  /** Starts a broker on free ports (data in a temp dir) and creates the topic with `partitions` partitions. */
  static async start(partitions: number, topic = CHAOS_KAFKA_TOPIC): Promise<ChaosKafka> {
    const broker = await startKafka();
    try {
      await createTopic(broker.brokers, topic, partitions);
    } catch (err) {
      await broker.stop();
      throw err;
    }
    return new ChaosKafka(broker, topic, partitions);
  }

  /** `tidemark start` flags that make the nodes consume the topic. */
  nodeFlags(): string[] {
    return [
      `--kafka-brokers=${this.broker.bootstrap}`,
      `--kafka-topic=${this.topic}`,
      '--kafka-format=protobuf',
    ];
  }

  /** Stops the broker (its log is copied into `logDir` first) and deletes its data. */
  async stop(logDir?: string): Promise<void> {
    if (logDir !== undefined) {
      const log = join(this.broker.dataDir, 'broker.log');
      if (existsSync(log)) {
        mkdirSync(logDir, { recursive: true });
        copyFileSync(log, join(logDir, 'kafka-broker.log'));
      }
    }
    await this.broker.stop();
  }
}

/** End offsets (high watermarks) of every partition of a topic, over one reused connection. */
export class EndOffsets {
  private readonly consumer: Consumer;

  constructor(
    brokers: string[],
    private readonly topic: string,
    private readonly partitions: number,
  ) {
    this.consumer = new Consumer({
      clientId: 'chaos-end-offsets',
      bootstrapBrokers: brokers,
      // Never joins a group: only ListOffsets requests.
      groupId: 'chaos-end-offsets-unused',
      timeout: 5000,
      retries: 1,
      retryDelay: 100,
    });
  }

  async read(): Promise<number[]> {
    const m = await this.consumer.listOffsets({
      topics: [this.topic],
      partitions: { [this.topic]: Array.from({ length: this.partitions }, (_, i) => i) },
      timestamp: -1n,
    });
    const list = m.get(this.topic) ?? [];
    return Array.from({ length: this.partitions }, (_, p) => {
      const v = list[p];
      if (v === undefined) throw new Error(`no end offset for partition ${p}`);
      return Number(v);
    });
  }

  async close(): Promise<void> {
    await this.consumer.close().catch(() => undefined);
  }
}

/**
 * Per partition, the largest applied offset (`tidemark_kafka_applied_offset`, the shard's stored next
 * offset) any live node reports on /metrics. Only nodes that have consumed a partition since they started
 * report it, from their own replica's store, so the maximum is what the shard has applied. A node that does
 * not answer within `timeoutMs` (paused, killed) has no say.
 */
export async function appliedOffsets(
  cluster: ChaosCluster,
  partitions: number,
  timeoutMs = 1000,
): Promise<(number | null)[]> {
  const out: (number | null)[] = new Array(partitions).fill(null);
  await Promise.all(
    cluster.ids
      .filter((id) => cluster.alive(id))
      .map(async (id) => {
        try {
          const res = await fetch(`http://127.0.0.1:${cluster.node(id).http}/metrics`, {
            signal: AbortSignal.timeout(timeoutMs),
          });
          if (!res.ok) return;
          for (const line of (await res.text()).split('\n')) {
            const m = /^tidemark_kafka_applied_offset\{partition="(\d+)"\} (\S+)$/.exec(line);
            if (m === null) continue;
            const p = Number(m[1]);
            const v = Number(m[2]);
            if (p < partitions && Number.isFinite(v)) out[p] = Math.max(out[p] ?? 0, v);
          }
        } catch {
          // paused, dead or restarting: no opinion
        }
      }),
  );
  return out;
}

/** Samples end and applied offsets every `periodMs` until stopped (times from the run's clock, µs). */
export class LagMonitor {
  readonly samples: LagSample[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly ends: EndOffsets,
    private readonly partitions: number,
    private readonly nowUs: () => number,
    private readonly periodMs = 250,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const t = this.nowUs();
        const [ends, applied] = await Promise.all([
          this.ends.read().catch(() => new Array<number | null>(this.partitions).fill(null)),
          appliedOffsets(this.cluster, this.partitions, Math.max(200, this.periodMs * 2)),
        ]);
        this.samples.push({ t, ends, applied });
        await sleep(this.periodMs);
      }
    })();
  }

  /** One sample now (also while stopped: the final catch-up wait polls with it). */
  async sampleNow(): Promise<LagSample> {
    const t = this.nowUs();
    const [ends, applied] = await Promise.all([
      this.ends.read().catch(() => new Array<number | null>(this.partitions).fill(null)),
      appliedOffsets(this.cluster, this.partitions),
    ]);
    const s = { t, ends, applied };
    this.samples.push(s);
    return s;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

export interface KafkaWorkloadOptions {
  brokers: string[];
  topic: string;
  /** = partitions. */
  shards: number;
  /** Producer loops, each with its own producer (connection). */
  producers: number;
  /** Pause between a producer's sends (ms). Each send holds one record per partition. */
  pauseMs: number;
  /** Samples per record (consecutive samples of the producer's open series of that partition). */
  samplesPerRecord: number;
  /** Samples per series before a producer moves to a new one (keeps series small for reading back). */
  seriesSamples: number;
  /** Deadline of one send (ms): the producer's request timeout. */
  sendTimeoutMs: number;
  /** First timestamp (ms); sample i of a series has timestamp baseMs + i. */
  baseMs: number;
  /** Process ids start here (only for the history's bookkeeping). */
  firstProcess: number;
}

/**
 * Producers of uniquely identifiable samples through Kafka. Producer p writes, per send, one record to
 * every partition holding `samplesPerRecord` samples of an open series of its own (series `k<p>-<n>`, named
 * so that it hashes to that partition, as the SDK producer routes it); timestamp = base + position in the
 * series; value unique in the run
 * (negative, so it can never be confused with an SDK writer's). Every sample is a write in the Kafka history:
 * ok once the broker acknowledged the send (acks=all, idempotent producer), unknown when the send failed
 * (a failed produce may still have been appended), failed only when the producer refused it before sending.
 */
export class KafkaWorkload {
  private stopped = false;
  private loops: Promise<void>[] = [];
  private producers: TidemarkKafkaProducer[] = [];
  sends = 0;
  sendErrors = 0;
  /** The last send errors (for the report). */
  readonly errors: string[] = [];

  constructor(
    private readonly options: KafkaWorkloadOptions,
    private readonly recorder: HistoryRecorder,
    private readonly rng: Rng,
  ) {}

  start(): void {
    const o = this.options;
    for (let p = 0; p < o.producers; p++) {
      const producer = new TidemarkKafkaProducer({
        brokers: o.brokers,
        topic: o.topic,
        shards: o.shards,
        clientId: `chaos-producer-${p}`,
        timeoutMs: o.sendTimeoutMs,
      });
      this.producers.push(producer);
      this.loops.push(this.producer(p, producer, this.rng.fork()));
    }
  }

  private seriesFor(process: number, partition: number, from: { k: number }): string {
    for (;;) {
      const name = `k${process}-${from.k++}`;
      if (
        kafkaPartitionOf({ metric: CHAOS_KAFKA_METRIC, tags: { s: name } }, this.options.shards) === partition
      )
        return name;
    }
  }

  private async producer(p: number, producer: TidemarkKafkaProducer, rng: Rng): Promise<void> {
    const o = this.options;
    const process = o.firstProcess + p;
    const names = { k: 0 };
    const open = Array.from({ length: o.shards }, (_, s) => ({
      series: this.seriesFor(p, s, names),
      count: 0,
    }));
    let n = 0;
    // Staggered starts, so the producers' sends interleave rather than arrive together.
    await sleep(rng.int(0, o.pauseMs + 1));
    while (!this.stopped) {
      const ops: WriteOp[] = [];
      const series: {
        series: { metric: string; tags: { s: string } };
        timestamps: number[];
        values: number[];
      }[] = [];
      for (let s = 0; s < o.shards; s++) {
        const cur = open[s]!;
        if (cur.count + o.samplesPerRecord > o.seriesSamples) {
          cur.series = this.seriesFor(p, s, names);
          cur.count = 0;
        }
        const timestamps: number[] = [];
        const values: number[] = [];
        for (let i = 0; i < o.samplesPerRecord; i++) {
          const t = o.baseMs + cur.count++;
          const v = -(p * 100_000_000 + n++) - 0.5;
          ops.push(this.recorder.invokeWrite(process, cur.series, s, t, v));
          timestamps.push(t);
          values.push(v);
        }
        series.push({ series: { metric: CHAOS_KAFKA_METRIC, tags: { s: cur.series } }, timestamps, values });
      }
      this.sends++;
      try {
        await producer.send(series);
        for (const op of ops) this.recorder.ok(op);
      } catch (err) {
        this.sendErrors++;
        if (this.errors.length < 20) this.errors.push(err instanceof Error ? err.message : String(err));
        for (const op of ops) this.recorder.fail(op, err);
      }
      await sleep(o.pauseMs);
    }
  }

  /** Stops the loops and waits for in-flight sends. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    await Promise.all(this.producers.map((p) => p.close().catch(() => undefined)));
  }
}
