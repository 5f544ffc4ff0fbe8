/**
 * The head: per series, the open chunk as sorted typed-array buffers (no per-sample objects), grown by
 * doubling up to the seal size (blocks from the store's HeadPool), plus the per-series state that write
 * decisions depend on.
 */
import type { Series } from '../model/index.js';
import type { HeadPool } from './head-pool.js';
import { lowerBound, upperBound } from './iterator.js';

const EMPTY = new Float64Array(0);

export class Head {
  ts: Float64Array = EMPTY;
  vals: Float64Array = EMPTY;
  count = 0;
  /**
   * How many leading samples the stored head checkpoint record holds exactly: a checkpoint encodes only the
   * samples after them (appends are the common case). Any change inside that prefix resets it to 0.
   */
  persisted = 0;

  constructor(private readonly pool: HeadPool) {}

  private grow(min: number): void {
    const ts = this.pool.take(Math.max(min, this.ts.length * 2));
    const vals = this.pool.take(ts.length);
    ts.set(this.ts.subarray(0, this.count));
    vals.set(this.vals.subarray(0, this.count));
    this.pool.give(this.ts);
    this.pool.give(this.vals);
    this.ts = ts;
    this.vals = vals;
  }

  /** Makes room for `total` samples at once (a batch's count for the series), instead of doubling per sample. */
  reserve(total: number): void {
    if (total > this.ts.length) this.grow(total);
  }

  /** Inserts in timestamp order; an equal timestamp replaces the value (last write wins). */
  insert(t: number, v: number): void {
    const n = this.count;
    if (n === 0 || t > this.ts[n - 1]!) {
      if (n === this.ts.length) this.grow(n + 1);
      this.ts[n] = t;
      this.vals[n] = v;
      this.count = n + 1;
      return;
    }
    const i = lowerBound(this.ts, 0, n, t);
    if (i < this.persisted) this.persisted = 0;
    if (this.ts[i] === t) {
      this.vals[i] = v;
      return;
    }
    if (n === this.ts.length) this.grow(n + 1);
    this.ts.copyWithin(i + 1, i, n);
    this.vals.copyWithin(i + 1, i, n);
    this.ts[i] = t;
    this.vals[i] = v;
    this.count = n + 1;
  }

  /** Removes samples with lo <= t <= hi; returns how many. */
  removeRange(lo: number, hi: number): number {
    const n = this.count;
    const a = lowerBound(this.ts, 0, n, lo);
    const b = upperBound(this.ts, a, n, hi);
    if (b === a) return 0;
    if (a < this.persisted) this.persisted = 0;
    this.ts.copyWithin(a, b, n);
    this.vals.copyWithin(a, b, n);
    this.count = n - (b - a);
    return b - a;
  }

  /** Replaces the content (used when loading a checkpoint). */
  load(ts: Float64Array, vals: Float64Array, count: number): void {
    this.count = 0;
    if (this.ts.length < count) this.grow(count);
    this.ts.set(ts.subarray(0, count));
    this.vals.set(vals.subarray(0, count));
    this.count = count;
    this.persisted = 0;
  }

  clear(): void {
    this.count = 0;
    this.persisted = 0;
  }

  /** Releases the buffers (after a seal, memory is handed back until the series writes again). */
  release(): void {
    this.pool.give(this.ts);
    this.pool.give(this.vals);
    this.ts = EMPTY;
    this.vals = EMPTY;
    this.count = 0;
    this.persisted = 0;
  }
}

/** Per-series state of the LMDB store; everything a write decision depends on is here (and checkpointed). */
export class SeriesState {
  readonly head: Head;
  /** Newest timestamp accepted since the series was created (the out-of-order window trails it). */
  maxT = Number.NEGATIVE_INFINITY;
  /** Upper bound of the sealed samples' timestamps: newer samples go to the head, others to sealed chunks. */
  sealedMaxT = Number.NEGATIVE_INFINITY;
  /** In the index (false before registration and after removal). */
  alive = false;
  /** Changed since the last checkpoint. */
  dirty = false;
  /** Batch bookkeeping: epoch of the batch that last used this series, and its slot in that batch. */
  epoch = 0;
  slot = 0;
  isNew = false;

  constructor(
    readonly id: Uint8Array,
    readonly hex: string,
    /** Canonical key bytes (the `series` value). */
    readonly key: Uint8Array,
    readonly series: Series,
    pool: HeadPool,
  ) {
    this.head = new Head(pool);
  }
}
