/**
 * The Kafka ingester: while this node leads shard i, a loop fetches partition i from the offset the shard
 * has applied, decodes records into bounded batches and proposes each with its Kafka position. The shard
 * applies samples and position in one transaction, and only when the position continues the stored one
 * (see KafkaShardTarget), which makes every record count exactly once however often it is read. Why
 * this holds across aborts, leader changes and crashes: docs/kafka.md.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type Logger, pino } from 'pino';
import { TidemarkError } from '../../errors/index.js';
import { BatchBuilder, emptyBatch } from '../batch.js';
import {
  type DeadLetter,
  type FetchedRecord,
  type FetchResult,
  type KafkaIo,
  KafkaOffsetOutOfRange,
  type PartitionFetcher,
} from './client.js';
import type { KafkaIngestConfig } from './config.js';
import { type DecodeIntoResult, decodeRecordInto, truncateBatch } from './formats.js';
import type { KafkaPosition, KafkaShardTarget, PartitionStats } from './types.js';

export interface PartitionIngesterOptions {
  config: KafkaIngestConfig;
  io: KafkaIo;
  target: KafkaShardTarget;
  logger?: Logger;
  /** Clock for linger (ms); injected so tests control it. Default Date.now. */
  now?: () => number;
  /** Delay before retrying after an error (ms, default 200, doubling up to 5 s). */
  retryDelayMs?: number;
}

/** Header names of dead-letter records. */
export const DLQ_HEADERS = {
  error: 'tidemark.error',
  reason: 'tidemark.reason',
  topic: 'tidemark.source.topic',
  partition: 'tidemark.source.partition',
  offset: 'tidemark.source.offset',
} as const;

/** Key of a dead-letter record: its source, so a DLQ reader can drop the duplicates a crash may cause. */
export function deadLetterKey(topic: string, partition: number, offset: bigint): string {
  return `${topic}/${partition}/${offset}`;
}

// Hard cap of one proposal (the batch builder's limit); the configured maxSamples is the soft flush point.
const HARD_MAX_SAMPLES = 1_000_000;
const HARD_MAX_SERIES = 1_000_000;
/** While a proposal is in flight, a fetch asks the broker to hold its answer until this much has arrived. */
export const IN_FLIGHT_MIN_BYTES = 256 * 1024;

class Aborted extends Error {}

/** Resolves with p, or rejects with Aborted as soon as `signal` aborts (p keeps running, its result dropped). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Aborted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Aborted());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** The loop of one partition. run() until the signal aborts; then call run() again to resume. */
export class PartitionIngester {
  readonly partition: number;
  private readonly config: KafkaIngestConfig;
  private readonly io: KafkaIo;
  private readonly target: KafkaShardTarget;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly retryDelayMs: number;
  private readonly inflight: Promise<void>[] = [];
  /** Proposals not yet settled (inflight keeps settled ones until the backpressure loop takes them out). */
  private unsettled = 0;
  private proposeError: unknown;
  private lastCommitMs = 0;
  private readonly s: PartitionStats;

  // The batch being built: records [batchFirst, cursor) are accounted for in it (or in dead).
  private builder!: BatchBuilder;
  private batchFirst = 0n;
  private cursor = 0n;
  private batchRecords = 0;
  private batchBytes = 0;
  private batchStartMs = 0;
  private dead: DeadLetter[] = [];
  /** Set when the stored offset fell below the log start: the next session first proposes the skip. */
  private gapTo: bigint | undefined;

  constructor(o: PartitionIngesterOptions) {
    this.config = o.config;
    this.io = o.io;
    this.target = o.target;
    this.partition = o.target.shard;
    this.log = (o.logger ?? pino({ level: 'silent' })).child({
      topic: o.config.topic,
      partition: this.partition,
    });
    this.now = o.now ?? Date.now;
    this.retryDelayMs = o.retryDelayMs ?? 200;
    this.s = {
      partition: this.partition,
      running: false,
      fetchOffset: 0n,
      committedOffset: 0n,
      highWatermark: -1n,
      lag: 0n,
      records: 0,
      samples: 0,
      badRecords: 0,
      batches: 0,
      fetchErrors: 0,
      proposeErrors: 0,
      deadLetterErrors: 0,
    };
  }

  stats(): PartitionStats {
    const committed = this.target.nextOffset();
    const hw = this.s.highWatermark;
    return { ...this.s, committedOffset: committed, lag: hw >= committed ? hw - committed : 0n };
  }

  /**
   * Consumes until `signal` aborts (leadership lost, shutdown), retrying errors with backoff. Resolves
   * once stopped and every proposal it started has settled; never rejects.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.s.running) throw new Error(`partition ${this.partition} is already being consumed`);
    this.s.running = true;
    let delay = this.retryDelayMs;
    try {
      while (!signal.aborted) {
        try {
          await this.session(signal);
        } catch (err) {
          if (signal.aborted || err instanceof Aborted) break;
          this.log.warn({ err }, 'kafka ingest: restarting the partition after an error');
          await this.settle();
          try {
            await sleep(delay, undefined, { signal });
          } catch {
            break;
          }
          delay = Math.min(delay * 2, 5000);
          continue;
        }
        delay = this.retryDelayMs;
      }
    } finally {
      await this.settle();
      this.s.running = false;
      this.log.info({ nextOffset: this.target.nextOffset() }, 'kafka ingest: stopped consuming');
    }
  }

  /** Waits for every started proposal to settle, so that nextOffset() covers whatever committed. */
  private async settle(): Promise<void> {
    while (this.inflight.length > 0) await this.inflight.shift();
    this.proposeError = undefined;
  }

