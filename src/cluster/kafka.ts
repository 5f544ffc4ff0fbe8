/**
 * The node side of Kafka ingestion (docs/kafka.md): while a local replica leads shard i, partition i's
 * ingester runs with a target that proposes through that replica. The exactly-once rule lives in the
 * replica's apply (store-snapshot.ts): an entry tagged {partition, firstOffset, lastOffset} stores its
 * samples and `kafka.nextOffset` in one transaction only when firstOffset equals the stored next offset.
 *
 * A record may hold samples of other shards (a producer that ignores the partitioning contract): they are
 * written through the node's normal write path first (idempotent by (series, timestamp)), then the own
 * part is proposed with the position, even when empty, so the offset always advances.
 */
import { type Logger, pino } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type {
  KafkaPartitionStatus as StatusKafkaRow,
  WriteOptions,
  WriteResult,
} from '../api/cluster-service.js';
import { isTidemarkError, TidemarkError } from '../errors/index.js';
import { splitByShard } from '../ingest/batch.js';
import {
  type KafkaIngestConfigInput,
  KafkaIngester,
  type KafkaIo,
  type KafkaPosition,
  type KafkaShardTarget,
  type PartitionStats,
} from '../ingest/kafka/index.js';
import type { SampleBatch } from '../storage/store.js';
import type { NodeConfig } from './config.js';
import { decodeNextOffset, KAFKA_NEXT_OFFSET_KEY } from './entry.js';
import type { ShardReplica } from './replica.js';

export interface NodeKafkaDeps {
  config: NodeConfig;
  replicas: ReadonlyMap<number, ShardReplica>;
  /** The node's write path (split by shard, forward to leaders, retry): for samples of other shards. */
  write(batch: SampleBatch, options: WriteOptions): Promise<WriteResult>;
  /** A pino logger (the node's); anything else logs nothing. */
  logger?: unknown;
  /** Prometheus registry to add the Kafka metrics to (the node's). */
  registry?: Registry;
  /** Test seam: Kafka I/O (default: @platformatic/kafka on the configured brokers). */
  io?: KafkaIo;
  /** Deadline of one write attempt (ms, default 10,000). */
  writeTimeoutMs?: number;
}

/** One partition as `tidemark status` and /metrics show it. */
export interface KafkaPartitionStatus {
  partition: number;
  consuming: boolean;
  committedOffset: number;
  highWatermark: number;
  lag: number;
  records: number;
  samples: number;
  badRecords: number;
  recordsPerSec: number;
  proposeErrors: number;
  fetchErrors: number;
}

