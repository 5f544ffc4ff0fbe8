/**
 * OpenTSDB 2.4 HTTP API compatibility: request parsing for /api/query (GET `m=` and POST JSON),
 * response and error formatting, /api/aggregators, /api/suggest and /api/query/last. Pure functions:
 * the clock is injected (`now`), stores are passed in; the HTTP routes live in src/api.
 * Differences from OpenTSDB: docs/query.md.
 */
import { invalidArgument, TidemarkError } from '../errors/index.js';
import { toHttpStatus } from '../errors/status.js';
import { MAX_TIMESTAMP_MS, seriesIdHex } from '../model/index.js';
import type { Matcher, ShardStore } from '../storage/index.js';
import {
  AGGREGATOR_ALIASES,
  AGGREGATORS,
  type AggFn,
  checkAggregator,
  type DownsampleSpec,
  FILL_POLICIES,
  FILTER_FUNCTIONS,
  type FillPolicy,
  FUNCTIONS,
  type QuerySpec,
  type RateSpec,
  type SubQuery,
  type TagFilter,
} from './model.js';
import type { QueryResult } from './partial.js';

/** A parsed /api/query request: the engine's spec plus OpenTSDB's presentation flags. */
export interface OpenTsdbQuery {
  spec: QuerySpec;
  msResolution: boolean;
  showQuery: boolean;
  showTSUIDs: boolean;
  /** The sub-queries as OpenTSDB echoes them with showQuery (index-aligned with spec.queries). */
  echo: Record<string, unknown>[];
}

/** OpenTSDB's duration units in ms (`n` = 30 days, `y` = 365 days); the CLI uses the same. */
export const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  n: 30 * 86_400_000,
  y: 365 * 86_400_000,
};

/** `5m` -> 300000 (OpenTSDB units ms s m h d w n y). */
export function parseDuration(s: string, field: string): number {
  const m = /^(\d+)(ms|s|m|h|d|w|n|y)$/.exec(s);
  if (m === null || Number(m[1]) <= 0) {
    throw invalidArgument(
      'duration_invalid',
      field,
      `${field}: '${s}' is not a duration like 30s, 5m, 1h (units ms s m h d w n y)`,
    );
  }
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/**
 * An OpenTSDB time: relative `<n><unit>-ago`, `now`, absolute seconds (up to 10 digits, optionally with
 * `.mmm`), milliseconds (more digits), or a UTC date `yyyy/MM/dd[-HH:mm[:ss]]` (OpenTSDB uses the
 * server's zone; Tidemark always UTC).
 */
export function parseTime(v: unknown, now: number, field: string): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0)
      throw invalidArgument('time_invalid', field, `${field} must be a non-negative time`);
    v = String(v);
  }
  if (typeof v !== 'string' || v.length === 0) {
    throw invalidArgument(
      'time_invalid',
      field,
      `${field} must be a time (e.g. 1h-ago, 1700000000, 2024/01/01-00:00:00)`,
    );
  }
  const s = v.trim();
  if (s === 'now') return now;
  const rel = /^(\d+(?:ms|s|m|h|d|w|n|y))-ago$/.exec(s);
  if (rel !== null) return Math.max(0, now - parseDuration(rel[1]!, field));
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    const ms = s.length <= 10 ? n * 1000 : n;
    if (ms > MAX_TIMESTAMP_MS) throw invalidArgument('time_invalid', field, `${field} is past the year 9999`);
    return ms;
  }
  if (/^\d{1,10}\.\d{1,3}$/.test(s)) {
    const [sec, frac] = s.split('.') as [string, string];
    return Number(sec) * 1000 + Number(frac.padEnd(3, '0'));
  }
  const d = /^(\d{4})\/(\d{2})\/(\d{2})(?:[- ](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(s);
  if (d !== null) {
    const t = Date.UTC(+d[1]!, +d[2]! - 1, +d[3]!, +(d[4] ?? 0), +(d[5] ?? 0), +(d[6] ?? 0));
    const back = new Date(t);
    const ok =
      back.getUTCMonth() === +d[2]! - 1 &&
      back.getUTCDate() === +d[3]! &&
      +(d[4] ?? 0) < 24 &&
      +(d[5] ?? 0) < 60 &&
      +(d[6] ?? 0) < 60;
    if (Number.isNaN(t) || t < 0 || !ok)
      throw invalidArgument('time_invalid', field, `${field}: '${s}' is not a valid date`);
    return t;
  }
  throw invalidArgument(
    'time_invalid',
    field,
    `${field}: '${s}' is not a time (e.g. 1h-ago, 1700000000, 2024/01/01-00:00:00)`,
  );
}

/** `1m-avg`, `1h-p95-zero`, `0all-sum`. */
export function parseDownsample(s: string, field: string): DownsampleSpec {
  const parts = s.split('-');
  if (parts.length < 2 || parts.length > 3) {
    throw invalidArgument(
      'downsample_invalid',
      field,
      `${field}: '${s}' is not <interval>-<function>[-<fill>] (e.g. 1m-avg-zero)`,
    );
  }
  const [iv, fn, fill] = parts as [string, string, string | undefined];
  const interval: number | 'all' = iv === 'all' || iv === '0all' ? 'all' : parseDuration(iv, field);
  if (!(FUNCTIONS as readonly string[]).includes(fn)) {
    throw invalidArgument(
      'function_invalid',
      field,
      `${field}: downsample function must be one of ${FUNCTIONS.join(', ')}`,
    );
  }
  const out: DownsampleSpec = { interval, fn: fn as AggFn };
  if (fill !== undefined) {
    if (!(FILL_POLICIES as readonly string[]).includes(fill)) {
      throw invalidArgument(
        'fill_invalid',
        field,
        `${field}: fill policy must be one of ${FILL_POLICIES.join(', ')}`,
      );
    }
    out.fill = fill as FillPolicy;
  }
  return out;
}

/** Splits at commas outside parentheses (filter arguments may hold commas: regexp(a{1,2})). */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    else if (ch === ')') depth = Math.max(0, depth - 1);
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur !== '' || out.length > 0) out.push(cur);
  return out;
}

