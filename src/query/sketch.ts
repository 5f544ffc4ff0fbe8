/**
 * A mergeable quantile sketch: DDSketch (Masson, Rim, Lee, VLDB 2019) with unbounded sparse bins.
 *
 * A value x > 0 falls in bin k = ceil(log_gamma(x)), gamma = (1 + a) / (1 - a); the bin covers
 * (gamma^(k-1), gamma^k] and is estimated as 2 gamma^k / (gamma + 1), which is within relative error
 * `a` of every value in it. Negative values use the same bins on |x| (kept apart), values with
 * |x| < MIN_INDEXABLE count as zero. A quantile q is the value of rank floor(q (n - 1)) (0-based, in
 * sorted order), so the estimate is within relative error `a` of the exact lower-rank quantile
 * sorted[floor(q (n - 1))]. Bins are a pure function of the value, so merging sketches (adding counts
 * per bin) in any order and any split gives exactly the same sketch: the property partial aggregates need.
 */

/** Relative accuracy of every sketch in the engine (1%). */
export const SKETCH_ALPHA = 0.01;
const GAMMA = (1 + SKETCH_ALPHA) / (1 - SKETCH_ALPHA);
const LN_GAMMA = Math.log(GAMMA);
/** Smaller magnitudes are treated as 0 (keeps bin indexes small; far below any metric's precision). */
export const MIN_INDEXABLE = 1e-300;

/** Bin code: 2k for a positive value in bin k, 2k + 1 for a negative one (k may be negative). */
function code(x: number): number {
  const a = Math.abs(x);
  const k = Math.ceil(Math.log(Math.min(a, Number.MAX_VALUE)) / LN_GAMMA);
  return x > 0 ? 2 * k : 2 * k + 1;
}

function binValue(c: number): number {
  const neg = (c & 1) !== 0;
  const k = neg ? (c - 1) / 2 : c / 2;
  const v = (2 * GAMMA ** k) / (GAMMA + 1);
  return neg ? -v : v;
}

/** Orders bin codes by the values they hold (most negative first). */
function compareCodes(a: number, b: number): number {
  const an = (a & 1) !== 0;
  const bn = (b & 1) !== 0;
  if (an !== bn) return an ? -1 : 1;
  return an ? b - a : a - b;
}

export class Sketch {
  /** bin code -> count */
  readonly bins = new Map<number, number>();
  zeroCount = 0;
  count = 0;

  add(x: number, n = 1): void {
    if (Number.isNaN(x)) return; // NaN has no rank
    this.count += n;
    if (Math.abs(x) < MIN_INDEXABLE) {
      this.zeroCount += n;
      return;
    }
    const c = code(x);
    this.bins.set(c, (this.bins.get(c) ?? 0) + n);
  }

  addBin(c: number, n: number): void {
    this.count += n;
    this.bins.set(c, (this.bins.get(c) ?? 0) + n);
  }

  addZero(n: number): void {
    this.count += n;
    this.zeroCount += n;
  }

  merge(other: Sketch): void {
    for (const [c, n] of other.bins) this.bins.set(c, (this.bins.get(c) ?? 0) + n);
    this.zeroCount += other.zeroCount;
    this.count += other.count;
  }

  /** The estimate of the value of rank floor(q (n - 1)); NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.floor(q * (this.count - 1));
    const codes = [...this.bins.keys()].sort(compareCodes);
    let seen = 0;
    let zeroDone = false;
    for (const c of codes) {
      if (!zeroDone && (c & 1) === 0) {
        zeroDone = true;
        seen += this.zeroCount;
        if (seen > rank) return 0;
      }
      seen += this.bins.get(c)!;
      if (seen > rank) return binValue(c);
    }
    return 0; // only zeros remain
  }

  /** Bins sorted by code, for serialization. */
  sortedBins(): { codes: number[]; counts: number[] } {
    const codes = [...this.bins.keys()].sort((a, b) => a - b);
    return { codes, counts: codes.map((c) => this.bins.get(c)!) };
  }
}

/** Quantile of a percentile function name: p95 -> 0.95. */
export function quantileOf(fn: string): number {
  return Number(fn.slice(1)) / 100;
}

/** Exact lower-rank quantile of values[0..n) (sorts in place): what a sketch approximates. */
export function exactQuantile(values: Float64Array, n: number, q: number): number {
  if (n === 0) return Number.NaN;
  const sub = values.subarray(0, n);
  sub.sort();
  return sub[Math.floor(q * (n - 1))]!;
}
