/**
 * `tidemark write`: writes one sample (`<metric> <value> [tag=value ...] [--timestamp T]`) or a line-protocol
 * file (`--file PATH`, `--file -` for stdin) through the SDK, which routes every shard's samples to its leader.
 */
import { readFileSync } from 'node:fs';
import type { SeriesSamplesInput } from '../client/index.js';
import { parseLineProtocol, parsePrecision } from '../ingest/line-protocol.js';
import {
  COMMON_OPTIONS,
  COMMON_USAGE,
  connect,
  endpoints,
  parse,
  parseNumber,
  parseTags,
  parseTime,
  positiveInt,
  runCommand,
  UsageError,
} from './client-args.js';

export const WRITE_USAGE = `Usage:
  tidemark write [options] <metric> <value> [tag=value ...] [--timestamp T]
  tidemark write [options] --file PATH|- [--precision ns|us|ms|s|m|h]

Writes one sample, or every point of an InfluxDB line-protocol file ("-" reads stdin; a field f of
measurement m is stored as metric m_f; timestamps in --precision units, default ns as InfluxDB).

Options:
  --timestamp T    the sample's time: ms since the epoch, now, <n><unit>-ago or an ISO date (default now)
  --file PATH|-    line protocol to write instead of a single sample
  --precision P    unit of the line-protocol timestamps (default ns)

${COMMON_USAGE}

Examples:
  tidemark write cpu.usage 42.5 host=web-1 dc=local
  printf 'cpu,host=web-1 usage=42.5\\n' | tidemark write --file - --precision ms`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  timestamp: { type: 'string' },
  file: { type: 'string', short: 'f' },
  precision: { type: 'string' },
} as const;

function readInput(path: string): string {
  if (path === '-') return readFileSync(0, 'utf8');
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** A parsed line-protocol body as the SDK's columnar input (one entry per series). */
function linesToInput(
  text: string,
  precision: string | undefined,
): {
  input: SeriesSamplesInput[];
  errors: string[];
  lines: number;
} {
  let p: ReturnType<typeof parsePrecision>;
  try {
    p = parsePrecision(precision ?? null);
  } catch {
    throw new UsageError(`--precision must be one of ns us ms s m h, got ${JSON.stringify(precision)}`);
  }
  const parsed = parseLineProtocol(text, { now: Date.now(), precision: p });
  const { batch } = parsed;
  const input: SeriesSamplesInput[] = batch.series.map((s) => ({
    series: { metric: s.metric, tags: s.tags },
    timestamps: [] as number[],
    values: [] as number[],
  }));
  for (let i = 0; i < batch.length; i++) {
    const entry = input[batch.seriesRef[i]!]!;
    (entry.timestamps as number[]).push(batch.timestamps[i]!);
    (entry.values as number[]).push(batch.values[i]!);
  }
  const errors = parsed.errors.map((e) =>
    e.message.startsWith('line ') ? e.message : `line ${e.line}: ${e.message}`,
  );
  if (parsed.rejected > parsed.errors.length)
    errors.push(`… and ${parsed.rejected - parsed.errors.length} more`);
  return { input: input.filter((s) => s.timestamps.length > 0), errors, lines: parsed.lines };
}

export function write(argv: string[]): Promise<number> {
  return runCommand('write', WRITE_USAGE, async () => {
    const { values, positionals } = parse(argv, OPTIONS);
    if (values.help) {
      console.log(WRITE_USAGE);
      return 0;
    }
    const list = endpoints(values.endpoint);
    const timeoutMs = positiveInt(values.timeout, 'timeout', 10_000);
    let input: SeriesSamplesInput[];
    let lineErrors: string[] = [];
    // `tidemark write -` is short for `--file -`.
    if (values.file === undefined && positionals.length === 1 && positionals[0] === '-') {
      values.file = '-';
      positionals.length = 0;
    }
    if (values.file !== undefined) {
      if (positionals.length > 0) throw new UsageError('give either --file or <metric> <value>, not both');
      if (values.timestamp !== undefined)
        throw new UsageError('--timestamp applies to a single sample, not --file');
      const parsed = linesToInput(readInput(values.file), values.precision);
      input = parsed.input;
      lineErrors = parsed.errors;
      if (input.length === 0) {
        for (const e of lineErrors) console.error(e);
        throw new Error(
          parsed.lines === 0
            ? 'no points in the input'
            : `no valid points in the input (${parsed.lines} lines)`,
        );
      }
    } else {
      if (values.precision !== undefined) throw new UsageError('--precision applies to --file');
      const [metric, value, ...tagArgs] = positionals;
      if (metric === undefined || value === undefined) throw new UsageError('needs <metric> <value>');
      const v = parseNumber(value, '<value>');
      const tags = parseTags(tagArgs);
      const now = Date.now();
      const timestamp = values.timestamp === undefined ? now : parseTime(values.timestamp, 'timestamp', now);
      input = [{ series: { metric, tags }, timestamps: [timestamp], values: [v] }];
    }
    const client = await connect(list, timeoutMs);
    try {
      const r = await client.write(input);
      const samples = input.reduce((n, s) => n + s.timestamps.length, 0);
      console.log(
        `wrote ${r.accepted} of ${samples} sample${samples === 1 ? '' : 's'} (${input.length} series)`,
      );
      for (const e of lineErrors) console.error(`skipped ${e}`);
      for (const x of r.rejected.slice(0, 20)) console.error(`rejected sample ${x.index}: ${x.reason}`);
      return r.rejected.length > 0 || lineErrors.length > 0 ? 1 : 0;
    } finally {
      await client.close();
    }
  });
}
