/**
 * The query model: what a caller asks (QuerySpec), its validation, and the plan each shard executes
 * (ShardQuery). Pure: no I/O, no clock (relative times are resolved by the parsers in ./opentsdb.ts with
 * an injected `now`). Semantics: docs/query.md.
 */
import { invalidArgument, TidemarkError } from '../errors/index.js';
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS } from '../model/index.js';
import type { Matcher, MatchOp } from '../storage/index.js';

/** Functions usable both for downsampling (per series, per bucket) and for cross-series aggregation. */
export const FUNCTIONS = [
  'avg',
  'sum',
  'min',
  'max',
  'count',
  'first',
  'last',
  'p50',
  'p75',
  'p90',
  'p95',
  'p99',
] as const;
export type AggFn = (typeof FUNCTIONS)[number];
/** Cross-series aggregators: the functions plus `none` (every series returned on its own). */
export type Aggregator = AggFn | 'none';
export const AGGREGATORS: readonly Aggregator[] = [...FUNCTIONS, 'none'];
/**
 * OpenTSDB names accepted as aliases. zimsum/mimmin/mimmax are OpenTSDB's "no interpolation" variants,
 * which is exactly how Tidemark aggregates (at identical timestamps), so they map onto sum/min/max.
 */
export const AGGREGATOR_ALIASES: Readonly<Record<string, Aggregator>> = {
  zimsum: 'sum',
  mimmin: 'min',
  mimmax: 'max',
};

export const FILL_POLICIES = ['none', 'nan', 'null', 'zero'] as const;
export type FillPolicy = (typeof FILL_POLICIES)[number];

/** OpenTSDB's named filter functions (`tagk=literal_or(a|b)`), beside the four matcher operators. */
export const FILTER_FUNCTIONS = [
  'literal_or',
  'iliteral_or',
  'not_literal_or',
  'wildcard',
  'iwildcard',
  'regexp',
] as const;

export const FILTER_TYPES = ['=', '!=', '=~', '!~', ...FILTER_FUNCTIONS] as const;
export type FilterType = (typeof FILTER_TYPES)[number];

export interface TagFilter {
  tagk: string;
  type: FilterType;
  /** For `=`/`!=` the value, for regex ops the pattern, for OpenTSDB filters their argument (`a|b`, `web*`). */
  filter: string;
  /** Group the results by this tag's values. */
  groupBy?: boolean;
}

export interface DownsampleSpec {
  /** Bucket width in ms, or 'all' for one bucket spanning the whole range. */
  interval: number | 'all';
  fn: AggFn;
  fill?: FillPolicy;
}

export interface RateSpec {
  /** Treat the series as a monotonically increasing counter that may wrap or reset. */
  counter?: boolean;
  /** The value a counter wraps at (default 2^63, OpenTSDB's Long.MAX_VALUE). */
  counterMax?: number;
  /** With counter: a rate above this after a reset is reported as 0 (default 0 = off). */
  resetValue?: number;
  /** With counter: drop the point after a reset instead of computing a wrapped rate. */
  dropResets?: boolean;
}

export interface SubQuery {
  metric: string;
  filters?: TagFilter[];
  /** Extra group-by tag keys (in addition to filters with groupBy). */
  groupBy?: string[];
  aggregator: Aggregator;
  downsample?: DownsampleSpec;
  rate?: RateSpec | boolean;
}

export interface QuerySpec {
  /** Inclusive, ms since the epoch. */
  start: number;
  /** Inclusive, ms since the epoch. */
  end: number;
  queries: SubQuery[];
  /** Collect the hex ids of the series in each result (OpenTSDB showTSUIDs). */
  withSeriesIds?: boolean;
}

/** Per-query bounds. Every limit applies per shard and to the merged total. */
export interface QueryLimits {
  /** Series matched (after postings). */
  maxSeries: number;
  /** Raw samples read from the stores. */
  maxSamples: number;
  /** Points in the result (and in one shard's partial). */
  maxPoints: number;
}

export const DEFAULT_LIMITS: QueryLimits = {
  maxSeries: 100_000,
  maxSamples: 50_000_000,
  maxPoints: 1_000_000,
};

/** The resolved rate options a shard applies. */
export interface RatePlan {
  counter: boolean;
  counterMax: number;
  resetValue: number;
  dropResets: boolean;
}

