/**
 * One topic's ingestion on one node: checks the topic once, then runs a PartitionIngester for each shard
 * this node leads. The node calls lead(target) when it becomes leader of a shard and unlead(shard) when
 * it stops being one; nothing else decides who reads which partition.
 */
import { type Logger, pino } from 'pino';
import { type KafkaIo, PlatformaticKafkaIo } from './client.js';
import { type KafkaIngestConfig, parseKafkaConfig } from './config.js';
import { PartitionIngester } from './ingester.js';
import { checkDeadLetterTopic, checkTopic } from './topic.js';
import type { KafkaShardTarget, PartitionStats } from './types.js';

export interface KafkaIngesterOptions {
  /** The cluster's shard count S: the topic must have exactly S partitions. */
  shardCount: number;
  logger?: Logger;
  /** Defaults to the @platformatic/kafka implementation on config.brokers. */
  io?: KafkaIo;
  now?: () => number;
  retryDelayMs?: number;
}

interface Running {
  ingester: PartitionIngester;
  abort: AbortController;
  done: Promise<void>;
}

export class KafkaIngester {
  private readonly running = new Map<number, Running>();
  private readonly last = new Map<number, PartitionIngester>();
  /** Counters of the partitions' earlier ingesters (one per leadership term here), so totals only grow. */
  private readonly retired = new Map<number, PartitionStats>();
  private closed = false;

  private constructor(
    readonly config: KafkaIngestConfig,
    private readonly io: KafkaIo,
    private readonly options: KafkaIngesterOptions,
    private readonly log: Logger,
  ) {}

  /** Validates the config, connects, and checks the topic (and dead-letter topic). Throws TidemarkError. */
  static async open(rawConfig: unknown, options: KafkaIngesterOptions): Promise<KafkaIngester> {
    const config = parseKafkaConfig(rawConfig);
    const io = options.io ?? new PlatformaticKafkaIo({ brokers: config.brokers, clientId: config.clientId });
    try {
      await checkTopic(io, config.brokers, config.topic, options.shardCount);
      if (config.deadLetterTopic !== null)
        await checkDeadLetterTopic(io, config.brokers, config.deadLetterTopic);
    } catch (err) {
      if (options.io === undefined) await io.close();
      throw err;
    }
    const log = options.logger ?? pino({ level: 'silent' });
    return new KafkaIngester(config, io, options, log);
  }

  /** Starts consuming partition target.shard (this node now leads the shard). A no-op if already running. */
  lead(target: KafkaShardTarget): void {
    if (this.closed) throw new Error('the Kafka ingester is closed');
    const shard = target.shard;
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.options.shardCount) {
      throw new RangeError(`shard ${shard} is outside [0, ${this.options.shardCount})`);
    }
    if (this.running.has(shard)) return;
    const ingester = new PartitionIngester({
      config: this.config,
      io: this.io,
      target,
      logger: this.log,
      ...(this.options.now === undefined ? {} : { now: this.options.now }),
      ...(this.options.retryDelayMs === undefined ? {} : { retryDelayMs: this.options.retryDelayMs }),
    });
    const prev = this.last.get(shard);
    if (prev !== undefined) this.retired.set(shard, addCounters(this.retired.get(shard), prev.stats()));
    const abort = new AbortController();
    const done = ingester.run(abort.signal);
    this.running.set(shard, { ingester, abort, done });
    this.last.set(shard, ingester);
  }

  /** Stops consuming the shard's partition (leadership lost); resolves when its loop has stopped. */
  async unlead(shard: number): Promise<void> {
    const r = this.running.get(shard);
    if (r === undefined) return;
    this.running.delete(shard);
    r.abort.abort();
    await r.done;
  }

  /** Shards whose partition is being consumed. */
  leading(): number[] {
    return [...this.running.keys()].sort((a, b) => a - b);
  }

  /**
   * Per-partition figures of every partition this node has consumed since it started: the current (or
   * last) ingester's state, with counters summed over all of this node's ingesters of the partition.
   */
  stats(): PartitionStats[] {
    return [...this.last.values()]
      .map((i) => {
        const s = i.stats();
        const base = this.retired.get(s.partition);
        return base === undefined ? s : { ...s, ...counters(addCounters(base, s)) };
      })
      .sort((a, b) => a.partition - b.partition);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.running.keys()].map((s) => this.unlead(s)));
    if (this.options.io === undefined) await this.io.close();
  }
}

const COUNTERS = [
  'records',
  'samples',
  'badRecords',
  'batches',
  'fetchErrors',
  'proposeErrors',
  'deadLetterErrors',
] as const;

function counters(s: PartitionStats): Pick<PartitionStats, (typeof COUNTERS)[number]> {
  const out = {} as Record<(typeof COUNTERS)[number], number>;
  for (const k of COUNTERS) out[k] = s[k];
  return out;
}

function addCounters(a: PartitionStats | undefined, b: PartitionStats): PartitionStats {
  if (a === undefined) return { ...b };
  const out = { ...b };
  for (const k of COUNTERS) out[k] = a[k] + b[k];
  return out;
}
