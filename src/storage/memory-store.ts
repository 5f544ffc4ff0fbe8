/**
 * The reference implementation: per series a sorted array of samples, everything in memory, no
 * persistence. Simple and obviously correct; the LMDB store must agree with it on every query
 * (test/storage/differential.test.ts).
 */
import { closed, invalidArgument } from '../errors/index.js';
import {
  MAX_TIMESTAMP_MS,
  MIN_TIMESTAMP_MS,
  type Series,
  seriesIdHex,
  seriesIdOfKey,
} from '../model/index.js';
import { lowerBound, SnapshotSeries, upperBound } from './iterator.js';
import { type CompiledSelect, compileSelect, matchesAll } from './matchers.js';
import { resolveStoreOptions, type StoreOptions } from './options.js';
import type {
  ApplyResult,
  DeleteRequest,
  DeleteResult,
  LastSample,
  RejectedSample,
  RetentionResult,
  SampleBatch,
  SelectRequest,
  SeriesData,
  ShardStore,
  StoreCapabilities,
  StoreStats,
} from './store.js';
import { canonicalKeyOrNull, checkBatch, checkIndex, checkMeta, checkNow } from './validate.js';

interface MemSeries {
  id: Uint8Array;
  hex: string;
  series: Series;
  ts: number[];
  vals: number[];
  maxT: number;
}

export class MemoryShardStore implements ShardStore {
  readonly capabilities: StoreCapabilities = { persistent: false, syncDeferred: false };
  private readonly opts: StoreOptions;
  private readonly series = new Map<string, MemSeries>();
  private readonly meta = new Map<string, Uint8Array>();
  private applied = 0;
  private cutoff = MIN_TIMESTAMP_MS;
  private isClosed = false;

  constructor(options?: Partial<StoreOptions>) {
    this.opts = resolveStoreOptions(options);
  }

  private check(): void {
    if (this.isClosed) throw closed('shard store');
  }

  appliedIndex(): number {
    this.check();
    return this.applied;
  }

  async applyBatch(
    index: number,
    batch: SampleBatch,
    meta?: Record<string, Uint8Array>,
  ): Promise<ApplyResult> {
    this.check();
    checkIndex(index);
    checkBatch(batch);
    checkMeta(meta);
    if (index <= this.applied) return { accepted: 0, rejected: [], duplicate: true };
    const rejected: RejectedSample[] = [];
    let accepted = 0;
    const resolved: (MemSeries | null | undefined)[] = [];
    const pending = new Map<string, MemSeries>();
    const n = batch.length;
    for (let i = 0; i < n; i++) {
      if (i >= batch.seriesRef.length || i >= batch.timestamps.length || i >= batch.values.length) {
        rejected.push({ index: i, reason: 'invalid_sample' });
        continue;
      }
      const ref = batch.seriesRef[i]!;
      if (ref >= batch.series.length) {
        rejected.push({ index: i, reason: 'invalid_series' });
        continue;
      }
      let s = resolved[ref];
      if (s === undefined) {
        const key = canonicalKeyOrNull(batch.series[ref]!);
        if (key === null) s = null;
        else {
          const id = seriesIdOfKey(key);
          const hex = seriesIdHex(id);
          s = this.series.get(hex) ?? pending.get(hex);
          if (s === undefined) {
            s = {
              id,
              hex,
              series: { metric: batch.series[ref]!.metric, tags: { ...batch.series[ref]!.tags } },
              ts: [],
              vals: [],
              maxT: Number.NEGATIVE_INFINITY,
            };
            pending.set(hex, s);
          }
        }
        resolved[ref] = s;
      }
      if (s === null) {
        rejected.push({ index: i, reason: 'invalid_series' });
        continue;
      }
      const t = batch.timestamps[i]!;
      if (!Number.isInteger(t) || t < MIN_TIMESTAMP_MS || t > MAX_TIMESTAMP_MS) {
        rejected.push({ index: i, reason: 'invalid_timestamp' });
        continue;
      }
      if (t < this.cutoff) {
        rejected.push({ index: i, reason: 'out_of_retention' });
        continue;
      }
      if (t < s.maxT - this.opts.oooWindowMs) {
        rejected.push({ index: i, reason: 'too_old' });
        continue;
      }
      if (!this.series.has(s.hex)) this.series.set(s.hex, s);
      const j = lowerBound(s.ts, 0, s.ts.length, t);
      if (s.ts[j] === t) s.vals[j] = batch.values[i]!;
      else {
        s.ts.splice(j, 0, t);
        s.vals.splice(j, 0, batch.values[i]!);
      }
      if (t > s.maxT) s.maxT = t;
      accepted++;
    }
    this.applied = index;
    this.setMeta(meta);
    return { accepted, rejected, duplicate: false };
  }

  async append(batch: SampleBatch, meta?: Record<string, Uint8Array>): Promise<ApplyResult> {
    this.check();
    return this.applyBatch(this.applied + 1, batch, meta);
  }

  private setMeta(meta?: Record<string, Uint8Array>): void {
    if (meta === undefined) return;
    for (const [k, v] of Object.entries(meta)) this.meta.set(k, new Uint8Array(v));
  }