/** One sub-query as a shard executes it: filters already translated to store matchers. */
export interface SubQueryPlan {
  metric: string;
  matchers: Matcher[];
  /** Group-by tag keys, sorted; the group key is their values in this order. */
  groupBy: string[];
  aggregator: Aggregator;
  /** Bucket width in ms; 0 = one bucket over the whole range ('all'); undefined = no downsampling. */
  downsampleMs?: number;
  downsampleFn?: AggFn;
  fill: FillPolicy;
  rate?: RatePlan;
}

/** What the coordinator sends to every shard. Serializable (proto/tidemark/v1/query.proto, ./codec.ts). */
export interface ShardQuery {
  start: number;
  end: number;
  queries: SubQueryPlan[];
  limits: QueryLimits;
  withSeriesIds: boolean;
}

export const DEFAULT_COUNTER_MAX = 2 ** 63;

const REGEX_SPECIAL = /[\\^$.*+?()[\]{}|]/g;
/** Escapes a literal for use inside a store regex. */
export function escapeRegex(s: string): string {
  return s.replace(REGEX_SPECIAL, '\\$&');
}

/** Case-insensitive form of a literal without regex flags (the store compiles regexes itself): `[aA]`. */
function caseless(s: string): string {
  let out = '';
  for (const ch of s) {
    const lo = ch.toLowerCase();
    const up = ch.toUpperCase();
    out +=
      lo !== up && lo.length === 1 && up.length === 1
        ? `[${escapeRegex(lo)}${escapeRegex(up)}]`
        : escapeRegex(ch);
  }
  return out;
}

function wildcardRegex(pattern: string, ci: boolean): string {
  return pattern
    .split('*')
    .map((part) => (ci ? caseless(part) : escapeRegex(part)))
    .join('.*');
}

/**
 * Translates a filter into store matchers (exactly: every OpenTSDB filter becomes one matcher plus,
 * for OpenTSDB types, a presence matcher, since OpenTSDB filters only match series that have the tag).
 */
export function filterToMatchers(f: TagFilter, field: string): Matcher[] {
  const presence: Matcher = { name: f.tagk, op: '!=', value: '' };
  const alts = (ci: boolean): string => {
    const parts = f.filter.split('|');
    if (parts.some((p) => p === '')) {
      throw invalidArgument('filter_invalid', `${field}.filter`, `${field}.filter has an empty alternative`);
    }
    return parts.map((p) => (ci ? caseless(p) : escapeRegex(p))).join('|');
  };
  switch (f.type) {
    case '=':
    case '!=':
    case '=~':
    case '!~':
      return [{ name: f.tagk, op: f.type as MatchOp, value: f.filter }];
    case 'literal_or':
      return [{ name: f.tagk, op: '=~', value: alts(false) }, presence];
    case 'iliteral_or':
      return [{ name: f.tagk, op: '=~', value: alts(true) }, presence];
    case 'not_literal_or':
      return [{ name: f.tagk, op: '!~', value: alts(false) }, presence];
    case 'wildcard':
      return [{ name: f.tagk, op: '=~', value: wildcardRegex(f.filter, false) }, presence];
    case 'iwildcard':
      return [{ name: f.tagk, op: '=~', value: wildcardRegex(f.filter, true) }, presence];
    case 'regexp':
      // OpenTSDB's regexp filter uses Java's Matcher.find(): unanchored. The store anchors, so pad.
      return [{ name: f.tagk, op: '=~', value: `.*(?:${f.filter}).*` }, presence];
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkTime(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < MIN_TIMESTAMP_MS || v > MAX_TIMESTAMP_MS) {
    throw invalidArgument(
      'time_invalid',
      field,
      `${field} must be an integer number of ms in [${MIN_TIMESTAMP_MS}, ${MAX_TIMESTAMP_MS}]`,
    );
  }
  return v;
}

function checkFn(v: unknown, field: string): AggFn {
  if (typeof v !== 'string' || !(FUNCTIONS as readonly string[]).includes(v)) {
    throw invalidArgument('function_invalid', field, `${field} must be one of ${FUNCTIONS.join(', ')}`);
  }
  return v as AggFn;
}

/** Resolves an aggregator name (including OpenTSDB aliases); throws naming the field. */
export function checkAggregator(v: unknown, field: string): Aggregator {
  if (typeof v === 'string') {
    const alias = AGGREGATOR_ALIASES[v];
    if (alias !== undefined) return alias;
    if ((AGGREGATORS as readonly string[]).includes(v)) return v as Aggregator;
  }
  throw invalidArgument(
    'aggregator_invalid',
    field,
    `${field} must be one of ${[...AGGREGATORS, ...Object.keys(AGGREGATOR_ALIASES)].join(', ')}`,
  );
}

function checkNonNegNumber(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw invalidArgument('rate_option_invalid', field, `${field} must be a non-negative number`);
  }
  return v;
}

