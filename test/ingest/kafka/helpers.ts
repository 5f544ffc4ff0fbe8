/**
 * Shared pieces of the Kafka tests: a shard target backed by a real store that applies samples and the
 * Kafka offset in one applyBatch (the apply rule of KafkaShardTarget), a raw producer, and readers of
 * the store's content for exact comparisons.
 */
import { Producer } from '@platformatic/kafka';
import {
  decodeNextOffset,
  encodeNextOffset,
  KAFKA_OFFSET_META_KEY,
  type KafkaPosition,
  type KafkaShardTarget,
  kafkaApplyDecision,
} from '../../../src/ingest/kafka/index.js';
import { formatSeries } from '../../../src/model/index.js';
import type { SampleBatch, ShardStore } from '../../../src/storage/store.js';

export const SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);

export function copyBatch(b: SampleBatch): SampleBatch {
  return {
    series: b.series.slice(),
    seriesRef: b.seriesRef.slice(0, b.length),
    timestamps: b.timestamps.slice(0, b.length),
    values: b.values.slice(0, b.length),
    length: b.length,
  };
}

/**
 * Faults a StoreTarget can inject into propose (chosen by the test's seeded Rng):
 *  - 'reject': fails before anything is applied;
 *  - 'ackLost': applies, then fails (the proposer cannot know it committed);
 *  - 'late': fails at once, applies a little later (a proposal that commits after its proposer gave up).
 */
export type Fault = 'reject' | 'ackLost' | 'late';

export class StoreTarget implements KafkaShardTarget {
  /** Samples applied (duplicates would show here even though the store dedups by (series, t)). */
  appliedSamples = 0;
  appliedEntries = 0;
  replays = 0;
  gaps = 0;
  proposals = 0;
  /** Set by the test: a fault for the next propose, or none. */
  fault: (() => Fault | undefined) | undefined;
  /** How long a 'late' proposal takes to apply (ms), or what it waits for. */
  lateDelayMs: () => number | Promise<void> = () => 20;
  /** Every position proposed, in order. */
  readonly positions: { firstOffset: bigint; lastOffset: bigint; samples: number }[] = [];
  private readonly late: Promise<void>[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly shard: number,
    readonly store: ShardStore,
  ) {}

  nextOffset(): bigint {
    return decodeNextOffset(this.store.getMeta(KAFKA_OFFSET_META_KEY));
  }

  /** Resolves when every delayed ('late') apply has happened. */
  async drain(): Promise<void> {
    await Promise.all(this.late);
    await this.chain;
  }

  propose(batch: SampleBatch, pos: KafkaPosition, _signal: AbortSignal): Promise<void> {
    this.proposals++;
    this.positions.push({ firstOffset: pos.firstOffset, lastOffset: pos.lastOffset, samples: batch.length });
    const copy = copyBatch(batch);
    const fault = this.fault?.();
    if (fault === 'reject') return Promise.reject(new Error('injected: proposal dropped'));
    // Entries apply in proposal order, like a Raft log.
    const applied = this.enqueue(copy, pos, fault === 'late' ? this.lateDelayMs() : 0);
    if (fault === 'late') {
      this.late.push(applied);
      return Promise.reject(new Error('injected: outcome unknown (commits later)'));
    }
    if (fault === 'ackLost') return applied.then(() => Promise.reject(new Error('injected: ack lost')));
    return applied;
  }

  private enqueue(batch: SampleBatch, pos: KafkaPosition, delay: number | Promise<void> = 0): Promise<void> {
    const run = async () => {
      if (typeof delay !== 'number') await delay;
      else if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      await this.apply(batch, pos);
    };
    const p = this.chain.then(run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** The apply half of exactly-once: samples + offset in one applyBatch, only if pos continues the offset. */
  private async apply(batch: SampleBatch, pos: KafkaPosition): Promise<void> {
    const decision = kafkaApplyDecision(this.nextOffset(), pos);
    if (decision === 'replay') this.replays++;
    if (decision === 'gap') this.gaps++;
    if (decision !== 'apply') return;
    const res = await this.store.append(batch, {
      [KAFKA_OFFSET_META_KEY]: encodeNextOffset(pos.lastOffset + 1n),
    });
    this.appliedEntries++;
    this.appliedSamples += res.accepted + res.rejected.length;
  }
}

/** Every sample in the store: formatted series → "t=v" strings, sorted (for exact comparisons). */
export function storeContent(store: ShardStore): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const metric of store.metricNames()) {
    for (const sd of store.select({ metric })) {
      const { ts, vals, count } = sd.toArrays();
      const list: string[] = [];
      for (let i = 0; i < count; i++) list.push(`${ts[i]}=${vals[i]}`);
      out.set(formatSeries(sd.series), list);
    }
  }
  return out;
}

/** Expected content, built by the test from what it produced. */
export class Expected {
  readonly series = new Map<string, Map<number, number>>();
  samples = 0;
  add(series: string, t: number, v: number): void {
    let m = this.series.get(series);
    if (m === undefined) {
      m = new Map();
      this.series.set(series, m);
    }
    if (!m.has(t)) this.samples++;
    m.set(t, v);
  }
  content(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [k, m] of this.series) {
      out.set(
        k,
        [...m.entries()].sort((a, b) => a[0] - b[0]).map(([t, v]) => `${t}=${v}`),
      );
    }
    return out;
  }
}

export function sortedEntries(m: Map<string, string[]>): [string, string[]][] {
  return [...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

export interface RawRecord {
  partition: number;
  value: Buffer | string;
  key?: string;
  /** Kafka record timestamp (ms). */
  timestamp?: number;
}

/** Produces records to explicit partitions (acks=all), in chunks of `chunk` records per send. */
export async function produce(
  brokers: string[],
  topic: string,
  records: RawRecord[],
  chunk = 500,
): Promise<void> {
  const p = new Producer({
    clientId: 'tidemark-test',
    bootstrapBrokers: brokers,
    idempotent: true,
    acks: -1,
    autocreateTopics: false,
  });
  try {
    for (let i = 0; i < records.length; i += chunk) {
      await p.send({
        messages: records.slice(i, i + chunk).map((r) => ({
          topic,
          partition: r.partition,
          value: typeof r.value === 'string' ? Buffer.from(r.value) : r.value,
          ...(r.key === undefined ? {} : { key: Buffer.from(r.key) }),
          ...(r.timestamp === undefined ? {} : { timestamp: BigInt(r.timestamp) }),
        })),
      });
    }
  } finally {
    await p.close();
  }
}