const FILTER_FNS = FILTER_FUNCTIONS;

/** `host=web01|web02`, `host=*`, `dc=wildcard(eu*)` -> a filter. */
function parseTagFilter(s: string, groupBy: boolean, field: string): TagFilter {
  const eq = s.indexOf('=');
  if (eq <= 0) throw invalidArgument('filter_invalid', field, `${field}: '${s}' is not tagk=filter`);
  const tagk = s.slice(0, eq).trim();
  const v = s.slice(eq + 1).trim();
  const fn = /^([a-z_]+)\((.*)\)$/s.exec(v);
  if (fn !== null) {
    if (!(FILTER_FNS as readonly string[]).includes(fn[1]!)) {
      throw invalidArgument(
        'filter_type_invalid',
        field,
        `${field}: filter must be one of ${FILTER_FNS.join(', ')}`,
      );
    }
    return { tagk, type: fn[1] as TagFilter['type'], filter: fn[2]!, groupBy };
  }
  if (v === '') throw invalidArgument('filter_invalid', field, `${field}: '${s}' has no value`);
  // Old-style tags: `*` or anything with a `*` is a wildcard, otherwise literal_or.
  if (v.includes('*')) return { tagk, type: 'wildcard', filter: v, groupBy };
  return { tagk, type: 'literal_or', filter: v, groupBy };
}

function parseBraces(s: string, groupBy: boolean, field: string): TagFilter[] {
  if (s.trim() === '') return [];
  return splitTop(s).map((p, i) => parseTagFilter(p, groupBy, `${field}[${i}]`));
}

/** `rate`, `rate{counter}`, `rate{counter,65535,1000}`, `rate{dropcounter,,}`. */
function parseRate(s: string, field: string): RateSpec {
  if (s === 'rate') return {};
  const m = /^rate\{(.*)\}$/.exec(s);
  if (m === null)
    throw invalidArgument('rate_invalid', field, `${field}: '${s}' is not rate{counter[,max[,reset]]}`);
  const parts = m[1]!.split(',');
  if (parts.length > 3 || !['counter', 'dropcounter', ''].includes(parts[0]!)) {
    throw invalidArgument(
      'rate_invalid',
      field,
      `${field}: '${s}' is not rate{counter|dropcounter[,max[,reset]]}`,
    );
  }
  const num = (x: string | undefined, what: string): number | undefined => {
    if (x === undefined || x === '') return undefined;
    if (!/^\d+$/.test(x))
      throw invalidArgument('rate_option_invalid', field, `${field}: ${what} must be a non-negative integer`);
    return Number(x);
  };
  const out: RateSpec = { counter: parts[0] !== '', dropResets: parts[0] === 'dropcounter' };
  const max = num(parts[1], 'counter max');
  const reset = num(parts[2], 'reset value');
  if (max !== undefined) out.counterMax = max;
  if (reset !== undefined) out.resetValue = reset;
  return out;
}

