/**
 * Read side: an immutable per-series snapshot (encoded sealed chunks + a copy of the head samples in
 * range) with bulk block access and a next/seek/at/err iterator. Samples are clipped to [lo, hi].
 */
import { decodeChunk, MAX_CHUNK_SAMPLES, readChunkHeader } from '../chunk/index.js';
import type { Series, SeriesId } from '../model/index.js';
import type { SampleIterator, SeriesData } from './store.js';

/** First index in [from, n) with ts[i] >= t (n if none). */
export function lowerBound(ts: ArrayLike<number>, from: number, n: number, t: number): number {
  let lo = from;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ts[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index in [from, n) with ts[i] > t (n if none). */
export function upperBound(ts: ArrayLike<number>, from: number, n: number, t: number): number {
  let lo = from;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ts[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Decode scratch shared by forEachBlock calls that do not nest (a nested call allocates its own).
let scratchBusy = false;
const scratchTs = new Float64Array(MAX_CHUNK_SAMPLES);
const scratchVals = new Float64Array(MAX_CHUNK_SAMPLES);

export class SnapshotSeries implements SeriesData {
  constructor(
    readonly id: SeriesId,
    readonly series: Series,
    /** Encoded sealed chunks in time order; each may hold samples outside [lo, hi]. */
    private readonly chunks: readonly Uint8Array[],
    /** Samples after the chunks (already inside [lo, hi]). */
    private readonly tailTs: Float64Array,
    private readonly tailVals: Float64Array,
    private readonly lo: number,
    private readonly hi: number,
  ) {}

  forEachBlock(fn: (ts: Float64Array, vals: Float64Array, count: number) => void): void {
    const own = !scratchBusy;
    let ts: Float64Array = own ? scratchTs : new Float64Array(MAX_CHUNK_SAMPLES);
    let vals: Float64Array = own ? scratchVals : new Float64Array(MAX_CHUNK_SAMPLES);
    if (own) scratchBusy = true;
    try {
      for (const bytes of this.chunks) {
        const d = decodeChunk(bytes, ts, vals);
        ts = d.ts;
        vals = d.vals;
        const a = lowerBound(ts, 0, d.count, this.lo);
        const b = upperBound(ts, a, d.count, this.hi);
        if (b > a) fn(ts.subarray(a, b), vals.subarray(a, b), b - a);
      }
    } finally {
      if (own) scratchBusy = false;
    }
    if (this.tailTs.length > 0) fn(this.tailTs, this.tailVals, this.tailTs.length);
  }

  toArrays(): { ts: Float64Array; vals: Float64Array; count: number } {
    const parts: [Float64Array, Float64Array][] = [];
    let n = 0;
    this.forEachBlock((ts, vals, count) => {
      parts.push([ts.slice(), vals.slice()]);
      n += count;
    });
    const ts = new Float64Array(n);
    const vals = new Float64Array(n);
    let o = 0;
    for (const [t, v] of parts) {
      ts.set(t, o);
      vals.set(v, o);
      o += t.length;
    }
    return { ts, vals, count: n };
  }

  iterator(): SampleIterator {
    return new SnapshotIterator(this.chunks, this.tailTs, this.tailVals, this.lo, this.hi);
  }
}

class SnapshotIterator implements SampleIterator {
  private ts: Float64Array = new Float64Array(0);
  private vals: Float64Array = new Float64Array(0);
  /** Valid samples of the current block are [i, end). */
  private i = 0;
  private end = 0;
  private started = false;
  /** Next chunk to open; chunks.length + 1 once the tail was opened. */
  private nextBlock = 0;
  private error: Error | null = null;
  private readonly cur = { t: Number.NaN, v: Number.NaN };

  constructor(
    private readonly chunks: readonly Uint8Array[],
    private readonly tailTs: Float64Array,
    private readonly tailVals: Float64Array,
    private readonly lo: number,
    private readonly hi: number,
  ) {}

  /** Opens the next non-empty block; false at the end or on error. `skipBelow`: skip chunks ending before it. */
  private openNext(skipBelow: number): boolean {
    if (this.error !== null) return false;
    while (this.nextBlock < this.chunks.length) {
      const bytes = this.chunks[this.nextBlock++]!;
      try {
        if (skipBelow > this.lo && readChunkHeader(bytes, { verifyChecksum: false }).maxT < skipBelow)
          continue;
        const d = decodeChunk(
          bytes,
          this.ts.length > 0 ? this.ts : undefined,
          this.vals.length > 0 ? this.vals : undefined,
        );
        this.ts = d.ts;
        this.vals = d.vals;
        this.i = lowerBound(d.ts, 0, d.count, this.lo);
        this.end = upperBound(d.ts, this.i, d.count, this.hi);
      } catch (err) {
        this.error = err as Error;
        this.i = this.end = 0;
        return false;
      }
      if (this.end > this.i) return true;
    }
    if (this.nextBlock === this.chunks.length) {
      this.nextBlock++;
      if (this.tailTs.length > 0) {
        this.ts = this.tailTs;
        this.vals = this.tailVals;
        this.i = 0;
        this.end = this.tailTs.length;
        return true;
      }
    }
    this.i = this.end = 0;
    return false;
  }

  next(): boolean {
    if (!this.started) {
      this.started = true;
      if (!this.openNext(this.lo)) return false;
      return this.load();
    }
    if (this.i + 1 < this.end) {
      this.i++;
      return this.load();
    }
    if (!this.openNext(this.lo)) return false;
    return this.load();
  }

  seek(t: number): boolean {
    if (!this.started) {
      this.started = true;
      if (!this.openNext(t)) return false;
    } else if (this.i >= this.end) {
      return false;
    }
    if (this.ts[this.i]! >= t) return this.load();
    while (this.ts[this.end - 1]! < t) {
      if (!this.openNext(t)) return false;
    }
    this.i = lowerBound(this.ts, this.i, this.end, t);
    return this.load();
  }

  private load(): boolean {
    this.cur.t = this.ts[this.i]!;
    this.cur.v = this.vals[this.i]!;
    return true;
  }

  at(): { readonly t: number; readonly v: number } {
    return this.cur;
  }

  err(): Error | null {
    return this.error;
  }
}
