/**
 * Shared plumbing of the client commands (`tidemark write | query | status`): argument parsing with usage
 * errors (exit 2), endpoints, times, tags and matchers, connecting through the SDK, and error reporting
 * (exit 1 with the message).
 */
import { readFileSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type QueryMatcher, TidemarkClient, TidemarkError, type TlsOptions } from '../client/index.js';
import { splitHostPort } from '../cluster/config.js';
import { UNIT_MS } from '../query/opentsdb.js';

export const DEFAULT_ENDPOINT = '127.0.0.1:4243';
export const DEFAULT_TIMEOUT_MS = 10_000;

/** A bad command line: reported with the command's usage, exit code 2. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** The options every client command takes. */
export const COMMON_OPTIONS = {
  endpoint: { type: 'string', short: 'e', default: DEFAULT_ENDPOINT },
  timeout: { type: 'string', default: String(DEFAULT_TIMEOUT_MS) },
  token: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-server-name': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** How client commands authenticate: --token / TIDEMARK_TOKEN, TLS from --tls-* / TIDEMARK_TLS_*. */
export interface ClientSecurity {
  token?: string;
  tls?: TlsOptions;
}

/**
 * The security options of the last parse(): every command parses its argv before it connects, so connect()
 * picks them up without each command passing them along.
 */
let parsedSecurity: ClientSecurity = {};

/** Token and TLS from parsed values, falling back to the environment (TIDEMARK_TOKEN keeps it out of `ps`). */
export function clientSecurity(
  values: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): ClientSecurity {
  const str = (flag: string, envName: string): string | undefined => {
    const v = values[flag];
    return typeof v === 'string' && v !== '' ? v : env[envName] || undefined;
  };
  const out: ClientSecurity = {};
  const token = str('token', 'TIDEMARK_TOKEN');
  if (token !== undefined) out.token = token;
  const ca = str('tls-ca', 'TIDEMARK_TLS_CA');
  const cert = str('tls-cert', 'TIDEMARK_TLS_CERT');
  const key = str('tls-key', 'TIDEMARK_TLS_KEY');
  const serverName = str('tls-server-name', 'TIDEMARK_TLS_SERVER_NAME');
  if (ca !== undefined || cert !== undefined || key !== undefined) {
    const read = (path: string, flag: string): Buffer => {
      try {
        return readFileSync(path);
      } catch (err) {
        throw new UsageError(`--${flag}: cannot read ${path}: ${(err as Error).message}`);
      }
    };
    const tls: TlsOptions = {};
    if (ca !== undefined) tls.ca = read(ca, 'tls-ca');
    if (cert !== undefined) tls.cert = read(cert, 'tls-cert');
    if (key !== undefined) tls.key = read(key, 'tls-key');
    if (serverName !== undefined) tls.serverName = serverName;
    out.tls = tls;
  }
  return out;
}

export const COMMON_USAGE = `Common options:
  -e, --endpoint HOST:PORT[,HOST:PORT...]  gRPC client address(es) of the cluster (default ${DEFAULT_ENDPOINT})
  --timeout MS                             deadline of each request (default ${DEFAULT_TIMEOUT_MS})
  --token TOKEN                            bearer token (default $TIDEMARK_TOKEN; prefer the variable)
  --tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]
                                           TLS to the client API (default $TIDEMARK_TLS_CA, ...)
  -h, --help                               this text`;

/** parseArgs, strict, positionals allowed; every parse error becomes a UsageError. */
export function parse<O extends Options>(
  argv: readonly string[],
  options: O,
): {
  values: ReturnType<typeof parseArgs<{ options: O; allowPositionals: true }>>['values'];
  positionals: string[];
} {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options,
      allowPositionals: true,
      strict: true,
    });
    parsedSecurity = clientSecurity(values as Record<string, unknown>);
    return { values, positionals };
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message.split('\n')[0]! : String(err));
  }
}

/** `--endpoint`: one or more comma-separated host:port. */
export function endpoints(value: string | undefined): string[] {
  const list = (value ?? DEFAULT_ENDPOINT)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (list.length === 0) throw new UsageError('--endpoint needs host:port');
  for (const e of list) {
    const hp = splitHostPort(e);
    if (hp === undefined || hp.port === 0) {
      throw new UsageError(
        `--endpoint must be host:port (e.g. ${DEFAULT_ENDPOINT}), got ${JSON.stringify(e)}`,
      );
    }
  }
  return list;
}

