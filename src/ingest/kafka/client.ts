/**
 * The Kafka I/O the ingester needs, behind a small interface (KafkaIo), implemented over
 * @platformatic/kafka with raw Fetch requests: the ingester names the partition and the offset itself,
 * so no consumer-group rebalancing ever decides who reads what.
 */
import { Admin, ConnectionPool, Consumer, Producer } from '@platformatic/kafka';

export interface FetchedRecord {
  offset: bigint;
  /** The record's Kafka timestamp, ms since the epoch. */
  timestampMs: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: [Buffer | null, Buffer | null][];
}

export interface FetchResult {
  /** Data records at or after the requested offset, in offset order (control records left out). */
  records: FetchedRecord[];
  /**
   * Where the next fetch starts: past the last record batch returned (control batches and compacted gaps
   * included), or the requested offset when nothing came back.
   */
  nextOffset: bigint;
  highWatermark: bigint;
  logStartOffset: bigint;
}

export interface DeadLetter {
  topic: string;
  key: string;
  value: Buffer | null;
  headers: Record<string, string>;
}

/** Fetches one partition over its own connection (so a long-polling fetch never delays another partition's). */
export interface PartitionFetcher {
  /**
   * One Fetch from `offset`; the broker answers once it holds at least minBytes (default 1) from there, or
   * after maxWaitMs with what it has. Throws KafkaOffsetOutOfRange.
   */
  fetch(offset: bigint, maxWaitMs: number, maxBytes: number, minBytes?: number): Promise<FetchResult>;
  /** Closes the connection: a fetch in flight rejects at once (how a stopping ingester stops promptly). */
  close(): void;
}

export interface KafkaIo {
  /** The topic's partition count, or undefined when it does not exist. */
  partitionCount(topic: string): Promise<number | undefined>;
  openFetcher(topic: string, partition: number): PartitionFetcher;
  /** Produces with acks=all; resolves when the broker has them. */
  produce(messages: DeadLetter[]): Promise<void>;
  /** Commits `next` as the group's offset of the partition (monitoring only). */
  commitOffset(group: string, topic: string, partition: number, next: bigint): Promise<void>;
  close(): Promise<void>;
}

/** The requested offset is outside [logStartOffset, highWatermark]. */
export class KafkaOffsetOutOfRange extends Error {
  constructor(
    readonly offset: bigint,
    readonly logStartOffset: bigint,
    readonly highWatermark: bigint,
  ) {
    super(`offset ${offset} is outside the partition's range [${logStartOffset}, ${highWatermark}]`);
    this.name = 'KafkaOffsetOutOfRange';
  }
}

// Record batch attribute bit of control batches (transaction markers): they take offsets, carry no data.
const IS_CONTROL = 0x20;
const OFFSET_OUT_OF_RANGE = 1;

interface PartitionErrorResponse {
  responses?: { partitions?: { errorCode: number; highWatermark: bigint; logStartOffset: bigint }[] }[];
}

export interface PlatformaticKafkaIoOptions {
  brokers: string[];
  clientId: string;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
}

export class PlatformaticKafkaIo implements KafkaIo {
  private readonly consumer: Consumer;
  private producer: Producer | undefined;
  private readonly commitConsumers = new Map<string, Consumer>();

  constructor(private readonly options: PlatformaticKafkaIoOptions) {
    this.consumer = new Consumer({
      clientId: options.clientId,
      bootstrapBrokers: options.brokers,
      // Never joins: fetch() below is a raw Fetch request. The id only satisfies the constructor.
      groupId: `${options.clientId}-unused`,
      timeout: options.timeoutMs ?? 30_000,
      // The ingester retries with its own backoff, so the client does not stack a second retry loop.
      retries: 1,
      retryDelay: 100,
    });
  }

  async partitionCount(topic: string): Promise<number | undefined> {
    try {
      const md = await this.consumer.metadata({
        topics: [topic],
        forceUpdate: true,
        autocreateTopics: false,
      });
      return md.topics.get(topic)?.partitionsCount;
    } catch (err) {
      if (isUnknownTopic(err)) return undefined;
      throw err;
    }
  }

  openFetcher(topic: string, partition: number): PartitionFetcher {
    const pool = new ConnectionPool(`${this.options.clientId}-fetch-${partition}`, {
      requestTimeout: this.options.timeoutMs ?? 30_000,
    });
    let closed = false;
    return {
      fetch: (offset, maxWaitMs, maxBytes, minBytes = 1) =>
        this.fetch(pool, topic, partition, offset, maxWaitMs, maxBytes, minBytes),
      close: () => {
        if (closed) return;
        closed = true;
        pool.close().catch(() => undefined);
      },
    };
  }

  /** Earliest and latest (high watermark) offsets of a partition. */
  async offsetRange(topic: string, partition: number): Promise<{ start: bigint; end: bigint }> {
    const at = async (timestamp: bigint) => {
      const m = await this.consumer.listOffsets({
        topics: [topic],
        partitions: { [topic]: [partition] },
        timestamp,
      });
      const list = m.get(topic) ?? [];
      return list[partition] ?? list[0] ?? -1n;
    };
    return { start: await at(-2n), end: await at(-1n) };
  }

