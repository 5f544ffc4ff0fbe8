/**
 * A naive reference evaluator: straight-line code over plain arrays, written from the semantics in
 * docs/query.md without the engine's data structures. The differential test compares the engine to it.
 */
import { type Series, seriesId, seriesIdHex } from '../../src/model/index.js';
import type { AggFn, QuerySpec, TagFilter } from '../../src/query/model.js';

export interface RefSeries {
  series: Series;
  ts: number[];
  vals: number[];
}

export interface RefResult {
  query: number;
  metric: string;
  tags: Record<string, string>;
  aggregateTags: string[];
  ts: number[];
  vals: number[];
}

/** Python's math.fsum (Shewchuk): the correctly rounded sum, independent of order. */
export function fsum(xs: readonly number[]): number {
  const partials: number[] = [];
  for (let x of xs) {
    let i = 0;
    for (let y of partials) {
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    partials.push(x);
  }
  let n = partials.length;
  if (n === 0) return 0;
  let hi = partials[--n]!;
  let lo = 0;
  while (n > 0) {
    const x = hi;
    const y = partials[--n]!;
    hi = x + y;
    const yr = hi - x;
    lo = y - yr;
    if (lo !== 0) break;
  }
  if (n > 0 && ((lo < 0 && partials[n - 1]! < 0) || (lo > 0 && partials[n - 1]! > 0))) {
    const y = lo * 2;
    const x = hi + y;
    const yr = x - hi;
    if (y === yr) hi = x;
  }
  return hi;
}

function matchFilter(f: TagFilter, tags: Record<string, string>): boolean {
  const has = Object.hasOwn(tags, f.tagk);
  const v = has ? tags[f.tagk]! : '';
  const alts = f.filter.split('|');
  const wild = (ci: boolean): boolean => {
    const parts = f.filter.split('*');
    let s = ci ? v.toLowerCase() : v;
    const ps = ci ? parts.map((p) => p.toLowerCase()) : parts;
    if (!s.startsWith(ps[0]!)) return false;
    s = s.slice(ps[0]!.length);
    for (let i = 1; i < ps.length; i++) {
      const last = i === ps.length - 1;
      if (last) return s.endsWith(ps[i]!);
      const at = s.indexOf(ps[i]!);
      if (at < 0) return false;
      s = s.slice(at + ps[i]!.length);
    }
    return s === '';
  };
  switch (f.type) {
    case '=':
      return v === f.filter;
    case '!=':
      return v !== f.filter;
    case '=~':
      return new RegExp(`^(?:${f.filter})$`).test(v);
    case '!~':
      return !new RegExp(`^(?:${f.filter})$`).test(v);
    case 'literal_or':
      return has && alts.includes(v);
    case 'iliteral_or':
      return has && alts.some((a) => a.toLowerCase() === v.toLowerCase());
    case 'not_literal_or':
      return has && !alts.includes(v);
    case 'wildcard':
      return has && wild(false);
    case 'iwildcard':
      return has && wild(true);
    case 'regexp':
      return has && new RegExp(f.filter).test(v);
  }
}

function downsampleFn(fn: AggFn, vs: number[]): number {
  switch (fn) {
    case 'avg': {
      let s = 0;
      for (const v of vs) s += v;
      return s / vs.length;
    }
    case 'sum': {
      let s = 0;
      for (const v of vs) s += v;
      return s;
    }
    case 'min':
      return Math.min(...vs);
    case 'max':
      return Math.max(...vs);
    case 'count':
      return vs.length;
    case 'first':
      return vs[0]!;
    case 'last':
      return vs[vs.length - 1]!;
    default: {
      const sorted = [...vs].sort((a, b) => a - b);
      return sorted[Math.floor((Number(fn.slice(1)) / 100) * (sorted.length - 1))]!;
    }
  }
}

export function referenceQuery(data: readonly RefSeries[], spec: QuerySpec): RefResult[] {
  const out: RefResult[] = [];
  spec.queries.forEach((q, qi) => {
    const groupBy = new Set<string>(q.groupBy ?? []);
    for (const f of q.filters ?? []) if (f.groupBy) groupBy.add(f.tagk);
    const gb = [...groupBy].sort();
    const iv =
      q.downsample === undefined ? undefined : q.downsample.interval === 'all' ? 0 : q.downsample.interval;
    const fill = q.downsample?.fill ?? 'none';
    const bucketsOfRange: number[] = [];
    if (iv !== undefined && iv > 0) {
      for (let b = Math.floor(spec.start / iv) * iv; b <= spec.end; b += iv) bucketsOfRange.push(b);
    }
    // series -> points
    const matched: { series: Series; id: string; ts: number[]; vals: number[] }[] = [];
    for (const d of data) {
      if (d.series.metric !== q.metric) continue;
      if (!(q.filters ?? []).every((f) => matchFilter(f, d.series.tags as Record<string, string>))) continue;
      if (!gb.every((k) => Object.hasOwn(d.series.tags, k))) continue;
      let ts: number[] = [];
      let vals: number[] = [];
      for (let i = 0; i < d.ts.length; i++) {
        if (d.ts[i]! >= spec.start && d.ts[i]! <= spec.end) {
          ts.push(d.ts[i]!);
          vals.push(d.vals[i]!);
        }
      }
      if (ts.length === 0) continue;
      if (iv !== undefined) {
        const buckets = new Map<number, number[]>();
        for (let i = 0; i < ts.length; i++) {
          const b = iv === 0 ? spec.start : Math.floor(ts[i]! / iv) * iv;
          if (!buckets.has(b)) buckets.set(b, []);
          buckets.get(b)!.push(vals[i]!);
        }
        if (fill === 'zero' && iv > 0)
          for (const b of bucketsOfRange) if (!buckets.has(b)) buckets.set(b, []);
        const keys = [...buckets.keys()].sort((a, b) => a - b);
        ts = keys;
        vals = keys.map((k) =>
          buckets.get(k)!.length === 0 ? 0 : downsampleFn(q.downsample!.fn, buckets.get(k)!),
        );
      }
      if (q.rate !== undefined && q.rate !== false) {
        const r = q.rate === true ? {} : q.rate;
        const max = r.counterMax ?? 2 ** 63;
        const rts: number[] = [];
        const rvals: number[] = [];
        for (let i = 1; i < ts.length; i++) {
          const secs = (ts[i]! - ts[i - 1]!) / 1000;
          const diff = vals[i]! - vals[i - 1]!;
          if (r.counter && diff < 0) {
            if (r.dropResets) continue;
            let rate = (max - vals[i - 1]! + vals[i]!) / secs;
            if ((r.resetValue ?? 0) > 0 && rate > r.resetValue!) rate = 0;
            rts.push(ts[i]!);
            rvals.push(rate);
          } else {
            rts.push(ts[i]!);
            rvals.push(diff / secs);
          }
        }
        ts = rts;
        vals = rvals;
      }
      matched.push({ series: d.series, id: seriesIdHex(seriesId(d.series)), ts, vals });
    }
    const fillOut = (ts: number[], vals: number[]): { ts: number[]; vals: number[] } => {
      if ((fill !== 'nan' && fill !== 'null') || iv === undefined || iv === 0) return { ts, vals };
      return {
        ts: bucketsOfRange,
        vals: bucketsOfRange.map((b) => (ts.includes(b) ? vals[ts.indexOf(b)]! : Number.NaN)),
      };
    };
    if (q.aggregator === 'none') {
      matched.sort((a, b) => (a.id < b.id ? -1 : 1));
      for (const m of matched) {
        const f = fillOut(m.ts, m.vals);
        out.push({ query: qi, metric: q.metric, tags: { ...m.series.tags }, aggregateTags: [], ...f });
      }
      return;
    }
    const groups = new Map<string, typeof matched>();
    for (const m of matched) {
      const k = JSON.stringify(gb.map((g) => m.series.tags[g]!));
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k)!.push(m);
    }
    for (const k of [...groups.keys()].sort()) {
      const members = groups.get(k)!;
      const common: Record<string, string> = {};
      const allKeys = new Set<string>();
      for (const m of members) for (const t of Object.keys(m.series.tags)) allKeys.add(t);
      for (const t of allKeys) {
        const v = members[0]!.series.tags[t];
        if (v !== undefined && members.every((m) => m.series.tags[t] === v)) common[t] = v;
      }
      const times = [...new Set(members.flatMap((m) => m.ts))].sort((a, b) => a - b);
      const vals = times.map((t) => {
        const at = members
          .filter((m) => m.ts.includes(t))
          .map((m) => ({ id: m.id, v: m.vals[m.ts.indexOf(t)]! }))
          .sort((a, b) => (a.id < b.id ? -1 : 1));
        const vs = at.map((x) => x.v);
        switch (q.aggregator) {
          case 'sum':
            return fsum(vs);
          case 'avg':
            return fsum(vs) / vs.length;
          case 'count':
            return vs.length;
          case 'min':
            return Math.min(...vs);
          case 'max':
            return Math.max(...vs);
          case 'first':
            return at[0]!.v;
          case 'last':
            return at[at.length - 1]!.v;
          default: {
            const sorted = [...vs].sort((a, b) => a - b);
            return sorted[Math.floor((Number(q.aggregator.slice(1)) / 100) * (sorted.length - 1))]!;
          }
        }
      });
      const f = fillOut(times, vals);
      out.push({
        query: qi,
        metric: q.metric,
        tags: common,
        aggregateTags: [...allKeys].filter((t) => common[t] === undefined).sort(),
        ...f,
      });
    }
  });
  return out;
}
