/**
 * Client-side validation and normalization of write input. Everything the server would refuse as
 * INVALID_ARGUMENT is refused here first, naming the field, before anything is sent.
 */
import { invalidArgument } from '../errors/index.js';
import {
  BoundedCache,
  MAX_TIMESTAMP_MS,
  MIN_TIMESTAMP_MS,
  makeSeries,
  type Series,
  type SeriesId,
  seriesId,
  validateTimestamp,
  validateValue,
} from '../model/index.js';

/** One sample, row style. */
export interface Point {
  metric: string;
  tags?: Readonly<Record<string, string>>;
  /** int64 milliseconds since the Unix epoch. */
  timestamp: number;
  value: number;
}

/** Samples of one series, columnar: timestamps[i] pairs with values[i]. */
export interface SeriesSamplesInput {
  series: { metric: string; tags?: Readonly<Record<string, string>> };
  timestamps: ArrayLike<number>;
  values: ArrayLike<number>;
}

/** What `write` accepts: points, or one or more columnar series. */
export type WriteInput = readonly Point[] | SeriesSamplesInput | readonly SeriesSamplesInput[];

/** One validated series with its samples; `origin[i]` is sample i's position in the caller's input. */
export interface PreparedSeries {
  readonly key: string;
  readonly series: Series;
  readonly id: SeriesId;
  readonly timestamps: number[];
  readonly values: number[];
  readonly origin: number[];
}

/** A validated write: samples grouped by series (each series once). */
export interface Prepared {
  readonly series: PreparedSeries[];
  readonly samples: number;
}

/** Dedup key of a validated series: metric then sorted tags, U+0000-separated (never inside a name). */
function keyOf(series: Series): string {
  const names = Object.keys(series.tags).sort();
  let key = series.metric;
  for (const n of names) key += `\u0000${n}\u0000${series.tags[n]}`;
  return key;
}

/** Series ids by dedup key: a producer writes the same series again and again (hashing one costs microseconds). */
const ids = new BoundedCache<string, SeriesId>(65_536);

class Grouper {
  private readonly byKey = new Map<string, PreparedSeries>();
  readonly list: PreparedSeries[] = [];
  samples = 0;

  group(series: Series): PreparedSeries {
    const key = keyOf(series);
    let g = this.byKey.get(key);
    if (g === undefined) {
      let id = ids.get(key);
      if (id === undefined) {
        id = seriesId(series);
        ids.set(key, id);
      }
      g = { key, series, id, timestamps: [], values: [], origin: [] };
      this.byKey.set(key, g);
      this.list.push(g);
    }
    return g;
  }

  add(g: PreparedSeries, t: number, v: number, origin: number): void {
    g.timestamps.push(t);
    g.values.push(v);
    g.origin.push(origin);
    this.samples++;
  }
}

/** What validateTimestamp accepts (checked inline so that a valid sample costs no call and no field name). */
function isTimestamp(t: unknown): boolean {
  return typeof t === 'number' && Number.isInteger(t) && t >= MIN_TIMESTAMP_MS && t <= MAX_TIMESTAMP_MS;
}

function isColumnar(x: unknown): x is SeriesSamplesInput {
  return typeof x === 'object' && x !== null && 'series' in x;
}

function prepareColumnar(grouper: Grouper, s: SeriesSamplesInput, prefix: string, origin: number): number {
  if (typeof s !== 'object' || s === null) {
    throw invalidArgument('series_invalid', prefix || 'batch', `${prefix || 'batch'}: must be an object`);
  }
  const p = prefix === '' ? '' : `${prefix}.`;
  const series = makeSeries(s.series?.metric, s.series?.tags, `${p}series`);
  const ts = s.timestamps;
  const vs = s.values;
  if (ts === null || typeof ts !== 'object' || typeof ts.length !== 'number') {
    throw invalidArgument('timestamps_invalid', `${p}timestamps`, `${p}timestamps: must be an array`);
  }
  if (vs === null || typeof vs !== 'object' || typeof vs.length !== 'number') {
    throw invalidArgument('values_invalid', `${p}values`, `${p}values: must be an array`);
  }
  if (ts.length !== vs.length) {
    throw invalidArgument(
      'length_mismatch',
      `${p}values`,
      `${p}values: ${vs.length} values for ${ts.length} timestamps`,
    );
  }
  const g = grouper.group(series);
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i];
    const v = vs[i];
    // The field names are built only for an error: not a string per valid sample.
    if (!isTimestamp(t)) validateTimestamp(t, `${p}timestamps[${i}]`);
    if (typeof v !== 'number') validateValue(v, `${p}values[${i}]`);
    grouper.add(g, t as number, v as number, origin + i);
  }
  return ts.length;
}

/**
 * Validates and groups write input. Field names in errors: `points[3].tags.host`, `points[3].timestamp`,
 * `batch[1].timestamps[4]` (an array of columnar series), `series.metric` / `values[2]` (a single one).
 * `origin` numbers samples in input order (columnar: series 0's samples first).
 */
export function prepare(input: WriteInput): Prepared {
  const grouper = new Grouper();
  if (Array.isArray(input)) {
    let origin = 0;
    for (let i = 0; i < input.length; i++) {
      const item: unknown = input[i];
      if (isColumnar(item)) {
        origin += prepareColumnar(grouper, item, `batch[${i}]`, origin);
        continue;
      }
      if (typeof item !== 'object' || item === null) {
        throw invalidArgument('point_invalid', `points[${i}]`, `points[${i}]: must be an object`);
      }
      const pt = item as Point;
      const series = makeSeries(pt.metric, pt.tags, `points[${i}]`);
      const t = pt.timestamp;
      const v = pt.value;
      if (!isTimestamp(t)) validateTimestamp(t, `points[${i}].timestamp`);
      if (typeof v !== 'number') validateValue(v, `points[${i}].value`);
      grouper.add(grouper.group(series), t, v, origin++);
    }
  } else if (isColumnar(input)) {
    prepareColumnar(grouper, input, '', 0);
  } else {
    throw invalidArgument(
      'write_input_invalid',
      'points',
      'write input must be an array of points or columnar series ({ series, timestamps, values })',
    );
  }
  return { series: grouper.list, samples: grouper.samples };
}

/** Concatenates prepared writes (each series once); origins are renumbered in order. */
export function mergePrepared(parts: readonly Prepared[]): Prepared {
  if (parts.length === 1) return parts[0]!;
  const byKey = new Map<string, PreparedSeries>();
  const list: PreparedSeries[] = [];
  let n = 0;
  for (const part of parts) {
    for (const s of part.series) {
      let g = byKey.get(s.key);
      if (g === undefined) {
        g = { key: s.key, series: s.series, id: s.id, timestamps: [], values: [], origin: [] };
        byKey.set(s.key, g);
        list.push(g);
      }
      for (let i = 0; i < s.timestamps.length; i++) {
        g.timestamps.push(s.timestamps[i]!);
        g.values.push(s.values[i]!);
        g.origin.push(n++);
      }
    }
  }
  return { series: list, samples: n };
}