/** `{a}{b}` -> ['a', 'b']; braces inside a filter's parentheses (regexp(x{2})) do not count. */
function braceGroups(s: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    if (s[i] !== '{') return null;
    let paren = 0;
    let j = i + 1;
    for (; j < s.length; j++) {
      if (s[j] === '(') paren++;
      else if (s[j] === ')') paren = Math.max(0, paren - 1);
      else if (s[j] === '}' && paren === 0) break;
    }
    if (j >= s.length) return null;
    out.push(s.slice(i + 1, j));
    i = j + 1;
  }
  return out;
}

/**
 * One `m=` value: `aggregator:[downsample:][rate[{...}]:]metric[{groupBy filters}][{other filters}]`.
 * Returns the sub-query and its OpenTSDB echo.
 */
export function parseMetricQuery(
  m: string,
  field: string,
): { query: SubQuery; echo: Record<string, unknown> } {
  // The filters start at the first '{' after the last top-level ':' (rate{...} has braces too).
  let depth = 0;
  let lastColon = -1;
  for (let i = 0; i < m.length; i++) {
    if (m[i] === '{') depth++;
    else if (m[i] === '}') depth--;
    else if (m[i] === ':' && depth === 0) lastColon = i;
  }
  const brace = m.indexOf('{', lastColon + 1);
  const head = brace < 0 ? m : m.slice(0, brace);
  const tail = brace < 0 ? '' : m.slice(brace);
  const parts = head.split(':');
  if (parts.length < 2) {
    throw invalidArgument(
      'metric_query_invalid',
      field,
      `${field}: '${m}' is not aggregator:[downsample:][rate:]metric{tags}`,
    );
  }
  const aggName = parts[0]!;
  const aggregator = checkAggregator(aggName, field);
  const metric = parts[parts.length - 1]!;
  if (metric === '') throw invalidArgument('metric_empty', field, `${field}: the metric is empty`);
  const query: SubQuery = { metric, aggregator };
  const echo: Record<string, unknown> = { aggregator: aggName, metric, rate: false };
  for (const p of parts.slice(1, -1)) {
    if (p.startsWith('rate')) {
      query.rate = parseRate(p, field);
      echo.rate = true;
      echo.rateOptions = query.rate;
    } else if (p === 'explicit_tags') {
      throw invalidArgument('explicit_tags_unsupported', field, `${field}: explicit_tags is not supported`);
    } else if (/^\d*(all|ms|s|m|h|d|w|n|y)-/.test(p)) {
      query.downsample = parseDownsample(p, field);
      echo.downsample = p;
    } else {
      throw invalidArgument(
        'metric_query_invalid',
        field,
        `${field}: unknown part '${p}' (expected a downsample like 1m-avg or rate)`,
      );
    }
  }
  const groups = braceGroups(tail);
  if (groups === null || groups.length > 2) {
    throw invalidArgument('filter_invalid', field, `${field}: '${tail}' is not {tag filters}{other filters}`);
  }
  const filters = [
    ...parseBraces(groups[0] ?? '', true, `${field}.tags`),
    ...parseBraces(groups[1] ?? '', false, `${field}.filters`),
  ];
  if (filters.length > 0) query.filters = filters;
  echo.filters = filters;
  return { query, echo };
}

function flag(v: string | null): boolean {
  return v !== null && v !== 'false' && v !== '0';
}

