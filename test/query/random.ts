/** Seeded random datasets and queries for the query tests (engine differential and cluster). */
import { expect } from 'vitest';
import type { Series } from '../../src/model/index.js';
import {
  AGGREGATORS,
  type Aggregator,
  FILTER_TYPES,
  type FillPolicy,
  FUNCTIONS,
  type QuerySpec,
  type SubQuery,
  type TagFilter,
} from '../../src/query/model.js';
import type { QueryResult } from '../../src/query/partial.js';
import { SKETCH_ALPHA } from '../../src/query/sketch.js';
import type { Rng } from '../../src/util/random.js';
import type { RefResult, RefSeries } from './reference.js';

export const BASE = 1_700_000_000_000;
export const SPAN = 3_600_000;

export function randomData(r: Rng): RefSeries[] {
  const out: RefSeries[] = [];
  const n = r.int(3, 16);
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const tags: Record<string, string> = { host: r.pick(['web01', 'web02', 'Web03', 'db1', 'db2', 'eu-1']) };
    if (r.chance(0.7)) tags.dc = r.pick(['eu', 'us', 'ap']);
    if (r.chance(0.3)) tags.role = r.pick(['a', 'b']);
    const series: Series = { metric: r.pick(['sys.cpu', 'net.bytes']), tags };
    const key = JSON.stringify([series.metric, Object.entries(tags).sort()]);
    if (seen.has(key)) continue;
    seen.add(key);
    const counter = r.chance(0.4);
    const grid = r.pick([1000, 10_000, 15_000, 60_000]);
    const irregular = r.chance(0.3);
    const ts: number[] = [];
    const vals: number[] = [];
    let t = BASE + (irregular ? r.int(0, 30_000) : r.int(0, 4) * grid);
    let v = r.int(0, 1000);
    const count = r.int(1, 400);
    for (let k = 0; k < count && t < BASE + SPAN; k++) {
      ts.push(t);
      if (counter) {
        v = r.chance(0.03) ? r.int(0, 50) : v + r.int(0, 400) / 4;
        vals.push(v);
      } else {
        vals.push(r.int(-400, 4000) / 4);
      }
      t += irregular ? r.int(1, 40_000) : grid * r.int(1, 3);
    }
    out.push({ series, ts, vals });
  }
  return out;
}

export function randomFilter(r: Rng): TagFilter {
  const tagk = r.pick(['host', 'dc', 'role']);
  const type = r.pick(FILTER_TYPES);
  const values: Record<string, string[]> = {
    '=': ['web01', 'eu', 'a', ''],
    '!=': ['web01', 'us', 'b', ''],
    '=~': ['web0.', 'e.|us', 'db[12]', '.*'],
    '!~': ['web0.', 'e.|us', ''],
    literal_or: ['web01|db1', 'eu', 'a|b|eu-1'],
    iliteral_or: ['WEB03|db1', 'EU|us', 'web01'],
    not_literal_or: ['web01|db1', 'eu', 'a'],
    wildcard: ['web*', '*1', '*', 'e*-*', 'd*b*'],
    iwildcard: ['WEB*', '*U', '*'],
    regexp: ['^web', 'b', '[0-9]$', 'u'],
  };
  return { tagk, type, filter: r.pick(values[type]!), groupBy: r.chance(0.4) };
}

export function randomSub(r: Rng): SubQuery {
  const q: SubQuery = {
    metric: r.pick(['sys.cpu', 'net.bytes', 'sys.cpu']),
    aggregator: r.pick(AGGREGATORS) as Aggregator,
  };
  const nf = r.int(0, 3);
  if (nf > 0) q.filters = Array.from({ length: nf }, () => randomFilter(r));
  if (r.chance(0.3)) q.groupBy = [r.pick(['host', 'dc', 'role'])];
  if (r.chance(0.7)) {
    q.downsample = {
      interval: r.chance(0.15) ? 'all' : r.pick([1000, 30_000, 60_000, 300_000, 900_000]),
      fn: r.pick(FUNCTIONS),
      fill: r.pick(['none', 'nan', 'null', 'zero'] as FillPolicy[]),
    };
  }
  if (r.chance(0.35)) {
    q.rate = r.chance(0.3)
      ? true
      : {
          counter: r.chance(0.7),
          ...(r.chance(0.4) ? { counterMax: r.pick([2000, 10_000, 2 ** 32]) } : {}),
          ...(r.chance(0.4) ? { resetValue: r.pick([1, 50, 1000]) } : {}),
          dropResets: r.chance(0.4),
        };
  }
  return q;
}

export function randomSpec(r: Rng): QuerySpec {
  const a = BASE - 60_000 + r.int(0, SPAN);
  const b = r.chance(0.3) ? BASE + SPAN + 60_000 : a + r.int(0, SPAN);
  return {
    start: r.chance(0.2) ? BASE - 120_000 : a,
    end: Math.max(a, b),
    queries: Array.from({ length: r.int(1, 3) }, () => randomSub(r)),
    withSeriesIds: r.chance(0.2),
  };
}

export function plain(rs: readonly QueryResult[]): RefResult[] {
  return rs.map((x) => ({
    query: x.query,
    metric: x.metric,
    tags: x.tags,
    aggregateTags: x.aggregateTags,
    ts: [...x.ts],
    vals: [...x.vals],
  }));
}

export function isPercentile(agg: Aggregator): boolean {
  return agg.length === 3 && agg.startsWith('p');
}

/** Exact match, except percentile aggregators: within the sketch's relative error. */
export function compareToReference(spec: QuerySpec, got: RefResult[], want: RefResult[]): void {
  expect(got.map((g) => ({ ...g, vals: [] }))).toEqual(want.map((w) => ({ ...w, vals: [] })));
  for (let i = 0; i < got.length; i++) {
    const agg = spec.queries[want[i]!.query]!.aggregator;
    if (!isPercentile(agg)) {
      expect(got[i]!.vals).toEqual(want[i]!.vals);
      continue;
    }
    got[i]!.vals.forEach((v, j) => {
      const w = want[i]!.vals[j]!;
      if (Number.isNaN(w)) expect(v).toBeNaN();
      else expect(Math.abs(v - w)).toBeLessThanOrEqual(SKETCH_ALPHA * Math.abs(w) * (1 + 1e-9) + 1e-300);
    });
  }
}
