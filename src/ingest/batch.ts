/**
 * Batch builder: accumulates samples into the columnar SampleBatch the store applies, deduplicating
 * series within the batch, plus splitByShard to route a batch to shard groups. See docs/ingest.md.
 */
import { TidemarkError } from '../errors/index.js';
import {
  canonicalKey,
  internedId,
  internedKey,
  keyString,
  type Series,
  seriesIdOfKey,
  shardOf,
} from '../model/index.js';
import type { SampleBatch } from '../storage/store.js';

export interface BatchLimits {
  /** Most samples one batch may hold (default 1,000,000). */
  maxSamples?: number;
  /** Most distinct series one batch may hold (default 100,000). */
  maxSeries?: number;
  /** Initial capacity of the sample arrays (default 1024); they grow by doubling. */
  initialCapacity?: number;
}

export const DEFAULT_MAX_BATCH_SAMPLES = 1_000_000;
export const DEFAULT_MAX_BATCH_SERIES = 100_000;

/** A request-size limit was exceeded: the client must split the request (a retry as-is cannot succeed). */
export function limitExceeded(reason: string, limit: string, value: number, message: string): TidemarkError {
  return new TidemarkError('INVALID_ARGUMENT', reason, message, { field: limit, limit: value });
}

/**
 * Dedup key of a *validated* series (see makeSeries): metric, then tags sorted by name, separated by
 * U+0000, which validation never lets into a name or value, so distinct series never collide. Tag order in
 * the input does not matter.
 */
export function seriesDedupKey(series: Series): string {
  return series.metric + tagsDedupSuffix(series.tags);
}

/** The tags' part of seriesDedupKey (for callers that reuse one tag set under many metrics). */
export function tagsDedupSuffix(tags: Readonly<Record<string, string>>): string {
  let key = '';
  let names: string[] | undefined;
  for (const n in tags) {
    if (names === undefined) names = [n];
    else names.push(n);
  }
  if (names === undefined) return key;
  if (names.length > 1) names.sort();
  for (const n of names) key += `\u0000${n}\u0000${tags[n]}`;
  return key;
}

/**
 * Accumulates samples. Series must already be validated (makeSeries / the format parsers do it);
 * timestamps and values are stored as given (the parsers validate them; the store rejects bad ones).
 */
export class BatchBuilder {
  readonly maxSamples: number;
  readonly maxSeries: number;
  private readonly series: Series[] = [];
  private readonly refs = new Map<string, number>();
  private seriesRefs: Uint32Array;
  private ts: Float64Array;
  private vals: Float64Array;
  private n = 0;

  constructor(limits: BatchLimits = {}) {
    this.maxSamples = limits.maxSamples ?? DEFAULT_MAX_BATCH_SAMPLES;
    this.maxSeries = limits.maxSeries ?? DEFAULT_MAX_BATCH_SERIES;
    const cap = Math.max(1, Math.min(limits.initialCapacity ?? 1024, this.maxSamples));
    this.seriesRefs = new Uint32Array(cap);
    this.ts = new Float64Array(cap);
    this.vals = new Float64Array(cap);
  }

  /** Samples added so far. */
  get length(): number {
    return this.n;
  }

  /** Distinct series so far. */
  get seriesCount(): number {
    return this.series.length;
  }

  /** The ref of `series` in this batch, adding it if new (deduplicated by series identity). */
  ref(series: Series): number {
    return this.refKeyed(series, seriesDedupKey(series));
  }

  /** ref() with the series' seriesDedupKey already known. */
  refKeyed(series: Series, key: string): number {
    const found = this.refs.get(key);
    if (found !== undefined) return found;
    if (this.series.length >= this.maxSeries) {
      throw limitExceeded(
        'batch_too_many_series',
        'maxSeries',
        this.maxSeries,
        `the request has more than ${this.maxSeries} distinct series (limit maxSeries); split it`,
      );
    }
    const ref = this.series.length;
    this.series.push(series);
    this.refs.set(key, ref);
    return ref;
  }

