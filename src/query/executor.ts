/**
 * Per-shard execution: postings -> series -> blocks -> per-series downsample -> fill zero -> rate ->
 * per (group, timestamp) partial state (./partial.ts). Bulk decoding through forEachBlock, typed arrays
 * throughout; the only per-point allocations are sketches, for percentile aggregators.
 */
import { TidemarkError } from '../errors/index.js';
import { seriesIdHex } from '../model/index.js';
import type { SeriesData, ShardStore } from '../storage/index.js';
import { type AggFn, queryLimitError, type ShardQuery, type SubQueryPlan } from './model.js';
import {
  compareIds,
  ddAdd,
  type GroupPartial,
  groupKeyString,
  type RawSeriesPartial,
  type ShardPartial,
  type SubQueryPartial,
  stateKinds,
} from './partial.js';
import { exactQuantile, quantileOf, Sketch } from './sketch.js';

/** Throws the signal's reason as a DEADLINE_EXCEEDED (or its own TidemarkError) when aborted. */
export function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted !== true) return;
  const r: unknown = signal.reason;
  if (r instanceof TidemarkError) throw r;
  throw new TidemarkError(
    'DEADLINE_EXCEEDED',
    'query_deadline',
    'the query ran past its deadline or was cancelled; shorten the range, match fewer series or raise the deadline',
    { field: 'deadlineMs' },
  );
}

function grow(a: Float64Array<ArrayBuffer>, n: number): Float64Array<ArrayBuffer> {
  if (n <= a.length) return a;
  const b = new Float64Array(Math.max(n, a.length * 2));
  b.set(a);
  return b;
}

/** Accumulates one group's state over its timestamps (unsorted while building). */
class GroupAcc {
  readonly slot = new Map<number, number>();
  n = 0;
  cap = 16;
  ts = new Float64Array(16);
  count = new Float64Array(16);
  sumHi = new Float64Array(0);
  sumLo = new Float64Array(0);
  min = new Float64Array(0);
  max = new Float64Array(0);
  first = new Float64Array(0);
  last = new Float64Array(0);
  firstId = new Uint8Array(0);
  lastId = new Uint8Array(0);
  sketches: Sketch[] = [];
  commonTags: Record<string, string> | null = null;
  readonly allKeys = new Set<string>();
  readonly ids: string[] = [];
  private readonly kinds: ReturnType<typeof stateKinds>;

  constructor(
    readonly key: string[],
    plan: SubQueryPlan,
  ) {
    this.kinds = stateKinds(plan.aggregator);
    this.alloc(16);
  }

  private alloc(cap: number): void {
    const k = this.kinds;
    this.ts = grow(this.ts, cap);
    this.count = grow(this.count, cap);
    if (k.sum) {
      this.sumHi = grow(this.sumHi, cap);
      this.sumLo = grow(this.sumLo, cap);
    }
    if (k.min) this.min = grow(this.min, cap);
    if (k.max) this.max = grow(this.max, cap);
    if (k.first) {
      this.first = grow(this.first, cap);
      const b = new Uint8Array(8 * cap);
      b.set(this.firstId);
      this.firstId = b;
    }
    if (k.last) {
      this.last = grow(this.last, cap);
      const b = new Uint8Array(8 * cap);
      b.set(this.lastId);
      this.lastId = b;
    }
    this.cap = cap;
  }

  addSeries(tags: Readonly<Record<string, string>>, idHex: string | null): void {
    if (idHex !== null) this.ids.push(idHex);
    for (const k of Object.keys(tags)) this.allKeys.add(k);
    if (this.commonTags === null) {
      this.commonTags = { ...tags };
      return;
    }
    for (const k of Object.keys(this.commonTags))
      if (tags[k] !== this.commonTags[k]) delete this.commonTags[k];
  }

