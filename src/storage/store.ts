/**
 * The shard store: one per shard replica, the state machine under the shard's Raft group.
 * Two implementations share this interface and one test suite: LmdbShardStore (production) and
 * MemoryShardStore (the reference: simple and obviously correct). Format and semantics:
 * docs/format/store.md.
 */
import type { Series, SeriesId } from '../model/index.js';

/**
 * A columnar batch of samples: sample i is (series[seriesRef[i]], timestamps[i], values[i]) for
 * i in [0, length). No per-sample objects. Series objects are treated as immutable (the LMDB store
 * caches their resolution by object identity).
 */
export interface SampleBatch {
  series: Series[];
  seriesRef: Uint32Array;
  timestamps: Float64Array;
  values: Float64Array;
  length: number;
}

/**
 * Why a sample was not stored. Deterministic: the same state and batch always give the same answer.
 *  - too_old: more than `oooWindowMs` behind the newest sample accepted for the series;
 *  - out_of_retention: older than the retention cutoff (the series' data there is already dropped);
 *  - invalid_timestamp: not an integer in [MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS];
 *  - invalid_series: seriesRef out of range, or the series fails model validation;
 *  - invalid_sample: index past the end of one of the batch's arrays.
 */
export type RejectReason =
  | 'too_old'
  | 'out_of_retention'
  | 'invalid_timestamp'
  | 'invalid_series'
  | 'invalid_sample';

export interface RejectedSample {
  /** Index of the sample in the batch. */
  index: number;
  reason: RejectReason;
}

export interface ApplyResult {
  /** Samples stored (a replaced value counts as accepted). */
  accepted: number;
  rejected: RejectedSample[];
  /** True when `index <= appliedIndex()`: the entry was applied before, nothing changed. */
  duplicate: boolean;
}

export type MatchOp = '=' | '!=' | '=~' | '!~';

/**
 * A tag matcher. A series that lacks the tag is matched as if its value were the empty string
 * (Prometheus semantics): `!=` and `!~` match it, `= ''` matches exactly the series without the tag,
 * and `=~` matches it when the regex matches ''. Regexes are anchored at both ends (full match).
 */
export interface Matcher {
  name: string;
  op: MatchOp;
  value: string;
}

/** A selection: series of `metric` matching every matcher, samples with minT <= t <= maxT (both inclusive). */
export interface SelectRequest {
  metric: string;
  matchers?: readonly Matcher[];
  /** Inclusive; default 0. */
  minT?: number;
  /** Inclusive; default MAX_TIMESTAMP_MS. */
  maxT?: number;
}

export type DeleteRequest = SelectRequest;

export interface DeleteResult {
  /** Series that lost at least one sample. */
  seriesAffected: number;
  samplesDeleted: number;
  /** Series removed from the index because no sample was left. */
  seriesRemoved: number;
  duplicate: boolean;
  /** Set when the request was invalid (only possible through applyDelete: deleteSeries throws instead). */
  error?: { reason: string; field: string; message: string };
}

export interface RetentionResult {
  /** The cutoff in force after the call: samples with t < cutoff are gone. */
  cutoff: number;
  chunksDropped: number;
  seriesRemoved: number;
}

/** A per-sample cursor, like the chunk iterator: call next() or seek(t) before at(). */
export interface SampleIterator {
  /** Advances; false at the end or on error (check err()). */
  next(): boolean;
  /** Positions at the first sample with timestamp >= t (never moves backwards); false if none. */
  seek(t: number): boolean;
  /** The current sample. The object is reused: copy the fields if they must outlive the next call. */
  at(): { readonly t: number; readonly v: number };
  err(): Error | null;
}

/**
 * One selected series: an immutable snapshot of its samples in the selection range, taken when
 * select() ran (later writes are not seen).
 */
export interface SeriesData {
  readonly id: SeriesId;
  readonly series: Series;
  iterator(): SampleIterator;
  /**
   * Bulk access: calls fn with consecutive, sorted, non-overlapping blocks of samples. The arrays
   * are only valid during the call (they are reused). Throws DATA_CORRUPTION on a corrupt chunk.
   */
  forEachBlock(fn: (ts: Float64Array, vals: Float64Array, count: number) => void): void;
  /** Every sample, decoded into new arrays. */
  toArrays(): { ts: Float64Array; vals: Float64Array; count: number };
}