  /** Appends one sample of the series with ref `ref` (from ref()). */
  addRef(ref: number, t: number, v: number): void {
    let i = this.n;
    if (i === this.seriesRefs.length) this.grow();
    this.seriesRefs[i] = ref;
    this.ts[i] = t;
    this.vals[i] = v;
    this.n = ++i;
  }

  /** Appends one sample; returns the series' ref. */
  add(series: Series, t: number, v: number): number {
    const ref = this.ref(series);
    this.addRef(ref, t, v);
    return ref;
  }

  /** Throws the maxSamples error if `more` samples would not fit. */
  ensureRoom(more: number): void {
    if (this.n + more > this.maxSamples) this.tooManySamples();
  }

  /**
   * The batch so far. The arrays are views of the builder's buffers: call build() once, when done
   * (adding more afterwards may overwrite or reallocate them).
   */
  build(): SampleBatch {
    return {
      series: this.series,
      seriesRef: this.seriesRefs.subarray(0, this.n),
      timestamps: this.ts.subarray(0, this.n),
      values: this.vals.subarray(0, this.n),
      length: this.n,
    };
  }

  private grow(): void {
    if (this.n >= this.maxSamples) this.tooManySamples();
    const cap = Math.min(this.maxSamples, this.seriesRefs.length * 2);
    const r = new Uint32Array(cap);
    r.set(this.seriesRefs);
    this.seriesRefs = r;
    const t = new Float64Array(cap);
    t.set(this.ts);
    this.ts = t;
    const v = new Float64Array(cap);
    v.set(this.vals);
    this.vals = v;
  }

  private tooManySamples(): never {
    throw limitExceeded(
      'batch_too_many_samples',
      'maxSamples',
      this.maxSamples,
      `the request has more than ${this.maxSamples} samples (limit maxSamples); split it`,
    );
  }
}

/** Limits with a default initial capacity suited to about `estimate` samples (the caller's wins). */
export function sized(limits: BatchLimits | undefined, estimate: number): BatchLimits {
  if (limits?.initialCapacity !== undefined) return limits;
  return { ...limits, initialCapacity: Math.max(16, Math.min(4096, estimate)) };
}

/**
 * canonicalKey (docs/model.md) without the native UTF-8 encoder for all-ASCII series (the common case: for
 * ASCII, JS string order is UTF-8 byte order); any other series goes through the model's canonicalKey.
 */
export function canonicalKeyFast(series: Series): Uint8Array {
  const metric = series.metric;
  const tags = series.tags;
  const names = Object.keys(tags);
  let len = metric.length;
  for (let i = 0; i < names.length; i++) len += 2 + names[i].length + tags[names[i]].length;
  if (names.length > 1) names.sort();
  const out = new Uint8Array(len);
  let o = 0;
  for (let i = 0; i < metric.length; i++) {
    const c = metric.charCodeAt(i);
    if (c >= 0x80) return canonicalKey(series);
    out[o++] = c;
  }
  for (let k = 0; k < names.length; k++) {
    const n = names[k];
    const v = tags[n];
    out[o++] = 0xff;
    for (let i = 0; i < n.length; i++) {
      const c = n.charCodeAt(i);
      if (c >= 0x80) return canonicalKey(series);
      out[o++] = c;
    }
    out[o++] = 0xff;
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c >= 0x80) return canonicalKey(series);
      out[o++] = c;
    }
  }
  return out;
}

/** An empty batch. */
export function emptyBatch(): SampleBatch {
  return {
    series: [],
    seriesRef: new Uint32Array(0),
    timestamps: new Float64Array(0),
    values: new Float64Array(0),
    length: 0,
  };
}

/** A batch split by shard: parts[s] as splitByShard gives it, origin[s][j] = the batch index of its sample j. */
export interface ShardRouting {
  parts: SampleBatch[];
  origin: Uint32Array[];
}

/**
 * Splits a batch by shard: result[s] holds exactly the samples whose series lands on shard s
 * (shardOf(seriesId(series), shardCount)), in their original order, with series renumbered per shard.
 * Each series' shard is computed once; series no sample references are dropped, and a series the batch
 * holds twice (by canonical key) becomes one. Every entry of the result is a batch (possibly empty).
 */
