/**
 * Partial aggregates: what one shard returns for a query, how partials merge, and how merged partials
 * become results. A series lives on exactly one shard, so everything per series (downsampling, rate,
 * fill zero) is done by the shard; only the cross-series aggregation is split, and its state per
 * (group, timestamp) merges exactly: counts add, min/max compare, first/last keep the series with the
 * smallest/largest id, sums are double-double (TwoSum) so the final sum is the correctly rounded exact
 * sum in any split and order (docs/query.md), quantiles merge DDSketch bins.
 */
import type { Series } from '../model/index.js';
import type { Aggregator, ShardQuery, SubQueryPlan } from './model.js';
import { queryLimitError } from './model.js';
import { quantileOf, Sketch } from './sketch.js';

/** State of one group: parallel arrays over its timestamps (sorted, unique). Optional arrays exist per aggregator. */
export interface GroupPartial {
  /** Values of the sub-query's groupBy tags, in its (sorted) groupBy order. */
  key: string[];
  /** Tags every series of the group has with the same value. */
  commonTags: Record<string, string>;
  /** Tag keys of the group's series not in commonTags (sorted). */
  aggregateTags: string[];
  ts: Float64Array;
  /** Series with a point at ts[i]. */
  count: Float64Array;
  sumHi?: Float64Array;
  sumLo?: Float64Array;
  min?: Float64Array;
  max?: Float64Array;
  first?: Float64Array;
  /** 8 bytes per timestamp: the id of the series whose value is in `first`. */
  firstId?: Uint8Array;
  last?: Float64Array;
  lastId?: Uint8Array;
  sketches?: Sketch[];
  /** Hex ids of the group's series (only when the query asks for them), sorted. */
  seriesIds?: string[];
}

/** One series returned on its own (aggregator none), after downsampling and rate. */
export interface RawSeriesPartial {
  series: Series;
  /** Hex series id. */
  id: string;
  ts: Float64Array;
  vals: Float64Array;
}

export interface SubQueryPartial {
  groups: GroupPartial[];
  series: RawSeriesPartial[];
}

export interface ShardPartial {
  queries: SubQueryPartial[];
  seriesScanned: number;
  samplesScanned: number;
}

/** Which state arrays an aggregator needs. */
export function stateKinds(agg: Aggregator): {
  sum: boolean;
  min: boolean;
  max: boolean;
  first: boolean;
  last: boolean;
  sketch: boolean;
} {
  return {
    sum: agg === 'sum' || agg === 'avg',
    min: agg === 'min',
    max: agg === 'max',
    first: agg === 'first',
    last: agg === 'last',
    sketch: agg.length === 3 && agg.startsWith('p'),
  };
}