/** The newest sample of one series in a selection's range (selectLast). */
export interface LastSample {
  readonly id: SeriesId;
  readonly series: Series;
  readonly t: number;
  readonly v: number;
}

export interface StoreStats {
  series: number;
  chunks: number;
  /** Bytes of encoded chunks. */
  chunkBytes: number;
  /** Samples in sealed chunks (physically present; may include samples below the retention cutoff). */
  chunkSamples: number;
  headSamples: number;
  /** Size of the environment's data file (0 for the memory store). */
  diskBytes: number;
  walRecords: number;
  appliedIndex: number;
  checkpointIndex: number;
  retentionCutoff: number;
}

export interface StoreCapabilities {
  /** Data survives close() + reopen of the same directory. */
  readonly persistent: boolean;
  /**
   * Writes resolve once committed (they survive a process crash) but become durable against an OS crash,
   * and count in appliedIndex(), only at the store's next sync (periodic, or forced by checkpoint()).
   */
  readonly syncDeferred: boolean;
}

export interface ShardStore {
  readonly capabilities: StoreCapabilities;

  /**
   * Index of the last applied entry whose effects are durable (0 when none): the StateMachine
   * contract of src/raft/types.ts. Entries whose promise has not resolved yet are not counted.
   */
  appliedIndex(): number;
  /**
   * Applies the batch as entry `index`, recording the index and `meta` atomically with the data.
   * A no-op (duplicate: true) when index <= appliedIndex(). Never throws for bad data (bad samples are
   * rejected, deterministically); resolves when the effects are durable.
   */
  applyBatch(index: number, batch: SampleBatch, meta?: Record<string, Uint8Array>): Promise<ApplyResult>;
  /** applyBatch(appliedIndex() + 1, ...), for use outside Raft. */
  append(batch: SampleBatch, meta?: Record<string, Uint8Array>): Promise<ApplyResult>;
  /**
   * Deletes samples of the matching series in [minT, maxT] as entry `index` (same index semantics as
   * applyBatch). An invalid request does not throw: it applies nothing but the index, and says why.
   */
  applyDelete(
    index: number,
    request: DeleteRequest,
    meta?: Record<string, Uint8Array>,
  ): Promise<DeleteResult>;
  /** Validates (throws INVALID_ARGUMENT), then applyDelete(appliedIndex() + 1, ...). */
  deleteSeries(request: DeleteRequest): Promise<DeleteResult>;
  /**
   * Drops every sample older than nowMs - retentionMs (no-op without a retention): `retentionMs` given here
   * (the shard's replicated policy) or else the store's option. Not an indexed entry: each replica runs it on
   * its own schedule; the cutoff only moves forward.
   */
  applyRetention(nowMs: number, retentionMs?: number): Promise<RetentionResult>;

  /** A value stored through applyBatch/applyDelete's `meta` (e.g. Kafka offsets). */
  getMeta(key: string): Uint8Array | undefined;

  /** Matching series (sorted by id) that have at least one sample in range. Throws INVALID_ARGUMENT. */
  select(request: SelectRequest): SeriesData[];
  /**
   * For each matching series (sorted by id), its newest sample with minT <= t <= maxT; series with none
   * are left out. Equal to the last sample of each select() result, but reads at most a few chunks per
   * series (newest first) instead of every chunk in range: the cost is O(series), not O(samples).
   */
  selectLast(request: SelectRequest): LastSample[];
  seriesCount(): number;
  metricNames(): string[];
  labelNames(): string[];
  labelValues(name: string): string[];

  /** Makes recovery cheap: persists the head and truncates the write-ahead records. */
  checkpoint(): Promise<void>;
  /** Counters for monitoring and benchmarks. Cost: a scan of the chunk headers (O(chunks)). */
  stats(): StoreStats;
  /** Checkpoints and releases resources; later calls throw CLOSED. Idempotent. */
  close(): Promise<void>;
}