function checkRate(v: unknown, field: string): RatePlan | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true)
    return { counter: false, counterMax: DEFAULT_COUNTER_MAX, resetValue: 0, dropResets: false };
  if (!isObject(v)) throw invalidArgument('rate_invalid', field, `${field} must be a boolean or an object`);
  for (const k of ['counter', 'dropResets'] as const) {
    if (v[k] !== undefined && typeof v[k] !== 'boolean') {
      throw invalidArgument('rate_option_invalid', `${field}.${k}`, `${field}.${k} must be a boolean`);
    }
  }
  const counterMax =
    v.counterMax === undefined ? DEFAULT_COUNTER_MAX : checkNonNegNumber(v.counterMax, `${field}.counterMax`);
  const resetValue = v.resetValue === undefined ? 0 : checkNonNegNumber(v.resetValue, `${field}.resetValue`);
  return { counter: v.counter === true, counterMax, resetValue, dropResets: v.dropResets === true };
}

function checkTagKey(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0) {
    throw invalidArgument('tag_key_invalid', field, `${field} must be a non-empty string`);
  }
  return v;
}

function planSubQuery(q: unknown, field: string, spanMs: number, limits: QueryLimits): SubQueryPlan {
  if (!isObject(q)) throw invalidArgument('query_invalid', field, `${field} must be an object`);
  if (typeof q.metric !== 'string' || q.metric.length === 0) {
    throw invalidArgument('metric_empty', `${field}.metric`, `${field}.metric must be a non-empty string`);
  }
  const aggregator = checkAggregator(q.aggregator, `${field}.aggregator`);
  const matchers: Matcher[] = [];
  const groupBy = new Set<string>();
  const filters = q.filters ?? [];
  if (!Array.isArray(filters)) {
    throw invalidArgument('filters_invalid', `${field}.filters`, `${field}.filters must be an array`);
  }
  filters.forEach((f: unknown, i) => {
    const ff = `${field}.filters[${i}]`;
    if (!isObject(f)) throw invalidArgument('filter_invalid', ff, `${ff} must be an object`);
    const tagk = checkTagKey(f.tagk, `${ff}.tagk`);
    if (typeof f.type !== 'string' || !(FILTER_TYPES as readonly string[]).includes(f.type)) {
      throw invalidArgument(
        'filter_type_invalid',
        `${ff}.type`,
        `${ff}.type must be one of ${FILTER_TYPES.join(', ')}`,
      );
    }
    if (typeof f.filter !== 'string') {
      throw invalidArgument('filter_invalid', `${ff}.filter`, `${ff}.filter must be a string`);
    }
    if (f.groupBy !== undefined && typeof f.groupBy !== 'boolean') {
      throw invalidArgument('filter_invalid', `${ff}.groupBy`, `${ff}.groupBy must be a boolean`);
    }
    const ms = filterToMatchers({ tagk, type: f.type as FilterType, filter: f.filter }, ff);
    for (const m of ms) {
      if (m.op === '=~' || m.op === '!~') {
        try {
          new RegExp(`^(?:${m.value})$`, 'su');
        } catch (err) {
          throw invalidArgument(
            'filter_regex_invalid',
            `${ff}.filter`,
            `${ff}.filter is not a valid regular expression: ${(err as Error).message}`,
          );
        }
      }
      if (!matchers.some((x) => x.name === m.name && x.op === m.op && x.value === m.value)) matchers.push(m);
    }
    if (f.groupBy === true) groupBy.add(tagk);
  });
  const extra = q.groupBy ?? [];
  if (!Array.isArray(extra)) {
    throw invalidArgument(
      'group_by_invalid',
      `${field}.groupBy`,
      `${field}.groupBy must be an array of tag keys`,
    );
  }
  extra.forEach((k: unknown, i) => {
    groupBy.add(checkTagKey(k, `${field}.groupBy[${i}]`));
  });
  // Group-by tags must be present (as in OpenTSDB): a series without one is not matched.
  for (const k of groupBy) {
    if (!matchers.some((x) => x.name === k && x.op === '!=' && x.value === '')) {
      matchers.push({ name: k, op: '!=', value: '' });
    }
  }
  const plan: SubQueryPlan = {
    metric: q.metric,
    matchers,
    groupBy: [...groupBy].sort(),
    aggregator,
    fill: 'none',
  };
  if (q.downsample !== undefined) {
    const df = `${field}.downsample`;
    const d = q.downsample;
    if (!isObject(d)) throw invalidArgument('downsample_invalid', df, `${df} must be an object`);
    if (d.interval === 'all') plan.downsampleMs = 0;
    else if (typeof d.interval === 'number' && Number.isInteger(d.interval) && d.interval > 0) {
      plan.downsampleMs = d.interval;
    } else {
      throw invalidArgument(
        'downsample_invalid',
        `${df}.interval`,
        `${df}.interval must be a positive integer of ms or 'all'`,
      );
    }
    plan.downsampleFn = checkFn(d.fn, `${df}.fn`);
    if (d.fill !== undefined) {
      if (typeof d.fill !== 'string' || !(FILL_POLICIES as readonly string[]).includes(d.fill)) {
        throw invalidArgument(
          'fill_invalid',
          `${df}.fill`,
          `${df}.fill must be one of ${FILL_POLICIES.join(', ')}`,
        );
      }
      plan.fill = d.fill as FillPolicy;
    }
    if (plan.fill !== 'none' && plan.downsampleMs > 0) {
      const buckets = Math.floor(spanMs / plan.downsampleMs) + 1;
      if (buckets > limits.maxPoints) {
        throw queryLimitError(
          'query_points_limit',
          'maxPoints',
          limits.maxPoints,
          `${df}: fill ${plan.fill} would produce ${buckets} buckets per series`,
        );
      }
    }
  }
  const rate = checkRate(q.rate, `${field}.rate`);
  if (rate !== undefined) plan.rate = rate;
  return plan;
}