  add(t: number, v: number, id: Uint8Array): void {
    let i = this.slot.get(t);
    const k = this.kinds;
    if (i === undefined) {
      i = this.n++;
      if (i >= this.cap) this.alloc(this.cap * 2);
      this.slot.set(t, i);
      this.ts[i] = t;
      this.count[i] = 1;
      if (k.sum) {
        this.sumHi[i] = v;
        this.sumLo[i] = 0;
      }
      if (k.min) this.min[i] = v;
      if (k.max) this.max[i] = v;
      if (k.first) {
        this.first[i] = v;
        this.firstId.set(id, 8 * i);
      }
      if (k.last) {
        this.last[i] = v;
        this.lastId.set(id, 8 * i);
      }
      if (k.sketch) {
        const s = new Sketch();
        s.add(v);
        this.sketches[i] = s;
      }
      return;
    }
    this.count[i] = this.count[i]! + 1;
    if (k.sum) ddAdd(this.sumHi, this.sumLo, i, v, 0);
    if (k.min) this.min[i] = Math.min(this.min[i]!, v);
    if (k.max) this.max[i] = Math.max(this.max[i]!, v);
    if (k.first && compareIds(id, 0, this.firstId, 8 * i) < 0) {
      this.first[i] = v;
      this.firstId.set(id, 8 * i);
    }
    if (k.last && compareIds(id, 0, this.lastId, 8 * i) > 0) {
      this.last[i] = v;
      this.lastId.set(id, 8 * i);
    }
    if (k.sketch) this.sketches[i]!.add(v);
  }

  /** The partial, with timestamps sorted. */
  build(withIds: boolean): GroupPartial {
    const n = this.n;
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => this.ts[a]! - this.ts[b]!);
    const perm = (src: Float64Array): Float64Array => {
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = src[order[i]!]!;
      return out;
    };
    const permIds = (src: Uint8Array): Uint8Array => {
      const out = new Uint8Array(8 * n);
      for (let i = 0; i < n; i++) out.set(src.subarray(8 * order[i]!, 8 * order[i]! + 8), 8 * i);
      return out;
    };
    const common = this.commonTags ?? {};
    const g: GroupPartial = {
      key: this.key,
      commonTags: common,
      aggregateTags: [...this.allKeys].filter((k) => common[k] === undefined).sort(),
      ts: perm(this.ts),
      count: perm(this.count),
    };
    const k = this.kinds;
    if (k.sum) {
      g.sumHi = perm(this.sumHi);
      g.sumLo = perm(this.sumLo);
    }
    if (k.min) g.min = perm(this.min);
    if (k.max) g.max = perm(this.max);
    if (k.first) {
      g.first = perm(this.first);
      g.firstId = permIds(this.firstId);
    }
    if (k.last) {
      g.last = perm(this.last);
      g.lastId = permIds(this.lastId);
    }
    if (k.sketch) g.sketches = order.map((i) => this.sketches[i]!);
    if (withIds) g.seriesIds = [...this.ids].sort();
    return g;
  }
}

/** Reused per-series buffers. */
class Scratch {
  // Small to start (one per shard and sub-query; most series have a few points per query), grown by doubling.
  ts = new Float64Array(64);
  vals = new Float64Array(64);
  n = 0;
  bucket = new Float64Array(16);
  push(t: number, v: number): void {
    if (this.n >= this.ts.length) {
      this.ts = grow(this.ts, this.n + 1);
      this.vals = grow(this.vals, this.n + 1);
    }
    this.ts[this.n] = t;
    this.vals[this.n++] = v;
  }
}

interface Budget {
  samples: number;
  points: number;
}

const F_SUM = 0;
const F_AVG = 1;
const F_MIN = 2;
const F_MAX = 3;
const F_COUNT = 4;
const F_FIRST = 5;
const F_LAST = 6;
const F_QUANTILE = 7;
const FN_CODE: Record<AggFn, number> = {
  sum: F_SUM,
  avg: F_AVG,
  min: F_MIN,
  max: F_MAX,
  count: F_COUNT,
  first: F_FIRST,
  last: F_LAST,
  p50: F_QUANTILE,
  p75: F_QUANTILE,
  p90: F_QUANTILE,
  p95: F_QUANTILE,
  p99: F_QUANTILE,
};