/** The node's Kafka section: undefined when Kafka is not configured. */
export function kafkaInput(config: NodeConfig): KafkaIngestConfigInput | undefined {
  const k = config.kafka;
  if (k === undefined || k.brokers === '') return undefined;
  return {
    brokers: k.brokers,
    topic: k.topic,
    format: k.format as KafkaIngestConfigInput['format'],
    deadLetterTopic: k.deadLetterTopic === '' ? null : k.deadLetterTopic,
    clientId: `tidemark-${config.nodeId}`,
    batch: { maxSamples: k.batchMaxSamples, lingerMs: k.lingerMs },
    maxInFlight: k.maxInFlight,
  };
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

function isPino(l: unknown): l is Logger {
  return typeof l === 'object' && l !== null && typeof (l as { child?: unknown }).child === 'function';
}

export class NodeKafka {
  private readonly log: Logger;
  private readonly rates = new Map<number, { at: number; records: number; perSec: number }>();
  private readonly pending = new Set<Promise<void>>();
  private closed = false;
  /** Decoded samples the stores refused (out-of-order window, ...): counted, logged, not dead-lettered. */
  private rejectedSamples = 0;

  private constructor(
    private readonly deps: NodeKafkaDeps,
    readonly ingester: KafkaIngester,
    log: Logger,
  ) {
    this.log = log;
    if (deps.registry !== undefined) this.registerMetrics(deps.registry);
  }

  /**
   * Checks the configuration and the topic (exactly S partitions; a mismatch throws FAILED_PRECONDITION
   * saying how to fix it). Undefined when the node has no Kafka configured.
   */
  static async open(deps: NodeKafkaDeps): Promise<NodeKafka | undefined> {
    const input = kafkaInput(deps.config);
    if (input === undefined) return undefined;
    const log = isPino(deps.logger) ? deps.logger.child({ component: 'kafka' }) : pino({ level: 'silent' });
    const ingester = await KafkaIngester.open(input, {
      shardCount: deps.config.shards,
      logger: log,
      ...(deps.io === undefined ? {} : { io: deps.io }),
    });
    log.info(
      { topic: ingester.config.topic, format: ingester.config.format, brokers: ingester.config.brokers },
      'kafka ingestion configured',
    );
    return new NodeKafka(deps, ingester, log);
  }

  /**
   * Starts the ingester of every shard a local replica leads (once it has applied what it committed, so
   * it resumes from the latest offset) and stops those whose leadership is gone. Called by the node's
   * observe loop; cheap.
   */
  sync(): void {
    if (this.closed) return;
    const leading = new Set(this.ingester.leading());
    for (const [shard, r] of this.deps.replicas) {
      const s = r.driver.status();
      const lead = s.role === 'leader' && s.applied >= s.commit;
      if (lead && !leading.has(shard)) {
        this.ingester.lead(this.target(shard, r));
      } else if (s.role !== 'leader' && leading.has(shard)) {
        const p = this.ingester.unlead(shard).catch((err: unknown) => {
          this.log.warn({ shard, err: String(err) }, 'kafka ingest: stopping a partition failed');
        });
        this.pending.add(p);
        void p.finally(() => this.pending.delete(p));
      }
    }
    this.updateRates();
  }

  private updateRates(): void {
    const now = Date.now();
    for (const s of this.ingester.stats()) {
      const r = this.rates.get(s.partition);
      if (r === undefined) this.rates.set(s.partition, { at: now, records: s.records, perSec: 0 });
      else if (now - r.at >= 1000) {
        r.perSec = ((s.records - r.records) * 1000) / (now - r.at);
        r.at = now;
        r.records = s.records;
      }
    }
  }

  /** The shard's target: offsets from the replica's store, proposals through the replica. */
  private target(shard: number, replica: ShardReplica): KafkaShardTarget {
    let last = 0n;
    const nextOffset = (): bigint => {
      try {
        last = BigInt(decodeNextOffset(replica.store.getMeta(KAFKA_NEXT_OFFSET_KEY)));
      } catch {
        // During a snapshot install the store is away: the last value read is the best answer.
      }
      return last;
    };
    return {
      shard,
      nextOffset,
      propose: async (batch, pos, signal) => {
        await this.propose(shard, replica, batch, pos, signal);
        // The apply rule may have dropped this entry: a 'gap' (an earlier batch of ours failed) or a
        // 'replay' overlapping records never applied (we resumed from an offset read before the previous
        // leader's last entries were applied here). Either way the records are not in: reject, so the
        // ingester restarts from the stored offset instead of moving on past them.
        const next = nextOffset();
        if (next <= pos.lastOffset) {
          throw new TidemarkError(
            'UNAVAILABLE',
            'kafka_offset_moved',
            `partition ${shard}: records [${pos.firstOffset}, ${pos.lastOffset}] were not applied (stored next offset ${next}); resuming from there`,
          );
        }
      },
    };
  }

  private async propose(
    shard: number,
    replica: ShardReplica,
    batch: SampleBatch,
    pos: KafkaPosition,
    signal: AbortSignal,
  ): Promise<void> {
    const S = this.deps.config.shards;
    const parts = S === 1 ? [batch] : splitByShard(batch, S);
    const timeout = this.deps.writeTimeoutMs ?? 10_000;
    // (a) Samples of other shards, through the normal write path (idempotent, so a re-read is harmless).
    const foreign = parts.filter((p, i) => i !== shard && p.length > 0);
    for (let attempt = 0; foreign.length > 0; attempt++) {
      if (signal.aborted) throw new TidemarkError('CLOSED', 'kafka_stopped', 'kafka ingest stopped');
      try {
        const results = await Promise.all(
          foreign.map((p) => this.deps.write(p, { deadline: Date.now() + timeout })),
        );
        const rejected = results.reduce((n, r) => n + r.rejected.length, 0);
        if (rejected > 0) {
          this.rejectedSamples += rejected;
          this.log.warn(
            {
              partition: shard,
              rejected,
              reason: results.find((r) => r.rejected.length > 0)?.rejected[0]?.reason,
            },
            'kafka ingest: forwarded samples rejected by their shard',
          );
        }
        break;
      } catch (err) {
        if (!retryable(err)) throw err;
        await sleep(Math.min(50 * 2 ** Math.min(attempt, 5), 1000), signal);
      }
    }
    // (b) The own part with the position, even when empty: the offsets must advance.
    const own = parts[shard]!;
    const kafka = {
      partition: pos.partition,
      firstOffset: Number(pos.firstOffset),
      lastOffset: Number(pos.lastOffset),
    };
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw new TidemarkError('CLOSED', 'kafka_stopped', 'kafka ingest stopped');
      try {
        const res = (await replica.write(own, { kafka, deadline: Date.now() + timeout })) as {
          kafka?: 'apply' | 'replay' | 'gap';
          rejected?: { index: number; reason: string }[];
        };
        if (res.kafka === 'apply' && (res.rejected?.length ?? 0) > 0) {
          // Samples the store refuses (e.g. older than its out-of-order window): the record was decoded
          // and its offset is consumed, so they are counted and logged like forwarded rejections.
          this.rejectedSamples += res.rejected!.length;
          this.log.warn(
            { ...kafka, rejected: res.rejected!.length, reason: res.rejected![0]!.reason },
            'kafka ingest: samples rejected by the store',
          );
        }
        if (res.kafka === 'replay') this.log.debug({ ...kafka }, 'kafka ingest: replayed entry ignored');
        else if (res.kafka === 'gap') this.log.warn({ ...kafka }, 'kafka ingest: entry past a gap ignored');
        return;
      } catch (err) {
        // Only a full proposal queue is retried here (flow control); anything else (not leader, outcome
        // unknown) ends the ingester's session, which resumes from the stored offset.
        if (!isTidemarkError(err) || err.code !== 'RESOURCE_EXHAUSTED') throw err;
        await sleep(Math.max(err.retryAfterMs ?? 0, Math.min(10 * 2 ** Math.min(attempt, 6), 500)), signal);
      }
    }
  }

  status(): KafkaPartitionStatus[] {
    const leading = new Set(this.ingester.leading());
    return this.ingester.stats().map((s: PartitionStats) => ({
      partition: s.partition,
      consuming: leading.has(s.partition),
      committedOffset: Number(s.committedOffset),
      highWatermark: Number(s.highWatermark),
      lag: Number(s.lag),
      records: s.records,
      samples: s.samples,
      badRecords: s.badRecords,
      recordsPerSec: Math.round(this.rates.get(s.partition)?.perSec ?? 0),
      proposeErrors: s.proposeErrors,
      fetchErrors: s.fetchErrors,
    }));
  }

  /** The partitions as the node's Status reports them. */
  statusRows(): StatusKafkaRow[] {
    return this.status().map((k) => ({
      partition: k.partition,
      consuming: k.consuming,
      appliedOffset: k.committedOffset,
      highWatermark: k.highWatermark,
      lag: k.lag,
      recordsPerSec: k.recordsPerSec,
      records: k.records,
      samples: k.samples,
      deadLetters: k.badRecords,
    }));
  }

  private registerMetrics(registry: Registry): void {
    const registers = [registry];
    const self = this;
    const gauge = (name: string, help: string, value: (s: KafkaPartitionStatus) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['partition'],
        registers,
        collect() {
          this.reset();
          for (const s of self.status()) this.set({ partition: String(s.partition) }, value(s));
        },
      });
    const counter = (name: string, help: string, value: (s: KafkaPartitionStatus) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['partition'],
        registers,
        collect() {
          this.reset();
          for (const s of self.status()) this.inc({ partition: String(s.partition) }, value(s));
        },
      });
    gauge(
      'tidemark_kafka_lag',
      'High watermark minus the offset the shard applied, by partition',
      (s) => s.lag,
    );
    gauge('tidemark_kafka_consuming', '1 while this node consumes the partition (leads its shard)', (s) =>
      s.consuming ? 1 : 0,
    );
    gauge(
      'tidemark_kafka_applied_offset',
      'Next offset the shard will apply, by partition',
      (s) => s.committedOffset,
    );
    gauge(
      'tidemark_kafka_records_per_second',
      'Records consumed per second (1 s window)',
      (s) => s.recordsPerSec,
    );
    counter('tidemark_kafka_records_total', 'Records consumed by this node, by partition', (s) => s.records);
    counter('tidemark_kafka_samples_total', 'Samples decoded by this node, by partition', (s) => s.samples);
    new Counter({
      name: 'tidemark_kafka_rejected_samples_total',
      help: 'Decoded samples from Kafka that a shard store refused (e.g. outside the out-of-order window)',
      registers,
      collect() {
        this.reset();
        this.inc(self.rejectedSamples);
      },
    });
    counter(
      'tidemark_kafka_dead_letter_total',
      'Bad records (counted, logged, sent to the dead-letter topic), by partition',
      (s) => s.badRecords,
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.ingester.close();
    await Promise.all(this.pending);
  }
}

function retryable(err: unknown): boolean {
  return (
    isTidemarkError(err) &&
    ['NOT_LEADER', 'UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'CLOSED'].includes(err.code)
  );
}