  private resetBatch(first: bigint): void {
    this.builder = new BatchBuilder({ maxSamples: HARD_MAX_SAMPLES, maxSeries: HARD_MAX_SERIES });
    this.batchFirst = first;
    this.cursor = first;
    this.batchRecords = 0;
    this.batchBytes = 0;
    this.dead = [];
  }

  private async session(signal: AbortSignal): Promise<void> {
    const c = this.config;
    const start = this.target.nextOffset();
    const gapTo = this.gapTo;
    this.gapTo = undefined;
    if (gapTo !== undefined && gapTo > start) {
      // The skip past deleted records is itself a proposal (no samples): every replica agrees on it.
      await abortable(
        this.target.propose(
          emptyBatch(),
          { partition: this.partition, firstOffset: start, lastOffset: gapTo - 1n },
          signal,
        ),
        signal,
      );
      return;
    }
    this.resetBatch(start);
    this.log.info({ offset: start }, 'kafka ingest: consuming');
    const fetcher = this.io.openFetcher(c.topic, this.partition);
    const stop = () => fetcher.close();
    signal.addEventListener('abort', stop, { once: true });
    try {
      await this.consume(fetcher, signal);
    } finally {
      signal.removeEventListener('abort', stop);
      fetcher.close();
    }
  }

  private async consume(fetcher: PartitionFetcher, signal: AbortSignal): Promise<void> {
    const c = this.config;
    for (;;) {
      if (signal.aborted) return;
      if (this.proposeError !== undefined) throw this.proposeError;
      let wait = c.fetchMaxWaitMs;
      let minBytes = 1;
      if (this.cursor > this.batchFirst) {
        wait = Math.max(0, Math.min(wait, c.batch.lingerMs - (this.now() - this.batchStartMs)));
        // A batch is open and a proposal is in flight: what arrives now waits for that proposal (or the
        // linger) anyway, so the broker may hold its answer until more has arrived instead of answering every
        // record with its own request (each costs the broker and this node about as much as its data).
        if (this.unsettled > 0)
          minBytes = Math.max(1, Math.min(IN_FLIGHT_MIN_BYTES, c.batch.maxBytes - this.batchBytes));
      }
      this.s.fetchOffset = this.cursor;
      let res: FetchResult;
      try {
        res = await abortable(
          fetcher.fetch(this.cursor, Math.max(1, wait), c.fetchMaxBytes, minBytes),
          signal,
        );
      } catch (err) {
        if (err instanceof Aborted) throw err;
        this.s.fetchErrors++;
        if (err instanceof KafkaOffsetOutOfRange) throw this.outOfRange(err);
        throw err;
      }
      this.s.highWatermark = res.highWatermark;
      for (const rec of res.records) {
        if (rec.offset < this.cursor) continue;
        const size = rec.value?.length ?? 0;
        // Limits are checked before a record is added (the batch may end one record past maxSamples).
        const full =
          this.batchRecords > 0 &&
          (this.builder.length >= c.batch.maxSamples ||
            this.batchRecords >= c.batch.maxRecords ||
            this.batchBytes + size > c.batch.maxBytes);
        if (full) {
          // The batch ends just before this record (offsets skipped in between included).
          this.cursor = rec.offset;
          await this.flush(signal);
        }
        this.cursor = rec.offset;
        let decoded = this.decode(rec);
        if (decoded === 'retry') {
          await this.flush(signal);
          decoded = this.decode(rec);
          if (decoded === 'retry') throw new Error('unreachable: an empty batch was full');
        }
        if (decoded.ok) {
          this.s.samples += decoded.samples;
        } else {
          this.s.badRecords++;
          this.log.warn(
            { offset: rec.offset.toString(), reason: decoded.reason, error: decoded.message },
            'kafka ingest: bad record',
          );
          if (c.deadLetterTopic !== null) {
            const offset = rec.offset;
            this.dead.push({
              topic: c.deadLetterTopic,
              key: deadLetterKey(c.topic, this.partition, offset),
              value: rec.value,
              headers: {
                [DLQ_HEADERS.error]: decoded.message,
                [DLQ_HEADERS.reason]: decoded.reason,
                [DLQ_HEADERS.topic]: c.topic,
                [DLQ_HEADERS.partition]: String(this.partition),
                [DLQ_HEADERS.offset]: offset.toString(),
              },
            });
          }
        }
        if (this.batchRecords === 0) this.batchStartMs = this.now();
        this.s.records++;
        this.batchRecords++;
        this.batchBytes += size;
        this.cursor = rec.offset + 1n;
      }
      if (res.nextOffset > this.cursor) {
        // Offsets with no data record (transaction markers, compacted gaps) are covered by the batch too.
        if (this.cursor === this.batchFirst) this.batchStartMs = this.now();
        this.cursor = res.nextOffset;
      }
      if (this.cursor === this.batchFirst) continue;
      const caughtUp = res.highWatermark >= 0n && this.cursor >= res.highWatermark;
      const full =
        this.builder.length >= c.batch.maxSamples ||
        this.batchRecords >= c.batch.maxRecords ||
        this.batchBytes >= c.batch.maxBytes;
      // Caught up: flush at once only while no proposal is in flight (nothing to overlap with, so waiting
      // would only add latency). While one is, records keep joining this batch until it settles, lingerMs
      // passes or the batch is full: under load one proposal (one log write and one apply on every replica)
      // carries what many small fetches brought, instead of one proposal per fetch (Nagle's rule).
      if ((caughtUp && this.unsettled === 0) || full || this.now() - this.batchStartMs >= c.batch.lingerMs) {
        await this.flush(signal);
      }
    }
  }

