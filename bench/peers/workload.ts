/**
 * The peers benchmark's workload, pure: TSBS cpu-only data as InfluxDB line protocol batches, the five TSBS
 * query shapes as system-neutral parameters, a normalized result form, the cross-check between systems and
 * the percentile code. No I/O here (unit-tested in test/bench/peers-workload.test.ts).
 *
 * The data is bench/datasets.ts's `tsbs` generator (TSBS cpu-only: 10 `usage_*` fields per host, TSBS's 10
 * host tags, integer random walks clamped to 0-100, 10 s interval), serialized the way TSBS's Influx
 * serializer writes it: one `cpu` line per host and timestamp, tags in TSBS order, integer fields with the
 * `i` suffix, nanosecond timestamps, rows in time order (every host at t, then every host at t + 10 s).
 */
import { Rng } from '../../src/util/random.js';
import { type Dataset, START_MS, TSBS_FIELDS, tsbs } from '../datasets.js';

export const TSBS_INTERVAL_MS = 10_000;
export const MINUTE = 60_000;
export const HOUR = 3_600_000;

export interface LineBatches {
  /**
   * Line protocol bodies per writer, each `batchLines` lines (a writer's last may be shorter). Writer w gets
   * the hosts h with h % writers === w, in time order: TSBS's `--hash-workers=true`, so every series arrives
   * in order (concurrent writers on a shared queue would reorder a series by up to writers x batch span, past
   * an out-of-order window such as Tidemark's 1 h or Prometheus').
   */
  bodies: string[][];
  lines: number;
  samples: number;
  hosts: number;
  /** Inclusive end of the data: the last timestamp (ms). */
  lastMs: number;
}

/** Parses `30s`, `15m`, `1h`, `2d` (or plain ms) into ms. */
export function parseDuration(text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new Error(`bad duration ${JSON.stringify(text)} (use e.g. 30m, 1h, 2d)`);
  const unit = { ms: 1, s: 1000, m: MINUTE, h: HOUR, d: 24 * HOUR }[(m[2] ?? 'ms') as 'ms'];
  return Number(m[1]) * unit;
}

/** The TSBS cpu-only line for host `h` at step `i` of `ds`. */
function line(ds: Dataset, tagPart: string, h: number, i: number): string {
  const base = h * TSBS_FIELDS.length;
  let fields = '';
  for (let f = 0; f < TSBS_FIELDS.length; f++) {
    const s = ds.series[base + f]!;
    fields += `${f === 0 ? '' : ','}${TSBS_FIELDS[f]}=${s.vals[i]}i`;
  }
  // ns timestamps as TSBS writes them; ms * 1e6 exceeds 2^53, so append the zeros as text.
  return `cpu,${tagPart} ${fields} ${ds.series[base]!.ts[i]}000000`;
}

export function tagPart(tags: Record<string, string>): string {
  // TSBS tag values have no spaces, commas or equals signs; escape anyway so the format stays valid.
  const esc = (s: string) => s.replace(/[ ,=\\]/g, (c) => `\\${c}`);
  return Object.entries(tags)
    .map(([k, v]) => `${esc(k)}=${esc(v)}`)
    .join(',');
}

export function lineBatches(
  hosts: number,
  durationMs: number,
  batchLines: number,
  writers = 1,
  seed = 1,
): LineBatches {
  const steps = Math.max(1, Math.floor(durationMs / TSBS_INTERVAL_MS));
  const ds = tsbs(hosts, steps, seed);
  const tags = Array.from({ length: hosts }, (_, h) =>
    tagPart(ds.series[h * TSBS_FIELDS.length]!.series.tags),
  );
  const bodies: string[][] = Array.from({ length: writers }, () => []);
  for (let w = 0; w < writers; w++) {
    let cur: string[] = [];
    for (let i = 0; i < steps; i++) {
      for (let h = w; h < hosts; h += writers) {
        cur.push(line(ds, tags[h]!, h, i));
        if (cur.length === batchLines) {
          bodies[w]!.push(`${cur.join('\n')}\n`);
          cur = [];
        }
      }
    }
    if (cur.length > 0) bodies[w]!.push(`${cur.join('\n')}\n`);
  }
  return {
    bodies,
    lines: steps * hosts,
    samples: ds.samples,
    hosts,
    lastMs: START_MS + (steps - 1) * TSBS_INTERVAL_MS,
  };
}

export const SHAPES = [
  'single-groupby-1-1-1',
  'single-groupby-5-8-1',
  'cpu-max-all-8',
  'double-groupby-all',
  'lastpoint',
] as const;
export type Shape = (typeof SHAPES)[number];

/**
 * One query, system-neutral. Bucketed shapes: per bucket of `intervalMs` (aligned to the epoch) inside
 * `[start, end]` (inclusive, whole buckets), `agg` of each field over the samples of the hosts (`hosts`, or
 * every host when null), one result per field, or per field and host when `groupByHost`. `lastpoint`: the
 * newest value of every field of every host.
 */
export interface QueryParams {
  shape: Shape;
  fields: string[];
  hosts: string[] | null;
  start: number;
  end: number;
  intervalMs: number;
  agg: 'max' | 'avg';
  groupByHost: boolean;
}

/**
 * `n` queries of `shape` with TSBS's parameters, drawn from `rng` (the same draws for every system):
 * single-groupby-1-1-1 = 1 field, 1 host, 1 h, max per minute; single-groupby-5-8-1 = 5 fields, 8 hosts,
 * 1 h, max per minute; cpu-max-all-8 = 10 fields, 8 hosts, 12 h (or the whole data when shorter), max per
 * hour; double-groupby-all = 10 fields, avg per host per hour, 12 h; lastpoint.
 * The data covers `[START_MS, START_MS + durationMs)`; ranges are whole hours (whole minutes under 1 h).
 */