export function compareIds(a: Uint8Array, ai: number, b: Uint8Array, bi: number): number {
  for (let k = 0; k < 8; k++) {
    const d = a[ai + k]! - b[bi + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** Adds x to the double-double (hi, lo) held in arrays at i (TwoSum: the rounding error goes to lo exactly). */
export function ddAdd(hi: Float64Array, lo: Float64Array, i: number, x: number, xlo: number): void {
  const a = hi[i]!;
  const s = a + x;
  const bp = s - a;
  const err = a - (s - bp) + (x - bp);
  hi[i] = s;
  lo[i] = lo[i]! + err + xlo;
}

export function groupKeyString(key: readonly string[]): string {
  return JSON.stringify(key);
}

function mergeTags(
  a: GroupPartial,
  b: GroupPartial,
): { common: Record<string, string>; aggregate: string[] } {
  const common: Record<string, string> = {};
  const aggregate = new Set([...a.aggregateTags, ...b.aggregateTags]);
  for (const [k, v] of Object.entries(a.commonTags)) {
    if (b.commonTags[k] === v) common[k] = v;
    else aggregate.add(k);
  }
  for (const k of Object.keys(b.commonTags)) if (common[k] === undefined) aggregate.add(k);
  return { common, aggregate: [...aggregate].sort() };
}

/** Merges two partials of the same group (inputs are not modified). */
export function mergeGroup(a: GroupPartial, b: GroupPartial, agg: Aggregator): GroupPartial {
  const kinds = stateKinds(agg);
  // Union of the sorted timestamp lists.
  const ts = new Float64Array(a.ts.length + b.ts.length);
  const fromA = new Int32Array(ts.length).fill(-1);
  const fromB = new Int32Array(ts.length).fill(-1);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.ts.length || j < b.ts.length) {
    const ta = i < a.ts.length ? a.ts[i]! : Number.POSITIVE_INFINITY;
    const tb = j < b.ts.length ? b.ts[j]! : Number.POSITIVE_INFINITY;
    if (ta <= tb) fromA[n] = i++;
    if (tb <= ta) fromB[n] = j++;
    ts[n++] = Math.min(ta, tb);
  }
  const out: GroupPartial = {
    key: a.key,
    ...(() => {
      const t = mergeTags(a, b);
      return { commonTags: t.common, aggregateTags: t.aggregate };
    })(),
    ts: ts.slice(0, n),
    count: new Float64Array(n),
  };
  if (kinds.sum) {
    out.sumHi = new Float64Array(n);
    out.sumLo = new Float64Array(n);
  }
  if (kinds.min) out.min = new Float64Array(n);
  if (kinds.max) out.max = new Float64Array(n);
  if (kinds.first) {
    out.first = new Float64Array(n);
    out.firstId = new Uint8Array(8 * n);
  }
  if (kinds.last) {
    out.last = new Float64Array(n);
    out.lastId = new Uint8Array(8 * n);
  }
  if (kinds.sketch) out.sketches = new Array<Sketch>(n);
  // Point k takes a's state (if any), then absorbs b's: no per-point allocation.
  const absorb = (p: GroupPartial, x: number, k: number, first: boolean): void => {
    out.count[k] = out.count[k]! + p.count[x]!;
    if (kinds.sum) ddAdd(out.sumHi!, out.sumLo!, k, p.sumHi![x]!, p.sumLo![x]!);
    if (kinds.min) out.min![k] = first ? p.min![x]! : Math.min(out.min![k]!, p.min![x]!);
    if (kinds.max) out.max![k] = first ? p.max![x]! : Math.max(out.max![k]!, p.max![x]!);
    if (kinds.first && (first || compareIds(p.firstId!, 8 * x, out.firstId!, 8 * k) < 0)) {
      out.first![k] = p.first![x]!;
      out.firstId!.set(p.firstId!.subarray(8 * x, 8 * x + 8), 8 * k);
    }
    if (kinds.last && (first || compareIds(p.lastId!, 8 * x, out.lastId!, 8 * k) > 0)) {
      out.last![k] = p.last![x]!;
      out.lastId!.set(p.lastId!.subarray(8 * x, 8 * x + 8), 8 * k);
    }
    if (kinds.sketch) {
      if (first) out.sketches![k] = new Sketch();
      out.sketches![k]!.merge(p.sketches![x]!);
    }
  };
  for (let k = 0; k < n; k++) {
    const ia = fromA[k]!;
    const ib = fromB[k]!;
    if (ia >= 0) absorb(a, ia, k, true);
    if (ib >= 0) absorb(b, ib, k, ia < 0);
  }
  if (a.seriesIds !== undefined || b.seriesIds !== undefined) {
    out.seriesIds = [...(a.seriesIds ?? []), ...(b.seriesIds ?? [])].sort();
  }
  return out;
}

/** Merges shard partials (any number, any split of the series) into one partial. */
export function mergePartials(partials: readonly ShardPartial[], query: ShardQuery): ShardPartial {
  const out: ShardPartial = { queries: [], seriesScanned: 0, samplesScanned: 0 };
  for (const p of partials) {
    out.seriesScanned += p.seriesScanned;
    out.samplesScanned += p.samplesScanned;
  }
  query.queries.forEach((plan, qi) => {
    const groups = new Map<string, GroupPartial>();
    const series: RawSeriesPartial[] = [];
    for (const p of partials) {
      const sub = p.queries[qi];
      if (sub === undefined) continue;
      for (const g of sub.groups) {
        const k = groupKeyString(g.key);
        const prev = groups.get(k);
        groups.set(k, prev === undefined ? g : mergeGroup(prev, g, plan.aggregator));
      }
      series.push(...sub.series);
    }
    out.queries.push({
      groups: [...groups.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)).map((e) => e[1]),
      series: series.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)),
    });
  });
  return out;
}

