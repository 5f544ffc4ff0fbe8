/**
 * An in-memory stand-in for a Kafka partition log, for the fast unit tests of the ingester's own logic
 * (batching, backpressure, the apply rule, retention gaps). Claims about Kafka itself are tested against
 * the real broker in broker.test.ts, never against this.
 */
import {
  type DeadLetter,
  type FetchedRecord,
  type FetchResult,
  type KafkaIo,
  KafkaOffsetOutOfRange,
  type PartitionFetcher,
} from '../../../src/ingest/kafka/index.js';

export class MemoryKafka implements KafkaIo {
  readonly logs: FetchedRecord[][];
  readonly logStart: bigint[];
  readonly dead: DeadLetter[] = [];
  fetches = 0;
  /** minBytes of every fetch, in order. */
  readonly minBytesAsked: number[] = [];
  /** Most records one fetch returns. */
  maxRecordsPerFetch = 7;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly topic: string,
    partitions: number,
  ) {
    this.logs = Array.from({ length: partitions }, () => []);
    this.logStart = Array.from({ length: partitions }, () => 0n);
  }

  append(partition: number, value: string | null, timestampMs = 1_700_000_000_000): bigint {
    const log = this.logs[partition]!;
    const offset = this.logStart[partition]! + BigInt(log.length);
    log.push({
      offset,
      timestampMs,
      key: null,
      value: value === null ? null : Buffer.from(value),
      headers: [],
    });
    for (const w of this.waiters) w();
    return offset;
  }

  /** Deletes records before `offset` (retention). */
  truncate(partition: number, offset: bigint): void {
    const drop = Number(offset - this.logStart[partition]!);
    this.logs[partition]!.splice(0, drop);
    this.logStart[partition] = offset;
  }

  /** Bytes of the records from `offset` on (a record without a value counts as 1). */
  bytesFrom(partition: number, offset: bigint): number {
    const log = this.logs[partition]!;
    let n = 0;
    for (let i = Math.max(0, Number(offset - this.logStart[partition]!)); i < log.length; i++)
      n += Math.max(1, log[i]!.value?.length ?? 0);
    return n;
  }

  end(partition: number): bigint {
    return this.logStart[partition]! + BigInt(this.logs[partition]!.length);
  }

  async partitionCount(topic: string): Promise<number | undefined> {
    return topic === this.topic ? this.logs.length : undefined;
  }

  openFetcher(_topic: string, partition: number): PartitionFetcher {
    let closed = false;
    let wake: (() => void) | undefined;
    return {
      fetch: async (
        offset: bigint,
        maxWaitMs: number,
        _maxBytes: number,
        minBytes = 1,
      ): Promise<FetchResult> => {
        if (closed) throw new Error('fetcher closed');
        this.fetches++;
        this.minBytesAsked.push(minBytes);
        const start = this.logStart[partition]!;
        if (offset < start || offset > this.end(partition)) {
          throw new KafkaOffsetOutOfRange(offset, start, this.end(partition));
        }
        // As the broker: answer once minBytes are there from `offset` (at least one record), or at maxWaitMs.
        const deadline = Date.now() + maxWaitMs;
        while (this.bytesFrom(partition, offset) < Math.max(1, minBytes) && Date.now() < deadline) {
          await new Promise<void>((resolve, reject) => {
            const done = () => {
              clearTimeout(timer);
              this.waiters.delete(done);
              wake = undefined;
              if (closed) reject(new Error('fetcher closed'));
              else resolve();
            };
            const timer = setTimeout(done, Math.max(0, deadline - Date.now()));
            this.waiters.add(done);
            wake = done;
          });
        }
        const from = Number(offset - this.logStart[partition]!);
        const records = this.logs[partition]!.slice(from, from + this.maxRecordsPerFetch);
        const last = records.at(-1);
        return {
          records,
          nextOffset: last === undefined ? offset : last.offset + 1n,
          highWatermark: this.end(partition),
          logStartOffset: this.logStart[partition]!,
        };
      },
      close: () => {
        closed = true;
        wake?.();
      },
    };
  }

  async produce(messages: DeadLetter[]): Promise<void> {
    this.dead.push(...messages);
  }

  async commitOffset(): Promise<void> {}

  async close(): Promise<void> {}
}