/** GET /api/query?start=1h-ago&m=...&ms=true&show_query=true */
export function parseQueryGet(params: URLSearchParams, now: number): OpenTsdbQuery {
  if (params.has('tsuids'))
    throw invalidArgument('tsuids_unsupported', 'tsuids', 'tsuid queries are not supported; use m=');
  const start = parseTime(params.get('start') ?? '', now, 'start');
  const end = params.has('end') ? parseTime(params.get('end'), now, 'end') : now;
  const ms = params.getAll('m');
  if (ms.length === 0)
    throw invalidArgument('queries_empty', 'm', 'at least one m= metric query is required');
  const parsed = ms.map((m, i) => parseMetricQuery(m, `m[${i}]`));
  const showTSUIDs = flag(params.get('show_tsuids'));
  return {
    spec: { start, end, queries: parsed.map((p) => p.query), withSeriesIds: showTSUIDs },
    msResolution: flag(params.get('ms')) || flag(params.get('msResolution')),
    showQuery: flag(params.get('show_query')),
    showTSUIDs,
    echo: parsed.map((p, i) => ({ ...p.echo, index: i })),
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function optBool(o: Record<string, unknown>, k: string, field: string): boolean {
  const v = o[k];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalidArgument('field_invalid', field, `${field} must be a boolean`);
  return v;
}

/** POST /api/query body (the JSON Grafana's OpenTSDB data source sends). */
export function parseQueryPost(body: unknown, now: number): OpenTsdbQuery {
  if (!isObject(body)) throw invalidArgument('query_invalid', 'body', 'the body must be a JSON object');
  if (body.delete === true)
    throw invalidArgument('delete_unsupported', 'delete', 'delete=true is not supported on /api/query');
  if (body.useCalendar === true)
    throw invalidArgument('calendar_unsupported', 'useCalendar', 'calendar downsampling is not supported');
  if (body.timezone !== undefined && body.timezone !== 'UTC') {
    throw invalidArgument('timezone_unsupported', 'timezone', 'only UTC is supported');
  }
  const start = parseTime(body.start, now, 'start');
  const end = body.end === undefined || body.end === null ? now : parseTime(body.end, now, 'end');
  if (!Array.isArray(body.queries) || body.queries.length === 0) {
    throw invalidArgument('queries_empty', 'queries', 'queries must be a non-empty array');
  }
  const echo: Record<string, unknown>[] = [];
  const queries = body.queries.map((raw: unknown, i): SubQuery => {
    const field = `queries[${i}]`;
    if (!isObject(raw)) throw invalidArgument('query_invalid', field, `${field} must be an object`);
    if (raw.tsuids !== undefined)
      throw invalidArgument('tsuids_unsupported', `${field}.tsuids`, 'tsuid queries are not supported');
    if (raw.percentiles !== undefined) {
      throw invalidArgument(
        'percentiles_unsupported',
        `${field}.percentiles`,
        'histogram percentiles are not supported; use a p50..p99 aggregator',
      );
    }
    if (optBool(raw, 'explicitTags', `${field}.explicitTags`)) {
      throw invalidArgument(
        'explicit_tags_unsupported',
        `${field}.explicitTags`,
        'explicitTags is not supported',
      );
    }
    if (typeof raw.metric !== 'string' || raw.metric === '') {
      throw invalidArgument('metric_empty', `${field}.metric`, `${field}.metric must be a non-empty string`);
    }
    const aggregator = checkAggregator(raw.aggregator, `${field}.aggregator`);
    const q: SubQuery = { metric: raw.metric, aggregator };
    if (raw.downsample !== undefined && raw.downsample !== null && raw.downsample !== '') {
      if (typeof raw.downsample !== 'string') {
        throw invalidArgument(
          'downsample_invalid',
          `${field}.downsample`,
          `${field}.downsample must be a string like 1m-avg`,
        );
      }
      q.downsample = parseDownsample(raw.downsample, `${field}.downsample`);
    }
    if (optBool(raw, 'rate', `${field}.rate`)) {
      const ro = raw.rateOptions ?? {};
      if (!isObject(ro))
        throw invalidArgument(
          'rate_invalid',
          `${field}.rateOptions`,
          `${field}.rateOptions must be an object`,
        );
      const r: RateSpec = {
        counter: optBool(ro, 'counter', `${field}.rateOptions.counter`),
        dropResets: optBool(ro, 'dropResets', `${field}.rateOptions.dropResets`),
      };
      for (const k of ['counterMax', 'resetValue'] as const) {
        const v = ro[k];
        if (v === undefined || v === null) continue;
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
          throw invalidArgument(
            'rate_option_invalid',
            `${field}.rateOptions.${k}`,
            `${field}.rateOptions.${k} must be a non-negative number`,
          );
        }
        r[k] = v;
      }
      q.rate = r;
    }
    const filters: TagFilter[] = [];
    if (raw.tags !== undefined && raw.tags !== null) {
      if (!isObject(raw.tags))
        throw invalidArgument('tags_invalid', `${field}.tags`, `${field}.tags must be an object`);
      for (const [k, v] of Object.entries(raw.tags)) {
        if (typeof v !== 'string')
          throw invalidArgument('tags_invalid', `${field}.tags.${k}`, `${field}.tags.${k} must be a string`);
        filters.push(parseTagFilter(`${k}=${v}`, true, `${field}.tags.${k}`));
      }
    }
    if (raw.filters !== undefined && raw.filters !== null) {
      if (!Array.isArray(raw.filters))
        throw invalidArgument('filters_invalid', `${field}.filters`, `${field}.filters must be an array`);
      raw.filters.forEach((f: unknown, j) => {
        const ff = `${field}.filters[${j}]`;
        if (!isObject(f)) throw invalidArgument('filter_invalid', ff, `${ff} must be an object`);
        const type = typeof f.type === 'string' ? f.type.toLowerCase() : f.type;
        if (typeof type !== 'string' || !(FILTER_FNS as readonly string[]).includes(type)) {
          throw invalidArgument(
            'filter_type_invalid',
            `${ff}.type`,
            `${ff}.type must be one of ${FILTER_FNS.join(', ')}`,
          );
        }
        if (typeof f.tagk !== 'string' || f.tagk === '')
          throw invalidArgument('tag_key_invalid', `${ff}.tagk`, `${ff}.tagk must be a non-empty string`);
        if (typeof f.filter !== 'string')
          throw invalidArgument('filter_invalid', `${ff}.filter`, `${ff}.filter must be a string`);
        filters.push({
          tagk: f.tagk,
          type: type as TagFilter['type'],
          filter: f.filter,
          groupBy: optBool(f, 'groupBy', `${ff}.groupBy`),
        });
      });
    }
    if (filters.length > 0) q.filters = filters;
    echo.push({
      aggregator: raw.aggregator,
      metric: raw.metric,
      tsuids: null,
      downsample: raw.downsample ?? null,
      rate: q.rate !== undefined,
      filters: filters.map((f) => ({
        tagk: f.tagk,
        filter: f.filter,
        group_by: f.groupBy === true,
        type: f.type,
      })),
      rateOptions: q.rate ?? null,
      tags: raw.tags ?? {},
      explicitTags: false,
      index: i,
    });
    return q;
  });
  const showTSUIDs = optBool(body, 'showTSUIDs', 'showTSUIDs');
  return {
    spec: { start, end, queries, withSeriesIds: showTSUIDs },
    msResolution: optBool(body, 'msResolution', 'msResolution'),
    showQuery: optBool(body, 'showQuery', 'showQuery'),
    showTSUIDs,
    echo,
  };
}

/** A result as OpenTSDB 2.4 writes it. */
export interface OpenTsdbResult {
  metric: string;
  tags: Record<string, string>;
  aggregateTags: string[];
  query?: Record<string, unknown>;
  tsuids?: string[];
  /** Keys: seconds (or ms with msResolution) as strings; NaN fill as "NaN", null fill as null. */
  dps: Record<string, number | string | null>;
}

/** Formats engine results the way OpenTSDB's /api/query answers (JSON.stringify-ready). */
export function formatQueryResponse(results: readonly QueryResult[], req: OpenTsdbQuery): OpenTsdbResult[] {
  return results.map((r) => {
    const dps: Record<string, number | string | null> = {};
    for (let i = 0; i < r.ts.length; i++) {
      const t = r.ts[i]!;
      const key = String(req.msResolution ? t : Math.floor(t / 1000));
      const v = r.vals[i]!;
      dps[key] = Number.isNaN(v) ? (r.fill === 'null' ? null : 'NaN') : Number.isFinite(v) ? v : String(v);
    }
    const out: OpenTsdbResult = { metric: r.metric, tags: r.tags, aggregateTags: r.aggregateTags, dps };
    if (req.showQuery) out.query = req.echo[r.query] ?? {};
    if (req.showTSUIDs) out.tsuids = r.seriesIds ?? [];
    // OpenTSDB puts dps last; keep the key order readable.
    const { dps: d, ...rest } = out;
    return { ...rest, dps: d };
  });
}

/** OpenTSDB's error body `{"error":{"code":400,"message":...}}` and its HTTP status. */
export function openTsdbError(err: unknown): { status: number; body: { error: Record<string, unknown> } } {
  const status = toHttpStatus(err);
  if (err instanceof TidemarkError) {
    const error: Record<string, unknown> = { code: status, message: err.message, reason: err.reason };
    if (err.details.field !== undefined) error.details = `field: ${err.details.field}`;
    return { status, body: { error } };
  }
  return { status, body: { error: { code: status, message: 'internal error' } } };
}

/** /api/aggregators: every accepted aggregator name, sorted. */
export function aggregatorNames(): string[] {
  return [...AGGREGATORS, ...Object.keys(AGGREGATOR_ALIASES)].sort();
}

export interface SuggestRequest {
  type: 'metrics' | 'tagk' | 'tagv';
  q?: string;
  max?: number;
}

/** /api/suggest over local stores: sorted, de-duplicated names with the prefix, at most max (default 25). */
export function suggest(stores: readonly ShardStore[], req: SuggestRequest): string[] {
  if (!['metrics', 'tagk', 'tagv'].includes(req.type)) {
    throw invalidArgument('suggest_type_invalid', 'type', 'type must be one of metrics, tagk, tagv');
  }
  const max = req.max ?? 25;
  if (!Number.isSafeInteger(max) || max <= 0)
    throw invalidArgument('suggest_max_invalid', 'max', 'max must be a positive integer');
  const prefix = req.q ?? '';
  const names = new Set<string>();
  for (const s of stores) {
    const all =
      req.type === 'metrics'
        ? s.metricNames()
        : req.type === 'tagk'
          ? s.labelNames()
          : s.labelNames().flatMap((n) => s.labelValues(n));
    for (const n of all) if (n.startsWith(prefix)) names.add(n);
  }
  return [...names].sort().slice(0, max);
}

/** Parses /api/suggest query parameters. */
export function parseSuggestGet(params: URLSearchParams): SuggestRequest {
  const type = params.get('type') ?? '';
  const max = params.has('max') ? Number(params.get('max')) : undefined;
  const out: SuggestRequest = { type: type as SuggestRequest['type'] };
  if (params.has('q')) out.q = params.get('q')!;
  if (max !== undefined) out.max = max;
  return out;
}

export interface LastQuery {
  metric: string;
  tags: Record<string, string>;
}

export interface LastRequest {
  queries: LastQuery[];
  /** Hours to look back (0: the whole history). */
  backScan: number;
}

export interface LastPoint {
  metric: string;
  timestamp: number;
  /** A string, as OpenTSDB writes it. */
  value: string;
  tags: Record<string, string>;
  tsuid: string;
}

/** `metric{k=v,k2=v2}` (exact tag values). */
function parseLastSeries(s: string, field: string): LastQuery {
  const m = /^([^{}]+)(?:\{([^}]*)\})?$/.exec(s);
  if (m === null)
    throw invalidArgument('timeseries_invalid', field, `${field}: '${s}' is not metric{tag=value,...}`);
  const tags: Record<string, string> = {};
  for (const p of (m[2] ?? '').split(',').filter((x) => x !== '')) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw invalidArgument('timeseries_invalid', field, `${field}: '${p}' is not tag=value`);
    tags[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return { metric: m[1]!, tags };
}

function checkBackScan(v: unknown): number {
  if (v === undefined || v === null) return 0;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw invalidArgument(
      'back_scan_invalid',
      'backScan',
      'backScan must be a non-negative integer of hours',
    );
  }
  return n;
}

