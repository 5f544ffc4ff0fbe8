/**
 * SDK helper for producers that write to Tidemark through Kafka: sends each series to partition
 * jump(seriesId, S), the shard that stores it, so every sample is applied by the shard that consumes its
 * partition (no forwarding) and all samples of a series stay in one partition, in order. Formats: the
 * Tidemark protobuf WriteRequest (default, exact) or OpenTSDB JSON. See docs/kafka.md.
 */
import { Producer } from '@platformatic/kafka';
import { TidemarkError } from '../errors/index.js';
import { type Series, seriesId, shardOf } from '../model/index.js';
import { encodeWriteRequest } from '../transport/write-codec.js';
import { type PreparedSeries, prepare, type WriteInput } from './prepare.js';

export type KafkaProducerFormat = 'protobuf' | 'opentsdb';

export interface KafkaProducerOptions {
  /** host:port list, or one comma-separated string. */
  brokers: readonly string[] | string;
  topic: string;
  /** The cluster's shard count S (= the topic's partition count, checked on the first send). */
  shards: number;
  /** Record format (default protobuf). It must match the topic's `format` in the Tidemark config. */
  format?: KafkaProducerFormat;
  /** Most samples per Kafka record (default 5,000): large writes become several records per partition. */
  maxSamplesPerRecord?: number;
  clientId?: string;
  /** Per-request timeout (ms, default 30,000). */
  timeoutMs?: number;
}

export interface KafkaSendResult {
  records: number;
  samples: number;
  /** Partitions written to (sorted). */
  partitions: number[];
}

/** The partition (= shard) of a series: jump(seriesId, S). */
export function kafkaPartitionOf(series: Series, shards: number): number {
  return shardOf(seriesId(series), shards);
}

// OpenTSDB reads a timestamp below 2^32 as seconds, so a millisecond one that small would be misread.
const OPENTSDB_MIN_MS = 2 ** 32;

export class TidemarkKafkaProducer {
  private readonly producer: Producer;
  private readonly brokers: string[];
  private readonly format: KafkaProducerFormat;
  private readonly maxSamples: number;
  private checked: Promise<void> | undefined;

