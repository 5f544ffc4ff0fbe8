/**
 * `tidemark retention`: shows the retention each node's replicas apply, or sets every shard's retention
 * (`--set`, admin role) through the shards' Raft logs (docs/cluster.md, "Retention").
 */
import { UNIT_MS } from '../query/opentsdb.js';
import {
  COMMON_OPTIONS,
  COMMON_USAGE,
  connect,
  endpoints,
  parse,
  positiveInt,
  runCommand,
  table,
  UsageError,
} from './client-args.js';

export const RETENTION_USAGE = `Usage:
  tidemark retention [options]              show the retention every shard replica applies
  tidemark retention --set DURATION [options]
                                            set every shard's retention (admin role): e.g. 30d, 12h, 90000ms;
                                            0 keeps everything

A retention set here is replicated through each shard's Raft log and overrides the nodes' store.retentionMs.
Each replica drops data older than now - retention in its periodic retention pass (every minute).

${COMMON_USAGE}`;

const OPTIONS = { ...COMMON_OPTIONS, set: { type: 'string' } } as const;

/** `0`, or an integer with a unit (ms s m h d w n y, as in query times): milliseconds. */
export function parseRetention(value: string): number {
  const v = value.trim();
  if (v === '0') return 0;
  const m = /^(\d+)(ms|s|m|h|d|w|n|y)$/.exec(v);
  const ms = m === null ? Number.NaN : Number(m[1]) * UNIT_MS[m[2]!]!;
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new UsageError(
      `--set must be 0 or an integer with a unit (ms s m h d w n y), got ${JSON.stringify(value)}`,
    );
  }
  return ms;
}

function show(ms: number): string {
  if (ms === 0) return 'keep everything';
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export function retention(argv: string[]): Promise<number> {
  return runCommand('retention', RETENTION_USAGE, async () => {
    const { values, positionals } = parse(argv, OPTIONS);
    if (values.help) {
      console.log(RETENTION_USAGE);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const set = values.set === undefined ? undefined : parseRetention(values.set);
    const timeoutMs = positiveInt(values.timeout, 'timeout', 30_000);
    const client = await connect(endpoints(values.endpoint), timeoutMs);
    try {
      if (set !== undefined) {
        const shards = await client.setRetention(set);
        console.log(`retention ${show(set)} set on ${shards.length} shards`);
        return 0;
      }
      const map = await client.shardMap();
      const rows: string[][] = [];
      for (const node of Object.keys(map?.nodes ?? {}).sort()) {
        try {
          const st = await client.status(node);
          for (const r of st.replicas) rows.push([node, String(r.shard), show(r.retentionMs ?? 0)]);
        } catch (err) {
          rows.push([node, '-', `unreachable: ${(err as Error).message}`]);
        }
      }
      console.log(table(['NODE', 'SHARD', 'RETENTION'], rows));
      return 0;
    } finally {
      await client.close();
    }
  });
}