/** GET /api/query/last?timeseries=metric{k=v}&back_scan=24 */
export function parseLastGet(params: URLSearchParams): LastRequest {
  const ts = params.getAll('timeseries');
  if (ts.length === 0)
    throw invalidArgument('queries_empty', 'timeseries', 'at least one timeseries= is required');
  return {
    queries: ts.map((s, i) => parseLastSeries(s, `timeseries[${i}]`)),
    backScan: checkBackScan(params.get('back_scan') ?? undefined),
  };
}

/** POST /api/query/last body: {queries:[{metric, tags}], backScan}. */
export function parseLastPost(body: unknown): LastRequest {
  if (!isObject(body) || !Array.isArray(body.queries) || body.queries.length === 0) {
    throw invalidArgument('queries_empty', 'queries', 'queries must be a non-empty array');
  }
  const queries = body.queries.map((q: unknown, i): LastQuery => {
    const f = `queries[${i}]`;
    if (!isObject(q)) throw invalidArgument('query_invalid', f, `${f} must be an object`);
    if (q.tsuids !== undefined)
      throw invalidArgument('tsuids_unsupported', `${f}.tsuids`, 'tsuid queries are not supported');
    if (typeof q.metric !== 'string' || q.metric === '')
      throw invalidArgument('metric_empty', `${f}.metric`, `${f}.metric must be a non-empty string`);
    const tags: Record<string, string> = {};
    if (q.tags !== undefined) {
      if (!isObject(q.tags))
        throw invalidArgument('tags_invalid', `${f}.tags`, `${f}.tags must be an object`);
      for (const [k, v] of Object.entries(q.tags)) {
        if (typeof v !== 'string')
          throw invalidArgument('tags_invalid', `${f}.tags.${k}`, `${f}.tags.${k} must be a string`);
        tags[k] = v;
      }
    }
    return { metric: q.metric, tags };
  });
  return { queries, backScan: checkBackScan(body.backScan) };
}