  constructor(private readonly options: KafkaProducerOptions) {
    const { shards } = options;
    if (!Number.isInteger(shards) || shards < 1) {
      throw new TidemarkError('INVALID_ARGUMENT', 'option_invalid', 'shards must be a positive integer', {
        field: 'shards',
      });
    }
    this.brokers =
      typeof options.brokers === 'string'
        ? options.brokers.split(',').map((b) => b.trim())
        : [...options.brokers];
    this.format = options.format ?? 'protobuf';
    if (this.format !== 'protobuf' && this.format !== 'opentsdb') {
      throw new TidemarkError('INVALID_ARGUMENT', 'option_invalid', 'format must be protobuf or opentsdb', {
        field: 'format',
      });
    }
    this.maxSamples = options.maxSamplesPerRecord ?? 5000;
    if (!Number.isInteger(this.maxSamples) || this.maxSamples < 1) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'option_invalid',
        'maxSamplesPerRecord must be a positive integer',
        {
          field: 'maxSamplesPerRecord',
        },
      );
    }
    this.producer = new Producer({
      clientId: options.clientId ?? 'tidemark-producer',
      bootstrapBrokers: this.brokers,
      timeout: options.timeoutMs ?? 30_000,
      // Idempotent: a retried send (e.g. while a new topic elects its leaders) is never written twice.
      idempotent: true,
      acks: -1,
      autocreateTopics: false,
    });
  }

  /**
   * Validates (as TidemarkClient.write does: INVALID_ARGUMENT naming the field, nothing sent) and produces
   * the samples, each series to its shard's partition. Resolves when the broker has acknowledged them all.
   */
  async send(input: WriteInput): Promise<KafkaSendResult> {
    const prepared = prepare(input);
    if (this.format === 'opentsdb') {
      for (const s of prepared.series) {
        for (let i = 0; i < s.timestamps.length; i++) {
          const t = s.timestamps[i]!;
          if (t < OPENTSDB_MIN_MS) {
            throw new TidemarkError(
              'INVALID_ARGUMENT',
              'timestamp_out_of_range',
              `timestamp ${t} ms is below 2^32, which OpenTSDB JSON would read as seconds; use the protobuf format`,
              { field: 'timestamp' },
            );
          }
          if (!Number.isFinite(s.values[i])) {
            throw new TidemarkError(
              'INVALID_ARGUMENT',
              'value_invalid',
              'OpenTSDB JSON cannot carry NaN or infinite values; use the protobuf format',
              { field: 'value' },
            );
          }
        }
      }
    }
    this.checked ??= this.checkTopic().catch((err: unknown) => {
      this.checked = undefined;
      throw err;
    });
    await this.checked;
    const byPartition = new Map<number, PreparedSeries[]>();
    for (const s of prepared.series) {
      const p = shardOf(s.id, this.options.shards);
      let list = byPartition.get(p);
      if (list === undefined) {
        list = [];
        byPartition.set(p, list);
      }
      list.push(s);
    }
    const messages: { topic: string; partition: number; value: Buffer }[] = [];
    for (const [partition, list] of byPartition) {
      for (const chunk of this.chunks(list)) {
        messages.push({ topic: this.options.topic, partition, value: this.encode(chunk) });
      }
    }
    if (messages.length > 0) await this.producer.send({ messages });
    return {
      records: messages.length,
      samples: prepared.samples,
      partitions: [...byPartition.keys()].sort((a, b) => a - b),
    };
  }

  async close(): Promise<void> {
    await this.producer.close();
  }

  private async checkTopic(): Promise<void> {
    const topic = this.options.topic;
    const md = await this.producer
      .metadata({ topics: [topic], autocreateTopics: false })
      .catch((err: unknown) => {
        throw new TidemarkError(
          'FAILED_PRECONDITION',
          'kafka_topic_missing',
          `Kafka topic "${topic}" is unavailable`,
          {
            topic,
          },
          err,
        );
      });
    const n = md.topics.get(topic)?.partitionsCount;
    if (n !== this.options.shards) {
      throw new TidemarkError(
        'FAILED_PRECONDITION',
        'kafka_partition_mismatch',
        `Kafka topic "${topic}" has ${n ?? 'no'} partitions but shards is ${this.options.shards}: ` +
          'partition i feeds shard i, so they must be equal (see docs/kafka.md)',
        { topic, partitions: n, expectedPartitions: this.options.shards },
      );
    }
  }

  /** Splits a partition's series into records of at most maxSamples samples (a series may span records). */
  private *chunks(list: PreparedSeries[]): Generator<{ series: Series; ts: number[]; vs: number[] }[]> {
    let cur: { series: Series; ts: number[]; vs: number[] }[] = [];
    let n = 0;
    for (const s of list) {
      for (let i = 0; i < s.timestamps.length; ) {
        const take = Math.min(this.maxSamples - n, s.timestamps.length - i);
        cur.push({ series: s.series, ts: s.timestamps.slice(i, i + take), vs: s.values.slice(i, i + take) });
        n += take;
        i += take;
        if (n === this.maxSamples) {
          yield cur;
          cur = [];
          n = 0;
        }
      }
    }
    if (cur.length > 0) yield cur;
  }

  private encode(chunk: { series: Series; ts: number[]; vs: number[] }[]): Buffer {
    if (this.format === 'opentsdb') {
      const points: unknown[] = [];
      for (const c of chunk) {
        for (let i = 0; i < c.ts.length; i++) {
          points.push({ metric: c.series.metric, timestamp: c.ts[i], value: c.vs[i], tags: c.series.tags });
        }
      }
      return Buffer.from(JSON.stringify(points));
    }
    const bytes = encodeWriteRequest(
      chunk.map((c) => ({ metric: c.series.metric, tags: c.series.tags, timestamps: c.ts, values: c.vs })),
    );
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
}