/** Reads a series, downsampling on the fly, into scratch. */
function readSeries(
  s: SeriesData,
  plan: SubQueryPlan,
  q: ShardQuery,
  sc: Scratch,
  budget: Budget,
  signal: AbortSignal | undefined,
): void {
  sc.n = 0;
  const limit = q.limits.maxSamples;
  const countSamples = (count: number): void => {
    budget.samples += count;
    if (budget.samples > limit) {
      throw queryLimitError('query_samples_limit', 'maxSamples', limit, `more than ${limit} samples scanned`);
    }
    checkAborted(signal);
  };
  const iv = plan.downsampleMs;
  if (iv === undefined) {
    s.forEachBlock((ts, vals, count) => {
      countSamples(count);
      for (let i = 0; i < count; i++) sc.push(ts[i]!, vals[i]!);
    });
    return;
  }
  const fn: AggFn = plan.downsampleFn!;
  const code = FN_CODE[fn];
  const qq = code === F_QUANTILE ? quantileOf(fn) : 0;
  let cur = Number.NaN;
  let acc = 0;
  let cnt = 0;
  const flush = (): void => {
    if (cnt === 0) return;
    sc.push(
      cur,
      code === F_AVG
        ? acc / cnt
        : code === F_COUNT
          ? cnt
          : code === F_QUANTILE
            ? exactQuantile(sc.bucket, cnt, qq)
            : acc,
    );
    cnt = 0;
  };
  s.forEachBlock((ts, vals, count) => {
    countSamples(count);
    let i = 0;
    while (i < count) {
      const t = ts[i]!;
      // Timestamps are non-negative integers, so t - t % iv is the epoch-aligned bucket start.
      const b = iv === 0 ? q.start : t - (t % iv);
      if (b !== cur) {
        flush();
        cur = b;
      }
      // The run of samples of this block in the bucket, aggregated by one tight loop per function.
      const lim = iv === 0 ? Number.POSITIVE_INFINITY : b + iv;
      let j = i + 1;
      while (j < count && ts[j]! < lim) j++;
      switch (code) {
        case F_SUM:
        case F_AVG:
          if (cnt === 0) acc = 0;
          for (let k = i; k < j; k++) acc += vals[k]!;
          break;
        case F_MIN:
          if (cnt === 0) acc = vals[i]!;
          for (let k = i; k < j; k++) acc = Math.min(acc, vals[k]!);
          break;
        case F_MAX:
          if (cnt === 0) acc = vals[i]!;
          for (let k = i; k < j; k++) acc = Math.max(acc, vals[k]!);
          break;
        case F_FIRST:
          if (cnt === 0) acc = vals[i]!;
          break;
        case F_LAST:
          acc = vals[j - 1]!;
          break;
        case F_QUANTILE:
          if (cnt + j - i > sc.bucket.length) sc.bucket = grow(sc.bucket, cnt + j - i);
          sc.bucket.set(vals.subarray(i, j), cnt);
          break;
        default: // count: only cnt
      }
      cnt += j - i;
      i = j;
    }
  });
  flush();
}

/** fill zero: every bucket of the range gets a point (0 where the series has none). */
function fillZero(sc: Scratch, plan: SubQueryPlan, q: ShardQuery): void {
  const iv = plan.downsampleMs;
  if (plan.fill !== 'zero' || iv === undefined || iv === 0) return;
  const b0 = Math.floor(q.start / iv) * iv;
  const n = Math.floor(q.end / iv) - Math.floor(q.start / iv) + 1;
  const ts = new Float64Array(n);
  const vals = new Float64Array(n);
  let j = 0;
  for (let k = 0; k < n; k++) {
    const t = b0 + k * iv;
    ts[k] = t;
    if (j < sc.n && sc.ts[j] === t) vals[k] = sc.vals[j++]!;
  }
  sc.ts = grow(sc.ts, n);
  sc.vals = grow(sc.vals, n);
  sc.ts.set(ts);
  sc.vals.set(vals);
  sc.n = n;
}