  async applyDelete(
    index: number,
    request: DeleteRequest,
    meta?: Record<string, Uint8Array>,
  ): Promise<DeleteResult> {
    this.check();
    checkIndex(index);
    checkMeta(meta);
    const result: DeleteResult = { seriesAffected: 0, samplesDeleted: 0, seriesRemoved: 0, duplicate: false };
    if (index <= this.applied) return { ...result, duplicate: true };
    let sel: CompiledSelect;
    try {
      sel = compileSelect(request);
    } catch (err) {
      this.applied = index;
      this.setMeta(meta);
      const e = err as { reason: string; field: string; message: string };
      return { ...result, error: { reason: e.reason, field: e.field, message: e.message } };
    }
    for (const s of this.matching(sel)) {
      const a = lowerBound(s.ts, 0, s.ts.length, sel.minT);
      const b = upperBound(s.ts, a, s.ts.length, sel.maxT);
      if (b > a) {
        s.ts.splice(a, b - a);
        s.vals.splice(a, b - a);
        result.seriesAffected++;
        result.samplesDeleted += b - a;
      }
      if (s.ts.length === 0) {
        this.series.delete(s.hex);
        result.seriesRemoved++;
      }
    }
    this.applied = index;
    this.setMeta(meta);
    return result;
  }

  async deleteSeries(request: DeleteRequest): Promise<DeleteResult> {
    this.check();
    compileSelect(request);
    return this.applyDelete(this.applied + 1, request);
  }

  async applyRetention(nowMs: number, retentionMs = this.opts.retentionMs): Promise<RetentionResult> {
    this.check();
    checkNow(nowMs);
    const result: RetentionResult = { cutoff: this.cutoff, chunksDropped: 0, seriesRemoved: 0 };
    if (!Number.isSafeInteger(retentionMs) || retentionMs < 0)
      throw invalidArgument('retention_invalid', 'retentionMs', 'retentionMs must be a non-negative integer');
    if (retentionMs === 0) return result;
    const cutoff = Math.min(nowMs - retentionMs, MAX_TIMESTAMP_MS + 1);
    if (cutoff <= this.cutoff) return result;
    this.cutoff = result.cutoff = cutoff;
    for (const s of [...this.series.values()]) {
      const a = lowerBound(s.ts, 0, s.ts.length, cutoff);
      s.ts.splice(0, a);
      s.vals.splice(0, a);
      if (s.ts.length === 0) {
        this.series.delete(s.hex);
        result.seriesRemoved++;
      }
    }
    return result;
  }

  getMeta(key: string): Uint8Array | undefined {
    this.check();
    const v = this.meta.get(key);
    return v === undefined ? undefined : new Uint8Array(v);
  }

  private matching(sel: CompiledSelect): MemSeries[] {
    const out: MemSeries[] = [];
    for (const s of this.series.values()) {
      if (s.series.metric === sel.metric && matchesAll(sel.matchers, s.series)) out.push(s);
    }
    return out.sort((a, b) => (a.hex < b.hex ? -1 : a.hex > b.hex ? 1 : 0));
  }

  select(request: SelectRequest): SeriesData[] {
    this.check();
    const sel = compileSelect(request);
    const lo = Math.max(sel.minT, this.cutoff);
    const out: SeriesData[] = [];
    if (lo > sel.maxT) return out;
    for (const s of this.matching(sel)) {
      const a = lowerBound(s.ts, 0, s.ts.length, lo);
      const b = upperBound(s.ts, a, s.ts.length, sel.maxT);
      if (b === a) continue;
      out.push(
        new SnapshotSeries(
          s.id,
          s.series,
          [],
          Float64Array.from(s.ts.slice(a, b)),
          Float64Array.from(s.vals.slice(a, b)),
          lo,
          sel.maxT,
        ),
      );
    }
    return out;
  }

  selectLast(request: SelectRequest): LastSample[] {
    this.check();
    const sel = compileSelect(request);
    const lo = Math.max(sel.minT, this.cutoff);
    const out: LastSample[] = [];
    if (lo > sel.maxT) return out;
    for (const s of this.matching(sel)) {
      const i = upperBound(s.ts, 0, s.ts.length, sel.maxT) - 1;
      if (i >= 0 && s.ts[i]! >= lo) out.push({ id: s.id, series: s.series, t: s.ts[i]!, v: s.vals[i]! });
    }
    return out;
  }

  seriesCount(): number {
    this.check();
    return this.series.size;
  }

  metricNames(): string[] {
    this.check();
    return [...new Set([...this.series.values()].map((s) => s.series.metric))].sort();
  }

  labelNames(): string[] {
    this.check();
    const names = new Set<string>();
    for (const s of this.series.values()) for (const n of Object.keys(s.series.tags)) names.add(n);
    return [...names].sort();
  }

  labelValues(name: string): string[] {
    this.check();
    if (typeof name !== 'string' || name.length === 0) {
      throw invalidArgument('label_name_invalid', 'name', 'label name must be a non-empty string');
    }
    const values = new Set<string>();
    for (const s of this.series.values())
      if (Object.hasOwn(s.series.tags, name)) values.add(s.series.tags[name]!);
    return [...values].sort();
  }

  async checkpoint(): Promise<void> {
    this.check();
  }

  stats(): StoreStats {
    this.check();
    let headSamples = 0;
    for (const s of this.series.values()) headSamples += s.ts.length;
    return {
      series: this.series.size,
      chunks: 0,
      chunkBytes: 0,
      chunkSamples: 0,
      headSamples,
      diskBytes: 0,
      walRecords: 0,
      appliedIndex: this.applied,
      checkpointIndex: this.applied,
      retentionCutoff: this.cutoff,
    };
  }

  async close(): Promise<void> {
    this.isClosed = true;
  }
}
