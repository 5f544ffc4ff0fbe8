/**
 * The same query in each system's own language, and each answer back into the normalized form
 * (bench/peers/workload.ts). Pure: request builders return URL paths and bodies, normalizers take parsed JSON.
 *
 * - Tidemark: OpenTSDB `POST /api/query` (one sub-query per field, `literal_or` host filter or `wildcard *`
 *   grouped by hostname, `1m-max` / `1h-avg` downsampling) and `POST /api/query/last`.
 * - VictoriaMetrics: MetricsQL `query_range`. A bucket [b, b + i) is evaluated at t = b + i - 1 ms with a
 *   window of i, because a rollup window is (t - i, t]; the driver starts VictoriaMetrics with
 *   `-search.disableCache` so start/end are not aligned to the step. `keep_metric_names` keeps one result per
 *   field. lastpoint: `last_over_time(...[1h])` at the end of the data.
 * - QuestDB: SQL over HTTP `/exec` on the `cpu` table its ILP endpoint creates (one column per field,
 *   SYMBOL tags): `SAMPLE BY 1m|1h` (buckets aligned to the calendar = the epoch for these units) and
 *   `LATEST ON timestamp PARTITION BY hostname`.
 */
import type { Normalized, QueryParams } from './workload.js';
import { resultKey } from './workload.js';

const unitOf = (ms: number) => (ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : `${ms / 60_000}m`);

// ---------------------------------------------------------------------------------------------- Tidemark

export function tidemarkRequest(q: QueryParams): { path: string; body: unknown } {
  if (q.shape === 'lastpoint') {
    return {
      path: '/api/query/last',
      body: { queries: q.fields.map((f) => ({ metric: `cpu_${f}`, tags: {} })), backScan: 0 },
    };
  }
  return {
    path: '/api/query',
    body: {
      start: q.start,
      end: q.end,
      msResolution: true,
      queries: q.fields.map((f) => ({
        metric: `cpu_${f}`,
        aggregator: q.agg,
        downsample: `${unitOf(q.intervalMs)}-${q.agg}`,
        filters: q.hosts
          ? [{ type: 'literal_or', tagk: 'hostname', filter: q.hosts.join('|'), groupBy: false }]
          : [{ type: 'wildcard', tagk: 'hostname', filter: '*', groupBy: true }],
      })),
    },
  };
}

interface OpenTsdbResult {
  metric: string;
  tags: Record<string, string>;
  dps: Record<string, number | string | null>;
}
interface OpenTsdbLast {
  metric: string;
  value: string;
  tags: Record<string, string>;
}

const fieldOf = (metric: string) => (metric.startsWith('cpu_') ? metric.slice(4) : metric);

export function tidemarkNormalize(q: QueryParams, json: unknown): Normalized {
  const out: Normalized = new Map();
  if (q.shape === 'lastpoint') {
    for (const r of json as OpenTsdbLast[]) {
      out.set(resultKey(fieldOf(r.metric), r.tags.hostname ?? null), Number(r.value));
    }
    return out;
  }
  for (const r of json as OpenTsdbResult[]) {
    const host = q.groupByHost ? (r.tags.hostname ?? null) : null;
    for (const [t, v] of Object.entries(r.dps)) {
      if (v === null || v === 'NaN') continue;
      out.set(resultKey(fieldOf(r.metric), host, Number(t)), Number(v));
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------- VictoriaMetrics

const promRegexEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function vmSelector(q: QueryParams): string {
  const names = `__name__=~"cpu_(${q.fields.map(promRegexEscape).join('|')})"`;
  const hosts = q.hosts ? `,hostname=~"${q.hosts.map(promRegexEscape).join('|')}"` : '';
  return `{${names}${hosts}}`;
}

/** A GET path with its query string. */
export function vmRequest(q: QueryParams): string {
  if (q.shape === 'lastpoint') {
    const query = `last_over_time(${vmSelector(q)}[1h]) keep_metric_names`;
    return `/api/v1/query?${new URLSearchParams({ query, time: (q.end / 1000).toFixed(3) })}`;
  }
  const by = q.groupByHost ? '__name__,hostname' : '__name__';
  const query = `${q.agg} by (${by}) (${q.agg}_over_time(${vmSelector(q)}[${q.intervalMs / 1000}s]) keep_metric_names)`;
  const firstEval = q.start - (q.start % q.intervalMs) + q.intervalMs - 1;
  const lastEval = q.end - (q.end % q.intervalMs) + q.intervalMs - 1;
  return `/api/v1/query_range?${new URLSearchParams({
    query,
    start: (firstEval / 1000).toFixed(3),
    end: (lastEval / 1000).toFixed(3),
    step: `${q.intervalMs / 1000}s`,
    nocache: '1',
  })}`;
}

interface PromResponse {
  status: string;
  data: {
    resultType: string;
    result: { metric: Record<string, string>; values?: [number, string][]; value?: [number, string] }[];
  };
}

export function vmNormalize(q: QueryParams, json: unknown): Normalized {
  const out: Normalized = new Map();
  const r = json as PromResponse;
  if (r.status !== 'success') throw new Error(`VictoriaMetrics: ${JSON.stringify(json).slice(0, 300)}`);
  for (const s of r.data.result) {
    const field = fieldOf(s.metric.__name__ ?? '?');
    const host = q.groupByHost ? (s.metric.hostname ?? null) : null;
    if (q.shape === 'lastpoint') {
      out.set(resultKey(field, host), Number(s.value![1]));
      continue;
    }
    for (const [t, v] of s.values ?? []) {
      const evalMs = Math.round(t * 1000);
      out.set(resultKey(field, host, evalMs - q.intervalMs + 1), Number(v));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- QuestDB

const iso = (ms: number) => new Date(ms).toISOString();
const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;

export function questdbSql(q: QueryParams): string {
  if (q.shape === 'lastpoint') {
    return `SELECT hostname, ${q.fields.join(', ')} FROM cpu LATEST ON timestamp PARTITION BY hostname`;
  }
  const aggs = q.fields.map((f) => `${q.agg}(${f}) ${f}`).join(', ');
  const where = [
    `timestamp BETWEEN ${sqlString(iso(q.start))} AND ${sqlString(iso(q.end))}`,
    ...(q.hosts ? [`hostname IN (${q.hosts.map(sqlString).join(', ')})`] : []),
  ].join(' AND ');
  const cols = q.groupByHost ? `timestamp, hostname, ${aggs}` : `timestamp, ${aggs}`;
  return `SELECT ${cols} FROM cpu WHERE ${where} SAMPLE BY ${unitOf(q.intervalMs)} ALIGN TO CALENDAR`;
}

interface QuestResponse {
  columns: { name: string; type: string }[];
  dataset: unknown[][];
  error?: string;
}

export function questdbNormalize(q: QueryParams, json: unknown): Normalized {
  const r = json as QuestResponse;
  if (r.error !== undefined || !r.columns) throw new Error(`QuestDB: ${JSON.stringify(json).slice(0, 300)}`);
  const out: Normalized = new Map();
  const col = (name: string) => r.columns.findIndex((c) => c.name === name);
  const ti = col('timestamp');
  const hi = col('hostname');
  const fi = q.fields.map(col);
  for (const row of r.dataset) {
    const host = q.groupByHost ? String(row[hi]) : null;
    const bucket = q.shape === 'lastpoint' ? undefined : Date.parse(String(row[ti]));
    q.fields.forEach((f, k) => {
      const v = row[fi[k]!];
      if (v !== null && v !== undefined) out.set(resultKey(f, host, bucket), Number(v));
    });
  }
  return out;
}