/** OpenTSDB's RateSpan: per-second rate between consecutive points, with counter handling. In place. */
function applyRate(sc: Scratch, plan: SubQueryPlan): void {
  const r = plan.rate;
  if (r === undefined) return;
  let out = 0;
  for (let i = 1; i < sc.n; i++) {
    const t0 = sc.ts[i - 1]!;
    const t1 = sc.ts[i]!;
    const v0 = sc.vals[i - 1]!;
    const v1 = sc.vals[i]!;
    const secs = (t1 - t0) / 1000;
    let diff = v1 - v0;
    let rate: number;
    if (r.counter && diff < 0) {
      if (r.dropResets) continue;
      diff = r.counterMax - v0 + v1;
      rate = diff / secs;
      if (r.resetValue > 0 && rate > r.resetValue) rate = 0;
    } else {
      rate = diff / secs;
    }
    // Writing at out <= i - 1 never overwrites a point still to be read (i - 1 and i are read first).
    sc.ts[out] = t1;
    sc.vals[out++] = rate;
  }
  sc.n = Math.max(0, out);
}

/** `a|b\.c` -> ['a', 'b.c'] when the regex is nothing but escaped literals; otherwise null. */
export function literalAlternatives(re: string): string[] | null {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < re.length; i++) {
    const ch = re[i]!;
    if (ch === '\\') {
      const next = re[i + 1];
      if (next === undefined || !/[\\^$.*+?()[\]{}|/]/.test(next)) return null;
      cur += next;
      i++;
    } else if (ch === '|') {
      out.push(cur);
      cur = '';
    } else if (/[\\^$.*+?()[\]{}]/.test(ch)) {
      return null;
    } else cur += ch;
  }
  out.push(cur);
  return out.some((x) => x === '') ? null : out;
}

const MAX_LITERAL_SELECTS = 64;
/**
 * A `=` select costs about as much as checking this many of a metric's series against a regex (measured
 * on the LMDB store before it kept each metric's series in memory: ~7 us vs ~0.7 us): one select per
 * literal only pays off when the metric's series, bounded by the shard's series count, outnumber this
 * many per literal.
 */
const SERIES_PER_LOOKUP = 8;

/**
 * The store resolves postings only for `=` matchers. A `=~` that is a literal alternation (what
 * literal_or becomes) is the union of one `=` select per literal: exact (a series has one value per
 * tag, so the selections are disjoint) and it reads only those postings instead of every series of
 * the metric. On a small shard one select over the metric's series (the regex checked per series) is
 * cheaper than a select per literal: TSBS's 8 hosts × 10 metrics over 16 shards would otherwise cost 80
 * selects per shard for a handful of series.
 */
function selectSeries(store: ShardStore, plan: SubQueryPlan, q: ShardQuery): SeriesData[] {
  const base = { metric: plan.metric, minT: q.start, maxT: q.end };
  const idx = plan.matchers.findIndex((m) => m.op === '=~');
  const lits = idx < 0 ? null : literalAlternatives(plan.matchers[idx]!.value);
  if (
    lits === null ||
    lits.length > MAX_LITERAL_SELECTS ||
    plan.matchers.some((m) => m.op === '=' && m.value !== '') ||
    (lits.length > 1 && store.seriesCount() <= lits.length * SERIES_PER_LOOKUP)
  ) {
    return store.select({ ...base, matchers: plan.matchers });
  }
  const name = plan.matchers[idx]!.name;
  const out: SeriesData[] = [];
  for (const value of new Set(lits)) {
    const matchers = plan.matchers.map((m, i) => (i === idx ? { name, op: '=' as const, value } : m));
    out.push(...store.select({ ...base, matchers }));
  }
  return out.sort((a, b) => compareIds(a.id, 0, b.id, 0));
}