  private async fetch(
    pool: ConnectionPool,
    topic: string,
    partition: number,
    offset: bigint,
    maxWaitMs: number,
    maxBytes: number,
    minBytes: number,
  ): Promise<FetchResult> {
    const md = await this.consumer.metadata({ topics: [topic] });
    const t = md.topics.get(topic);
    const p = t?.partitions[partition];
    if (t === undefined || p === undefined) throw new Error(`topic ${topic} has no partition ${partition}`);
    let resp: Awaited<ReturnType<Consumer['fetch']>>;
    try {
      resp = await this.consumer.fetch({
        node: p.leader,
        connectionPool: pool,
        maxWaitTime: maxWaitMs,
        minBytes,
        maxBytes,
        topics: [
          {
            topicId: t.id,
            partitions: [
              {
                partition,
                fetchOffset: offset,
                partitionMaxBytes: maxBytes,
                currentLeaderEpoch: -1,
                lastFetchedEpoch: -1,
              },
            ],
          },
        ],
      });
    } catch (err) {
      const r = (err as { response?: PartitionErrorResponse }).response?.responses?.[0]?.partitions?.[0];
      if (r?.errorCode === OFFSET_OUT_OF_RANGE) {
        // The error response carries no offsets (-1): ask for the range.
        const { start, end } = await this.offsetRange(topic, partition);
        if (offset < start || offset > end) throw new KafkaOffsetOutOfRange(offset, start, end);
      }
      // A stale leader, a moved partition: the next call refreshes the metadata.
      this.consumer.clearMetadata();
      throw err;
    }
    const part = resp.responses[0]?.partitions.find((x) => x.partitionIndex === partition);
    if (part === undefined)
      return { records: [], nextOffset: offset, highWatermark: -1n, logStartOffset: -1n };
    const records: FetchedRecord[] = [];
    let next = offset;
    for (const batch of part.records ?? []) {
      const end = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
      if (end > next) next = end;
      if ((batch.attributes & IS_CONTROL) !== 0) continue;
      for (const r of batch.records) {
        const o = batch.firstOffset + BigInt(r.offsetDelta);
        // A fetch returns whole batches: the first may start before the requested offset.
        if (o < offset) continue;
        records.push({
          offset: o,
          timestampMs: Number(batch.firstTimestamp + r.timestampDelta),
          key: r.key,
          value: r.value,
          headers: r.headers,
        });
      }
    }
    return {
      records,
      nextOffset: next,
      highWatermark: part.highWatermark,
      logStartOffset: part.logStartOffset,
    };
  }

  async produce(messages: DeadLetter[]): Promise<void> {
    if (messages.length === 0) return;
    this.producer ??= new Producer({
      clientId: `${this.options.clientId}-dlq`,
      bootstrapBrokers: this.options.brokers,
      timeout: this.options.timeoutMs ?? 30_000,
      idempotent: true,
      acks: -1,
      autocreateTopics: false,
    });
    await this.producer.send({
      messages: messages.map((m) => ({
        topic: m.topic,
        key: Buffer.from(m.key),
        value: m.value ?? Buffer.alloc(0),
        // Header keys must be bytes too (the default serializers only handle Buffers).
        headers: new Map(Object.entries(m.headers).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
      })),
    });
  }

  async commitOffset(group: string, topic: string, partition: number, next: bigint): Promise<void> {
    let c = this.commitConsumers.get(group);
    if (c === undefined) {
      c = new Consumer({
        clientId: `${this.options.clientId}-monitor`,
        bootstrapBrokers: this.options.brokers,
        groupId: group,
        timeout: this.options.timeoutMs ?? 30_000,
        // Retries ride out a coordinator that is still starting. The group must be one no consumer joins
        // (docs/kafka.md): only a commit refused by an active group would make the client join it.
        retries: 3,
        retryDelay: 200,
      });
      this.commitConsumers.set(group, c);
    }
    // Generation -1 and an empty member id: Kafka's "simple consumer" commit, which never joins the group.
    c.generationId = -1;
    c.memberId = '';
    await c.commit({ offsets: [{ topic, partition, offset: next, leaderEpoch: -1 }] });
  }

  async close(): Promise<void> {
    const all: Promise<void>[] = [this.consumer.close()];
    if (this.producer !== undefined) all.push(this.producer.close());
    for (const c of this.commitConsumers.values()) all.push(c.close());
    await Promise.allSettled(all);
  }
}

function isUnknownTopic(err: unknown): boolean {
  const seen = new Set<unknown>();
  const visit = (e: unknown): boolean => {
    if (e === null || typeof e !== 'object' || seen.has(e)) return false;
    seen.add(e);
    const o = e as { apiId?: string; errors?: unknown[]; message?: string };
    if (o.apiId === 'UNKNOWN_TOPIC_OR_PARTITION') return true;
    // The client reports a topic missing from the metadata as a UserError "Unknown topic <name>."
    if (typeof o.message === 'string' && /UNKNOWN_TOPIC_OR_PARTITION|^Unknown topic /.test(o.message))
      return true;
    return Array.isArray(o.errors) && o.errors.some(visit);
  };
  return visit(err);
}

/** Creates a topic (tests, `tidemark dev --kafka`). */
export async function createTopic(
  brokers: string[],
  topic: string,
  partitions: number,
  configs: Record<string, string> = {},
): Promise<void> {
  const admin = new Admin({ clientId: 'tidemark-admin', bootstrapBrokers: brokers });
  try {
    await admin.createTopics({
      topics: [topic],
      partitions,
      replicas: 1,
      configs: Object.entries(configs).map(([name, value]) => ({ name, value })),
    });
  } finally {
    await admin.close();
  }
}