  /**
   * Decodes a record into the current batch, all or nothing: a bad record's partial samples are taken out
   * again. 'retry': the record did not fit the builder's hard caps next to the batch's other records
   * (it is bad only if it does not fit an empty batch either).
   */
  private decode(rec: FetchedRecord): DecodeIntoResult | 'retry' {
    const c = this.config;
    const opts = { recordTimestampMs: rec.timestampMs, precision: c.precision, separator: c.separator };
    const before = this.builder.length;
    const seriesBefore = this.builder.seriesCount;
    const r = decodeRecordInto(c.format, rec.value, this.builder, opts);
    if (r.ok) return r;
    if (this.builder.length !== before || this.builder.seriesCount !== seriesBefore) {
      this.builder = truncateBatch(this.builder, before);
    }
    // It may fit on its own: the caller flushes the batch and decodes it again.
    if (before > 0 && (r.reason === 'batch_too_many_samples' || r.reason === 'batch_too_many_series')) {
      return 'retry';
    }
    return r;
  }

  /** Proposes records [batchFirst, cursor) and starts the next batch at cursor. */
  private async flush(signal: AbortSignal): Promise<void> {
    const pos: KafkaPosition = {
      partition: this.partition,
      firstOffset: this.batchFirst,
      lastOffset: this.cursor - 1n,
    };
    const batch = this.builder.build();
    const dead = this.dead;
    const next = this.cursor;
    // Dead letters go out before the proposal that moves the offset past them: a crash in between
    // re-reads and re-sends them (same key), it never loses one.
    if (dead.length > 0) {
      try {
        await abortable(this.io.produce(dead), signal);
      } catch (err) {
        if (!(err instanceof Aborted)) this.s.deadLetterErrors++;
        throw err;
      }
    }
    // Backpressure: at most maxInFlight proposals wait for commit; the fetch loop waits here meanwhile.
    while (this.inflight.length >= this.config.maxInFlight) {
      await abortable(this.inflight[0]!, signal);
      this.inflight.shift();
    }
    if (this.proposeError !== undefined) throw this.proposeError;
    this.s.batches++;
    this.unsettled++;
    const p = Promise.resolve()
      .then(() => this.target.propose(batch, pos, signal))
      .then(
        () => {
          this.unsettled--;
          this.committed(next);
        },
        (err: unknown) => {
          this.unsettled--;
          if (!signal.aborted) {
            this.s.proposeErrors++;
            this.proposeError ??= err;
          }
        },
      );
    this.inflight.push(p);
    this.resetBatch(next);
  }

  private committed(next: bigint): void {
    const group = this.config.monitorGroup;
    if (group === null) return;
    const t = this.now();
    if (t - this.lastCommitMs < 1000) return;
    this.lastCommitMs = t;
    // Monitoring only (lag in Kafka tools): never awaited, never the source of truth.
    this.io.commitOffset(group, this.config.topic, this.partition, next).catch((err: unknown) => {
      this.log.debug({ err }, 'kafka ingest: monitoring offset commit failed');
    });
  }

  private outOfRange(err: KafkaOffsetOutOfRange): Error {
    // Below the log start: retention deleted records this shard never applied. Nothing can bring them
    // back; stalling would not either, so say so loudly and go on from the oldest record there is.
    if (err.offset < err.logStartOffset) {
      this.log.error(
        { offset: err.offset.toString(), logStartOffset: err.logStartOffset.toString() },
        'kafka ingest: records were deleted by retention before this shard applied them; skipping to the log start',
      );
      this.gapTo = err.logStartOffset;
    }
    return new TidemarkError(
      'FAILED_PRECONDITION',
      'kafka_offset_out_of_range',
      `topic ${this.config.topic} partition ${this.partition}: ${err.message}` +
        (err.offset > err.highWatermark
          ? '; the shard has applied more than the partition holds: was the topic deleted and re-created?'
          : ''),
    );
  }
}
