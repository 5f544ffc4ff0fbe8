/**
 * `tidemark query <metric> [matcher ...]`: raw samples of the matching series in a time range, as a table,
 * JSON (`--json`) or a small ASCII chart per series (`--chart`).
 */
import type { QueryRequest, QuerySeries } from '../client/index.js';
import {
  COMMON_OPTIONS,
  COMMON_USAGE,
  connect,
  endpoints,
  parse,
  parseMatchers,
  parseTime,
  positiveInt,
  runCommand,
  seriesName,
  table,
  UsageError,
} from './client-args.js';

export const QUERY_USAGE = `Usage:
  tidemark query [options] <metric> [tag=value | tag!=value | tag=~regex | tag!~regex ...]

Prints the samples of every series of <metric> whose tags match, between --start and --end.

Options:
  --start T     from (inclusive): ms since the epoch, now, <n><unit>-ago (units ms s m h d w n y) or an ISO
                date (default 1h-ago)
  --end T       to (inclusive), same forms (default now)
  --agg F       aggregate across series with F (avg sum min max count first last p50 p75 p90 p95 p99, or
                none to keep every series); needed by the three options below
  --downsample D  per-series buckets, OpenTSDB form <interval>-<fn>[-<fill>] (e.g. 1m-avg, 5m-max-zero)
  --group-by K  split the results by the values of tag K (repeatable, or K1,K2)
  --rate        per-second rate of each series; --counter treats it as a counter that may reset
  --stale       read any replica (faster; may miss the latest writes)
  --chart       an ASCII chart per series instead of the table
  --json        the series as JSON ({metric, tags, timestamps, values} per line)
  --limit N     at most N rows in the table (default 1000; the last N are shown)

${COMMON_USAGE}

Examples:
  tidemark query cpu.usage
  tidemark query cpu.usage 'host=~web-.*' --start 15m-ago --chart
  tidemark query cpu.usage --agg avg --downsample 1m-avg --group-by dc --start 6h-ago --chart`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  start: { type: 'string', default: '1h-ago' },
  end: { type: 'string', default: 'now' },
  chart: { type: 'boolean' },
  json: { type: 'boolean' },
  agg: { type: 'string' },
  downsample: { type: 'string' },
  'group-by': { type: 'string', multiple: true },
  rate: { type: 'boolean' },
  counter: { type: 'boolean' },
  stale: { type: 'boolean' },
  limit: { type: 'string' },
} as const;

const CHART_HEIGHT = 10;
const CHART_WIDTH = 60;

function formatValue(v: number): string {
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e9 || a < 1e-3) ? v.toExponential(4) : String(Number(v.toPrecision(6)));
}

const iso = (t: number): string => new Date(t).toISOString();