function checkLimits(l: unknown): QueryLimits {
  if (l === undefined) return { ...DEFAULT_LIMITS };
  if (!isObject(l)) throw invalidArgument('limits_invalid', 'limits', 'limits must be an object');
  const out = { ...DEFAULT_LIMITS };
  for (const k of ['maxSeries', 'maxSamples', 'maxPoints'] as const) {
    const v = l[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw invalidArgument('limits_invalid', `limits.${k}`, `limits.${k} must be a positive integer`);
    }
    out[k] = v;
  }
  return out;
}

/** Validates a query and plans it: every invalid input throws INVALID_ARGUMENT naming the field. */
export function planQuery(spec: unknown, limits?: Partial<QueryLimits>): ShardQuery {
  if (!isObject(spec)) throw invalidArgument('query_invalid', 'query', 'query must be an object');
  const start = checkTime(spec.start, 'start');
  const end = checkTime(spec.end, 'end');
  if (end < start) throw invalidArgument('time_range_invalid', 'end', 'end must not be before start');
  const lim = checkLimits(limits);
  if (!Array.isArray(spec.queries) || spec.queries.length === 0) {
    throw invalidArgument('queries_empty', 'queries', 'queries must be a non-empty array');
  }
  const queries = spec.queries.map((q: unknown, i) => planSubQuery(q, `queries[${i}]`, end - start, lim));
  return { start, end, queries, limits: lim, withSeriesIds: spec.withSeriesIds === true };
}

/**
 * A query exceeded a bound. RESOURCE_EXHAUSTED without a retry hint: retrying the same query cannot
 * succeed; the message says how to narrow it. details.field names the limit.
 */
export function queryLimitError(reason: string, limit: keyof QueryLimits, value: number, what: string) {
  const hint =
    limit === 'maxSeries'
      ? 'add tag filters to match fewer series, or group/aggregate fewer metrics per query'
      : limit === 'maxSamples'
        ? 'shorten the time range or match fewer series'
        : 'use a coarser downsample interval, a shorter range, or an aggregator instead of none';
  return new TidemarkError(
    'RESOURCE_EXHAUSTED',
    reason,
    `query exceeds limits.${limit} (${value}): ${what}; ${hint}`,
    {
      field: `limits.${limit}`,
      limit: value,
    },
  );
}