/**
 * /api/query/last over local stores: the newest sample of every series matching each query (exact tag
 * values), looking back backScan hours from now (0: everything). Sorted by metric then tsuid.
 */
export function queryLast(stores: readonly ShardStore[], req: LastRequest, now: number): LastPoint[] {
  const minT = req.backScan > 0 ? Math.max(0, now - req.backScan * 3_600_000) : 0;
  const out: LastPoint[] = [];
  const seen = new Set<string>();
  for (const q of req.queries) {
    const matchers: Matcher[] = Object.entries(q.tags).map(([name, value]) => ({ name, op: '=', value }));
    for (const store of stores) {
      // selectLast reads each series' head or newest chunk only: O(series), whatever the back-scan.
      for (const s of store.selectLast({ metric: q.metric, matchers, minT })) {
        const tsuid = seriesIdHex(s.id);
        if (seen.has(tsuid)) continue;
        seen.add(tsuid);
        out.push({
          metric: s.series.metric,
          timestamp: s.t,
          value: String(s.v),
          tags: { ...s.series.tags },
          tsuid,
        });
      }
    }
  }
  return out.sort((a, b) =>
    a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : a.tsuid < b.tsuid ? -1 : 1,
  );
}

// ---------------------------------------------------------------- /api/search/lookup