export function splitByShard(batch: SampleBatch, shardCount: number): SampleBatch[] {
  return routeByShard(batch, shardCount).parts;
}

/** splitByShard, plus where each part's samples were in the batch (to map per-sample answers back). */
export function routeByShard(batch: SampleBatch, shardCount: number): ShardRouting {
  if (!Number.isInteger(shardCount) || shardCount < 1) {
    throw new RangeError(`shardCount must be a positive integer, got ${shardCount}`);
  }
  const nSeries = batch.series.length;
  const n = batch.length;
  const refs = batch.seriesRef;
  // Only series that samples reference are hashed.
  const shardOfRef = new Int32Array(nSeries).fill(-1);
  const localRef = new Uint32Array(nSeries);
  const counts = new Uint32Array(shardCount);
  const seriesPer: Series[][] = [];
  for (let s = 0; s < shardCount; s++) seriesPer.push([]);
  // The same series may come twice (a request need not be deduplicated): one entry series per key.
  const refOfKey = nSeries > 1 ? new Map<string, number>() : undefined;
  for (let i = 0; i < n; i++) {
    const r = refs[i];
    if (r >= nSeries) throw new RangeError(`seriesRef[${i}] = ${r} is out of range (${nSeries} series)`);
    let s = shardOfRef[r];
    if (s < 0) {
      const series = batch.series[r];
      const key = internedKey(series) ?? canonicalKeyFast(series);
      const k = refOfKey === undefined ? '' : keyString(key);
      const first = refOfKey?.get(k);
      if (first !== undefined) {
        s = shardOfRef[first];
        localRef[r] = localRef[first];
      } else {
        refOfKey?.set(k, r);
        s = shardCount === 1 ? 0 : shardOf(internedId(series) ?? seriesIdOfKey(key), shardCount);
        localRef[r] = seriesPer[s].length;
        seriesPer[s].push(series);
      }
      shardOfRef[r] = s;
    }
    counts[s]++;
  }
  if (shardCount === 1 && nSeries === seriesPer[0].length) {
    // Fast path: one shard and every series used — the batch itself (copied so callers may mutate).
    const origin = new Uint32Array(n);
    for (let i = 0; i < n; i++) origin[i] = i;
    return {
      parts: [
        {
          series: batch.series.slice(),
          seriesRef: refs.slice(0, n),
          timestamps: batch.timestamps.slice(0, n),
          values: batch.values.slice(0, n),
          length: n,
        },
      ],
      origin: [origin],
    };
  }
  // One array per column for every part (a part is a view of its range): a counting sort by shard whose
  // inner loop touches only flat arrays, and 4 allocations instead of 4 per shard.
  const allRefs = new Uint32Array(n);
  const allTs = new Float64Array(n);
  const allVals = new Float64Array(n);
  const allOrigin = new Uint32Array(n);
  const next = new Uint32Array(shardCount);
  for (let s = 1; s < shardCount; s++) next[s] = next[s - 1] + counts[s - 1];
  const ts = batch.timestamps;
  // Values are copied as two 32-bit words, so every NaN payload survives bit-exactly (a float64 load and
  // store may canonicalize NaNs). Sample by sample: line protocol interleaves series (one run per sample).
  const src = new Uint32Array(batch.values.buffer, batch.values.byteOffset, 2 * n);
  const dst = new Uint32Array(allVals.buffer);
  for (let i = 0; i < n; i++) {
    const r = refs[i];
    const p = next[shardOfRef[r]]++;
    allRefs[p] = localRef[r];
    allTs[p] = ts[i];
    dst[2 * p] = src[2 * i];
    dst[2 * p + 1] = src[2 * i + 1];
    allOrigin[p] = i;
  }
  const out: SampleBatch[] = [];
  const origin: Uint32Array[] = [];
  for (let s = 0, from = 0; s < shardCount; s++) {
    const to = from + counts[s];
    out.push({
      series: seriesPer[s],
      seriesRef: allRefs.subarray(from, to),
      timestamps: allTs.subarray(from, to),
      values: allVals.subarray(from, to),
      length: counts[s],
    });
    origin.push(allOrigin.subarray(from, to));
    from = to;
  }
  return { parts: out, origin };
}