/** One result series (a group, or a single series for aggregator none). */
export interface QueryResult {
  /** Index of the sub-query this result answers. */
  query: number;
  metric: string;
  tags: Record<string, string>;
  aggregateTags: string[];
  ts: Float64Array;
  /** NaN marks a filled (missing) bucket; with fill `null` it is written as null. */
  vals: Float64Array;
  fill: SubQueryPlan['fill'];
  seriesIds?: string[];
}

function groupValue(g: GroupPartial, i: number, agg: Aggregator): number {
  switch (agg) {
    case 'sum':
      return g.sumHi![i]! + g.sumLo![i]!;
    case 'avg':
      return (g.sumHi![i]! + g.sumLo![i]!) / g.count[i]!;
    case 'count':
      return g.count[i]!;
    case 'min':
      return g.min![i]!;
    case 'max':
      return g.max![i]!;
    case 'first':
      return g.first![i]!;
    case 'last':
      return g.last![i]!;
    case 'none':
      return Number.NaN;
    default:
      return g.sketches![i]!.quantile(quantileOf(agg));
  }
}

/** Adds NaN points for missing buckets (fill nan/null). */
function fillBuckets(
  ts: Float64Array,
  vals: Float64Array,
  plan: SubQueryPlan,
  start: number,
  end: number,
): { ts: Float64Array; vals: Float64Array } {
  const iv = plan.downsampleMs;
  if (iv === undefined || iv === 0 || (plan.fill !== 'nan' && plan.fill !== 'null')) return { ts, vals };
  const b0 = Math.floor(start / iv) * iv;
  const n = Math.floor(end / iv) - Math.floor(start / iv) + 1;
  const ots = new Float64Array(n);
  const ovals = new Float64Array(n).fill(Number.NaN);
  let j = 0;
  for (let k = 0; k < n; k++) {
    const t = b0 + k * iv;
    ots[k] = t;
    while (j < ts.length && ts[j]! < t) j++;
    if (j < ts.length && ts[j] === t) ovals[k] = vals[j]!;
  }
  return { ts: ots, vals: ovals };
}

/** Turns a merged partial into results; checks the result-points limit. */
export function finalize(merged: ShardPartial, query: ShardQuery): QueryResult[] {
  const out: QueryResult[] = [];
  let points = 0;
  const addPoints = (n: number): void => {
    points += n;
    if (points > query.limits.maxPoints) {
      throw queryLimitError(
        'query_points_limit',
        'maxPoints',
        query.limits.maxPoints,
        `the result has more than ${query.limits.maxPoints} points`,
      );
    }
  };
  query.queries.forEach((plan, qi) => {
    const sub = merged.queries[qi] ?? { groups: [], series: [] };
    for (const g of sub.groups) {
      const vals = new Float64Array(g.ts.length);
      for (let i = 0; i < g.ts.length; i++) vals[i] = groupValue(g, i, plan.aggregator);
      const filled = fillBuckets(g.ts, vals, plan, query.start, query.end);
      addPoints(filled.ts.length);
      const r: QueryResult = {
        query: qi,
        metric: plan.metric,
        tags: { ...g.commonTags },
        aggregateTags: [...g.aggregateTags],
        ts: filled.ts,
        vals: filled.vals,
        fill: plan.fill,
      };
      if (g.seriesIds !== undefined) r.seriesIds = g.seriesIds;
      out.push(r);
    }
    for (const s of sub.series) {
      const filled = fillBuckets(s.ts, s.vals, plan, query.start, query.end);
      addPoints(filled.ts.length);
      const r: QueryResult = {
        query: qi,
        metric: plan.metric,
        tags: { ...s.series.tags },
        aggregateTags: [],
        ts: filled.ts,
        vals: filled.vals,
        fill: plan.fill,
      };
      if (query.withSeriesIds) r.seriesIds = [s.id];
      out.push(r);
    }
  });
  return out;
}