/** One `{key, value}` pair of a lookup; `*` as key or value matches any. */
export interface LookupTag {
  key: string;
  value: string;
}

/** A parsed /api/search/lookup request (OpenTSDB 2.4; `useMeta` is accepted and ignored). */
export interface LookupRequest {
  /** A metric name, or `*` for every metric (then at least one tag pair is required). */
  metric: string;
  tags: LookupTag[];
  /** Most results returned (default 25, as OpenTSDB). */
  limit: number;
  /** Results to skip (paging). */
  startIndex: number;
}

export interface LookupSeries {
  tsuid: string;
  metric: string;
  tags: Record<string, string>;
}

/** One shard's answer: its first `startIndex + limit` matches by tsuid and how many match in all. */
export interface LookupPartial {
  total: number;
  results: LookupSeries[];
}

export const DEFAULT_LOOKUP_LIMIT = 25;

function checkLookup(metric: unknown, tags: LookupTag[], limit: unknown, startIndex: unknown): LookupRequest {
  if (typeof metric !== 'string' || metric.trim() === '') {
    throw invalidArgument('metric_empty', 'metric', 'metric must be a non-empty string (or * with tags)');
  }
  if (metric === '*' && tags.length === 0) {
    throw invalidArgument(
      'lookup_too_broad',
      'tags',
      'a lookup of every metric (*) needs at least one tag pair',
    );
  }
  const int = (v: unknown, field: string, dflt: number, min: number): number => {
    if (v === undefined || v === null || v === '') return dflt;
    const n = typeof v === 'string' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
      throw invalidArgument(`${field}_invalid`, field, `${field} must be an integer >= ${min}`);
    }
    return n;
  };
  return {
    metric: metric.trim(),
    tags,
    limit: int(limit, 'limit', DEFAULT_LOOKUP_LIMIT, 1),
    startIndex: int(startIndex, 'startIndex', 0, 0),
  };
}