/** A bar-less ASCII chart: time on x (CHART_WIDTH columns, the mean of each), value on y. */
export function chart(s: QuerySeries, width = CHART_WIDTH, height = CHART_HEIGHT): string {
  const n = s.timestamps.length;
  if (n === 0) return `${seriesName(s.metric, s.tags)}\n  (no samples)`;
  const t0 = s.timestamps[0]!;
  const t1 = s.timestamps[n - 1]!;
  const cols = Math.min(width, n);
  const sum = new Float64Array(cols);
  const count = new Uint32Array(cols);
  for (let i = 0; i < n; i++) {
    const c =
      t1 === t0
        ? Math.floor((i * cols) / n)
        : Math.min(cols - 1, Math.floor(((s.timestamps[i]! - t0) / (t1 - t0)) * cols));
    // Filled buckets (NaN) leave a gap.
    if (Number.isNaN(s.values[i]!)) continue;
    sum[c]! += s.values[i]!;
    count[c]! += 1;
  }
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of s.values) {
    if (Number.isNaN(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const grid = Array.from({ length: height }, () => new Array<string>(cols).fill(' '));
  for (let c = 0; c < cols; c++) {
    if (count[c] === 0) continue;
    const v = sum[c]! / count[c]!;
    const row = hi === lo ? Math.floor(height / 2) : Math.round(((v - lo) / (hi - lo)) * (height - 1));
    grid[height - 1 - row]![c] = '*';
  }
  const labels = grid.map((_, r) => (r === 0 ? formatValue(hi) : r === height - 1 ? formatValue(lo) : ''));
  const lw = Math.max(...labels.map((l) => l.length));
  const out = [
    `${seriesName(s.metric, s.tags)}  (${n} sample${n === 1 ? '' : 's'}, min ${formatValue(lo)}, max ${formatValue(hi)})`,
  ];
  for (let r = 0; r < height; r++) out.push(`${labels[r]!.padStart(lw)} |${grid[r]!.join('')}`.trimEnd());
  out.push(`${' '.repeat(lw)} +${'-'.repeat(cols)}`);
  const left = iso(t0);
  const right = iso(t1);
  const gap = Math.max(1, cols + 1 - left.length - right.length);
  out.push(`${' '.repeat(lw + 1)}${t1 === t0 ? left : `${left}${' '.repeat(gap)}${right}`}`);
  return out.join('\n');
}

export function query(argv: string[]): Promise<number> {
  return runCommand('query', QUERY_USAGE, async () => {
    const { values, positionals } = parse(argv, OPTIONS);
    if (values.help) {
      console.log(QUERY_USAGE);
      return 0;
    }
    const list = endpoints(values.endpoint);
    const timeoutMs = positiveInt(values.timeout, 'timeout', 10_000);
    const limit = positiveInt(values.limit, 'limit', 1000);
    const [metric, ...matcherArgs] = positionals;
    if (metric === undefined) throw new UsageError('needs <metric>');
    if (values.chart && values.json) throw new UsageError('give --chart or --json, not both');
    const matchers = parseMatchers(matcherArgs);
    const now = Date.now();
    const start = parseTime(values.start!, 'start', now);
    const end = parseTime(values.end!, 'end', now);
    if (start > end) throw new UsageError(`--start (${iso(start)}) is after --end (${iso(end)})`);
    const request: QueryRequest = { metric, matchers, start, end };
    if (values.agg !== undefined) request.aggregator = values.agg;
    if (values.downsample !== undefined) request.downsample = values.downsample;
    const groupBy = (values['group-by'] ?? []).flatMap((g) => g.split(',')).filter((g) => g !== '');
    if (groupBy.length > 0) request.groupBy = groupBy;
    if (values.counter && !values.rate) throw new UsageError('--counter needs --rate');
    if (values.rate) request.rate = values.counter ? { counter: true } : true;
    if (values.stale) request.stale = true;
    if (request.aggregator === undefined && (request.downsample || request.groupBy || request.rate)) {
      throw new UsageError(
        '--downsample, --group-by and --rate need --agg (use --agg none to keep every series)',
      );
    }
    const client = await connect(list, timeoutMs);
    const series: QuerySeries[] = [];
    try {
      for await (const s of client.query(request)) series.push(s);
    } finally {
      await client.close();
    }
    if (values.json) {
      for (const s of series) console.log(JSON.stringify(s));
      return 0;
    }
    if (series.length === 0) {
      console.log(`no series of ${metric} match between ${iso(start)} and ${iso(end)}`);
      return 0;
    }
    const samples = series.reduce((n, s) => n + s.timestamps.length, 0);
    if (values.chart) {
      console.log(series.map((s) => chart(s)).join('\n\n'));
    } else {
      const rows: string[][] = [];
      for (const s of series) {
        const name = seriesName(s.metric, s.tags);
        for (let i = 0; i < s.timestamps.length; i++) {
          rows.push([name, iso(s.timestamps[i]!), formatValue(s.values[i]!)]);
        }
      }
      const shown = rows.length > limit ? rows.slice(rows.length - limit) : rows;
      console.log(table(['SERIES', 'TIME', 'VALUE'], shown));
      if (shown.length < rows.length) console.log(`(the last ${limit} of ${rows.length} rows; see --limit)`);
    }
    console.log(`${series.length} series, ${samples} sample${samples === 1 ? '' : 's'}`);
    return 0;
  });
}