/** A positive integer option (milliseconds, counts). */
export function positiveInt(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/**
 * A point in time: integer milliseconds since the epoch, `now`, `<n><unit>-ago` (units ms s m h d w n y, e.g.
 * `1h-ago`, `30m-ago`) or an ISO 8601 date (`2026-11-21T14:00:00Z`).
 */
export function parseTime(value: string, name: string, now: number): number {
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  if (v === 'now') return now;
  const ago = /^(\d+)(ms|s|m|h|d|w|n|y)-ago$/.exec(v);
  if (ago !== null) return Math.max(0, now - Number(ago[1]) * UNIT_MS[ago[2]!]!);
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (!Number.isNaN(t)) return t;
  }
  throw new UsageError(
    `--${name} must be milliseconds since the epoch, "now", "<n><unit>-ago" (units ms s m h d w n y, e.g. 1h-ago) or an ISO date, got ${JSON.stringify(value)}`,
  );
}

/** `tag=value` arguments → tags. */
export function parseTags(args: readonly string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new UsageError(`tags are tag=value, got ${JSON.stringify(a)}`);
    const name = a.slice(0, eq);
    if (Object.hasOwn(tags, name)) throw new UsageError(`tag ${JSON.stringify(name)} given twice`);
    tags[name] = a.slice(eq + 1);
  }
  return tags;
}

/** `tag=value`, `tag!=value`, `tag=~regex`, `tag!~regex` arguments → matchers. */
export function parseMatchers(args: readonly string[]): QueryMatcher[] {
  return args.map((a) => {
    const m = /^([^=!~]+)(=~|!~|!=|=)(.*)$/s.exec(a);
    if (m === null) {
      throw new UsageError(
        `matchers are tag=value, tag!=value, tag=~regex or tag!~regex, got ${JSON.stringify(a)}`,
      );
    }
    return { name: m[1]!, op: m[2] as QueryMatcher['op'], value: m[3]! };
  });
}

/** A finite number. */
export function parseNumber(value: string, what: string): number {
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(n)) throw new UsageError(`${what} must be a number, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * Connects to the cluster and checks that an endpoint answers (the shard map), so an unreachable cluster is
 * reported at once, clearly, instead of after the operation's retries.
 */
export async function connect(
  list: string[],
  timeoutMs: number,
  security: ClientSecurity = parsedSecurity,
): Promise<TidemarkClient> {
  const client = await TidemarkClient.connect({
    ...security,
    endpoints: list,
    deadlineMs: timeoutMs,
    shardMapRefreshMs: 0,
    retry: { maxAttempts: 5 },
  });
  try {
    await client.shardMap({ refresh: true });
  } catch (err) {
    await client.close().catch(() => undefined);
    const e = err instanceof TidemarkError ? err : undefined;
    if (e?.code === 'UNAVAILABLE' || e?.code === 'DEADLINE_EXCEEDED') {
      throw new Error(`cannot reach the cluster at ${list.join(', ')}: ${unreachableWhy(e, timeoutMs)}`);
    }
    throw err;
  }
  return client;
}

/** A short cause for a failed connection, instead of grpc-js' long text. */
function unreachableWhy(e: TidemarkError, timeoutMs: number): string {
  const m = e.message;
  if (/ECONNREFUSED/.test(m))
    return 'connection refused (is a node running there? `tidemark dev` starts one)';
  if (/ENOTFOUND|EAI_AGAIN|getaddrinfo|resolution failed/i.test(m)) return 'host not found';
  if (e.code === 'DEADLINE_EXCEEDED' || /deadline/i.test(m)) return `no answer within ${timeoutMs} ms`;
  return m.replace(/\s*Resolution note:\s*$/, '').trim();
}

/**
 * Runs a command body: UsageError → the message and the usage on stderr, exit 2; any other error → the
 * message on stderr, exit 1.
 */
export async function runCommand(name: string, usage: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`tidemark ${name}: ${err.message}\n\n${usage}`);
      return 2;
    }
    const message = err instanceof Error ? err.message : String(err);
    const code = err instanceof TidemarkError ? ` (${err.code}${err.reason ? `: ${err.reason}` : ''})` : '';
    console.error(`tidemark ${name}: ${message}${code}`);
    return 1;
  }
}

/** Fixed-width text table, columns left-aligned (numbers right-aligned). */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = header.map(
    (_, i) => rows.length > 0 && rows.every((r) => /^-?[\d.e+-]+$/.test(r[i] ?? '')),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `metric{k=v,...}` (tags sorted). */
export function seriesName(metric: string, tags: Readonly<Record<string, string>>): string {
  const keys = Object.keys(tags).sort();
  return keys.length === 0 ? metric : `${metric}{${keys.map((k) => `${k}=${tags[k]}`).join(',')}}`;
}