/** GET /api/search/lookup?m=metric{k=v,k2=*}&limit=25&startIndex=0 (OpenTSDB: `*` = any key or value). */
export function parseLookupGet(params: URLSearchParams): LookupRequest {
  const m = params.get('m');
  if (m === null || m === '')
    throw invalidArgument('metric_empty', 'm', 'm=metric{tag=value,...} is required');
  const parsed = /^([^{}]*)(?:\{([^}]*)\})?$/.exec(m);
  if (parsed === null) throw invalidArgument('lookup_invalid', 'm', `m: '${m}' is not metric{tag=value,...}`);
  const tags: LookupTag[] = [];
  for (const p of (parsed[2] ?? '').split(',').filter((x) => x.trim() !== '')) {
    const eq = p.indexOf('=');
    if (eq <= 0 || eq === p.length - 1) {
      throw invalidArgument('lookup_invalid', 'm', `m: '${p}' is not tag=value (use * for any)`);
    }
    tags.push({ key: p.slice(0, eq).trim(), value: p.slice(eq + 1).trim() });
  }
  return checkLookup(
    parsed[1] === '' ? '*' : parsed[1],
    tags,
    params.get('limit') ?? undefined,
    params.get('startIndex') ?? undefined,
  );
}

/** POST /api/search/lookup body: {metric, tags:[{key, value}], limit, startIndex, useMeta}. */
export function parseLookupPost(body: unknown): LookupRequest {
  if (!isObject(body)) throw invalidArgument('lookup_invalid', 'body', 'the body must be a JSON object');
  const tags: LookupTag[] = [];
  if (body.tags !== undefined && body.tags !== null) {
    if (!Array.isArray(body.tags))
      throw invalidArgument('tags_invalid', 'tags', 'tags must be an array of {key, value}');
    body.tags.forEach((t: unknown, i) => {
      const f = `tags[${i}]`;
      if (
        !isObject(t) ||
        typeof t.key !== 'string' ||
        typeof t.value !== 'string' ||
        t.key === '' ||
        t.value === ''
      ) {
        throw invalidArgument(
          'tags_invalid',
          f,
          `${f} must be {key, value} with non-empty strings (* for any)`,
        );
      }
      tags.push({ key: t.key, value: t.value });
    });
  }
  return checkLookup(body.metric ?? '*', tags, body.limit, body.startIndex);
}

/**
 * /api/search/lookup over local stores: every series of the metric (or of every metric for `*`) that has
 * each tag pair (`k=*`: the tag is present; `*=v`: some tag has value v). Returns the first
 * `startIndex + limit` matches by tsuid and the total count, so per-shard answers merge exactly.
 */
export function lookupSeries(stores: readonly ShardStore[], req: LookupRequest): LookupPartial {
  const matchers: Matcher[] = [];
  const anyKeyValues: string[] = [];
  for (const t of req.tags) {
    if (t.key === '*') {
      if (t.value !== '*') anyKeyValues.push(t.value);
    } else if (t.value === '*') matchers.push({ name: t.key, op: '!=', value: '' });
    else matchers.push({ name: t.key, op: '=', value: t.value });
  }
  const keep = req.startIndex + req.limit;
  let total = 0;
  const out: LookupSeries[] = [];
  for (const store of stores) {
    const metrics = req.metric === '*' ? store.metricNames() : [req.metric];
    for (const metric of metrics) {
      for (const s of store.select({ metric, matchers })) {
        if (anyKeyValues.length > 0) {
          const values = Object.values(s.series.tags);
          if (!anyKeyValues.every((v) => values.includes(v))) continue;
        }
        total++;
        out.push({ tsuid: seriesIdHex(s.id), metric: s.series.metric, tags: { ...s.series.tags } });
      }
    }
  }
  out.sort((a, b) => (a.tsuid < b.tsuid ? -1 : a.tsuid > b.tsuid ? 1 : 0));
  return { total, results: out.slice(0, keep) };
}

/** Merges shard answers and shapes OpenTSDB's response (`time` in ms, as OpenTSDB reports it). */
export function formatLookupResponse(
  req: LookupRequest,
  parts: readonly LookupPartial[],
  timeMs: number,
): Record<string, unknown> {
  const all = parts.flatMap((p) => p.results);
  all.sort((a, b) => (a.tsuid < b.tsuid ? -1 : a.tsuid > b.tsuid ? 1 : 0));
  return {
    type: 'LOOKUP',
    metric: req.metric,
    tags: req.tags.map((t) => ({ key: t.key, value: t.value })),
    limit: req.limit,
    time: Math.round(timeMs * 1000) / 1000,
    results: all.slice(req.startIndex, req.startIndex + req.limit),
    startIndex: req.startIndex,
    totalResults: parts.reduce((a, p) => a + p.total, 0),
  };
}