export function makeQueries(
  shape: Shape,
  n: number,
  hosts: number,
  durationMs: number,
  rng: Rng,
): QueryParams[] {
  const fields = [...TSBS_FIELDS] as string[];
  const unit = durationMs >= HOUR ? HOUR : MINUTE;
  const units = Math.max(1, Math.floor(durationMs / unit));
  const hostList = (k: number) => {
    const set = new Set<number>();
    while (set.size < Math.min(k, hosts)) set.add(rng.int(0, hosts));
    return [...set].sort((a, b) => a - b).map((h) => `host_${h}`);
  };
  const range = (wantMs: number) => {
    const len = Math.max(1, Math.min(units, Math.floor(wantMs / unit)));
    const start = START_MS + rng.int(0, units - len + 1) * unit;
    return { start, end: start + len * unit - 1 };
  };
  const out: QueryParams[] = [];
  for (let q = 0; q < n; q++) {
    switch (shape) {
      case 'single-groupby-1-1-1':
        out.push({
          shape,
          fields: [rng.pick(fields)],
          hosts: hostList(1),
          ...range(HOUR),
          intervalMs: MINUTE,
          agg: 'max',
          groupByHost: false,
        });
        break;
      case 'single-groupby-5-8-1':
        out.push({
          shape,
          fields: fields.slice(0, 5),
          hosts: hostList(8),
          ...range(HOUR),
          intervalMs: MINUTE,
          agg: 'max',
          groupByHost: false,
        });
        break;
      case 'cpu-max-all-8':
        out.push({
          shape,
          fields,
          hosts: hostList(8),
          ...range(12 * HOUR),
          intervalMs: unit,
          agg: 'max',
          groupByHost: false,
        });
        break;
      case 'double-groupby-all':
        out.push({
          shape,
          fields,
          hosts: null,
          ...range(12 * HOUR),
          intervalMs: unit,
          agg: 'avg',
          groupByHost: true,
        });
        break;
      case 'lastpoint':
        out.push({
          shape,
          fields,
          hosts: null,
          start: START_MS,
          end: START_MS + durationMs - 1,
          intervalMs: 0,
          agg: 'max',
          groupByHost: true,
        });
        break;
    }
  }
  return out;
}

/**
 * A normalized result: `field \t host-or-* \t bucket-start-ms` (lastpoint: `field \t host`) → value.
 * Every system's answer is turned into this form and then compared.
 */
export type Normalized = Map<string, number>;

export function resultKey(field: string, host: string | null, bucketMs?: number): string {
  return bucketMs === undefined ? `${field}\t${host ?? '*'}` : `${field}\t${host ?? '*'}\t${bucketMs}`;
}

export interface CheckResult {
  equal: boolean;
  points: number;
  missing: string[];
  extra: string[];
  mismatched: { key: string; expected: number; actual: number }[];
}

/**
 * Compares `actual` to `expected`: the same keys, and values equal within `relTol` relative (absolute
 * below 1). Max/min/last of integer data must be exact (relTol 0 is fine); averages differ in the last bits
 * with the summation order (Tidemark sums exactly and rounds once, others add left to right), so averages
 * are compared with relTol 1e-9. At most 5 differences of each kind are listed.
 */
export function crossCheck(expected: Normalized, actual: Normalized, relTol: number): CheckResult {
  const missing: string[] = [];
  const extra: string[] = [];
  const mismatched: CheckResult['mismatched'] = [];
  let bad = 0;
  for (const [key, e] of expected) {
    const a = actual.get(key);
    if (a === undefined) {
      bad++;
      if (missing.length < 5) missing.push(key);
    } else if (!(Math.abs(a - e) <= relTol * Math.max(1, Math.abs(a), Math.abs(e)))) {
      bad++;
      if (mismatched.length < 5) mismatched.push({ key, expected: e, actual: a });
    }
  }
  for (const key of actual.keys()) {
    if (!expected.has(key)) {
      bad++;
      if (extra.length < 5) extra.push(key);
    }
  }
  return { equal: bad === 0, points: expected.size, missing, extra, mismatched };
}

/** The tolerance for a shape: exact for max and last (integer data), 1e-9 relative for averages. */
export function toleranceOf(q: QueryParams): number {
  return q.agg === 'avg' && q.shape !== 'lastpoint' ? 1e-9 : 0;
}

/** The nearest-rank percentile (p in [0, 1]) of `xs`, rounded to 0.01; NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(p * s.length));
  return Math.round(s[rank - 1]! * 100) / 100;
}

/**
 * Per-interval ingest rate from acknowledgement events (ms since the start, samples acknowledged):
 * `[secondsAtIntervalEnd, samplesPerSec]` for each `intervalMs` window up to the last event.
 */
export function rateSeries(events: readonly [number, number][], intervalMs: number): [number, number][] {
  if (events.length === 0) return [];
  const last = Math.max(...events.map((e) => e[0]));
  const n = Math.max(1, Math.ceil(last / intervalMs));
  const sums = new Float64Array(n);
  for (const [t, s] of events) sums[Math.min(n - 1, Math.floor(t / intervalMs))]! += s;
  return Array.from(
    sums,
    (s, i) => [((i + 1) * intervalMs) / 1000, (s * 1000) / intervalMs] as [number, number],
  );
}

export { Rng };