async function executeSub(
  store: ShardStore,
  plan: SubQueryPlan,
  q: ShardQuery,
  budget: Budget,
  totals: { series: number },
  signal: AbortSignal | undefined,
  yieldEvery: number,
): Promise<SubQueryPartial> {
  checkAborted(signal);
  const selected = selectSeries(store, plan, q);
  totals.series += selected.length;
  if (totals.series > q.limits.maxSeries) {
    throw queryLimitError(
      'query_series_limit',
      'maxSeries',
      q.limits.maxSeries,
      `more than ${q.limits.maxSeries} series match`,
    );
  }
  // Most shards of a narrow query match nothing (a 1-host query asks all 16): no scratch, no groups.
  if (selected.length === 0) return { groups: [], series: [] };
  const sc = new Scratch();
  const groups = new Map<string, GroupAcc>();
  const raw: RawSeriesPartial[] = [];
  const addPoints = (n: number): void => {
    budget.points += n;
    if (budget.points > q.limits.maxPoints) {
      throw queryLimitError(
        'query_points_limit',
        'maxPoints',
        q.limits.maxPoints,
        `more than ${q.limits.maxPoints} points`,
      );
    }
  };
  let sinceYield = 0;
  for (const s of selected) {
    // Yield to the event loop now and then, so deadlines fire and other requests proceed; the
    // selection is an immutable snapshot, so later writes cannot disturb it.
    if (budget.samples - sinceYield >= yieldEvery) {
      sinceYield = budget.samples;
      await new Promise<void>((resolve) => setImmediate(resolve));
      checkAborted(signal);
    }
    readSeries(s, plan, q, sc, budget, signal);
    fillZero(sc, plan, q);
    applyRate(sc, plan);
    if (plan.aggregator === 'none') {
      addPoints(sc.n);
      raw.push({
        series: s.series,
        id: seriesIdHex(s.id),
        ts: sc.ts.slice(0, sc.n),
        vals: sc.vals.slice(0, sc.n),
      });
      continue;
    }
    const key = plan.groupBy.map((k) => s.series.tags[k] ?? '');
    const ks = groupKeyString(key);
    let g = groups.get(ks);
    if (g === undefined) {
      g = new GroupAcc(key, plan);
      groups.set(ks, g);
    }
    const before = g.n;
    g.addSeries(s.series.tags, q.withSeriesIds ? seriesIdHex(s.id) : null);
    for (let i = 0; i < sc.n; i++) g.add(sc.ts[i]!, sc.vals[i]!, s.id);
    addPoints(g.n - before);
  }
  const out = [...groups.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map((e) => e[1].build(q.withSeriesIds));
  return { groups: out, series: raw };
}

export interface ExecuteOptions {
  /** Yield to the event loop after about this many scanned samples (default 65536). */
  yieldEvery?: number;
}

/**
 * Executes a planned query on one shard's store. Throws RESOURCE_EXHAUSTED (query_*_limit) past a
 * limit and DEADLINE_EXCEEDED once the signal aborts (checked per block of samples and at every yield).
 */
export async function executeShard(
  store: ShardStore,
  q: ShardQuery,
  signal?: AbortSignal,
  opts: ExecuteOptions = {},
): Promise<ShardPartial> {
  const budget: Budget = { samples: 0, points: 0 };
  const totals = { series: 0 };
  const yieldEvery = opts.yieldEvery ?? 65_536;
  const queries: SubQueryPartial[] = [];
  for (const plan of q.queries)
    queries.push(await executeSub(store, plan, q, budget, totals, signal, yieldEvery));
  return { queries, seriesScanned: totals.series, samplesScanned: budget.samples };
}
