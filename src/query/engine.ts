/**
 * The coordinator: plans a query, scatters it to every shard in parallel, merges the partials and
 * finalizes the results. Transport-agnostic: a shard is a function (the cluster wires in gRPC calls to
 * a replica, ReadIndex and retries; tests use in-process functions over real stores).
 */
import { isTidemarkError, TidemarkError } from '../errors/index.js';
import type { ShardStore } from '../storage/index.js';
import { checkAborted, executeShard } from './executor.js';
import { planQuery, type QueryLimits, type QuerySpec, queryLimitError, type ShardQuery } from './model.js';
import { finalize, mergePartials, type QueryResult, type ShardPartial } from './partial.js';

/** One shard: must honour the signal (stop work, reject) when it aborts. */
export type ShardFn = (q: ShardQuery, signal: AbortSignal) => Promise<ShardPartial>;

export interface RunOptions {
  /** Whole-query deadline in ms from the call; cancels every outstanding shard. Default 30 s. */
  deadlineMs?: number;
  /** Return what arrived plus the missing shards instead of failing when a shard fails or times out. */
  partial?: boolean;
  limits?: Partial<QueryLimits>;
  /** The caller's own cancellation. */
  signal?: AbortSignal;
}

export interface MissingShard {
  shard: number;
  code: string;
  reason: string;
  message: string;
}

export interface QueryOutcome {
  results: QueryResult[];
  /** Shards whose data is not in the results (only with partial=true). */
  missingShards: MissingShard[];
  plan: ShardQuery;
  seriesScanned: number;
  samplesScanned: number;
}

export const DEFAULT_DEADLINE_MS = 30_000;

/**
 * The abort reason once a query has settled (what may still run is no longer wanted). One shared
 * instance: `abort()` without a reason builds a DOMException, and the race below turned that into a new
 * TidemarkError, two stack captures per query for nothing anyone reads.
 */
const QUERY_SETTLED = new TidemarkError('CLOSED', 'query_settled', 'the query has already been answered');

/** A shard function over a local store (for tests and single-node use). */
export function localShard(store: ShardStore): ShardFn {
  return (q, signal) => executeShard(store, q, signal);
}

function deadlineError(ms: number): TidemarkError {
  return new TidemarkError(
    'DEADLINE_EXCEEDED',
    'query_deadline',
    `the query did not finish within its deadline (${ms} ms); shorten the range, match fewer series, or raise the deadline`,
    { field: 'deadlineMs' },
  );
}

/** Errors that no other shard can fix: the query itself is wrong or too big; they fail even with partial=true. */
function isQueryError(err: unknown): boolean {
  return (
    isTidemarkError(err) &&
    (err.code === 'INVALID_ARGUMENT' ||
      (err.code === 'RESOURCE_EXHAUSTED' && err.reason.startsWith('query_')))
  );
}

export async function runQuery(
  spec: QuerySpec,
  shards: readonly ShardFn[],
  opts: RunOptions = {},
): Promise<QueryOutcome> {
  const plan = planQuery(spec, opts.limits);
  const deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(deadlineError(deadlineMs)), deadlineMs);
  const onCaller = (): void => ctl.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onCaller, { once: true });
  if (opts.signal?.aborted) onCaller();
  // A shard that ignores the signal is still cut off: each call races the abort.
  const aborted = new Promise<never>((_, reject) => {
    const fail = (): void => {
      try {
        checkAborted(ctl.signal);
      } catch (err) {
        reject(err);
      }
    };
    if (ctl.signal.aborted) fail();
    else ctl.signal.addEventListener('abort', fail, { once: true });
  });
  aborted.catch(() => {});
  try {
    const calls = shards.map((fn, i) =>
      Promise.race([fn(plan, ctl.signal), aborted]).catch((err: unknown) => {
        // Without partial, the first failure fails the query: cancel the others now.
        if (!opts.partial || isQueryError(err)) ctl.abort(err instanceof TidemarkError ? err : undefined);
        throw Object.assign(new Error('shard failed'), { shard: i, cause: err });
      }),
    );
    const settled = await Promise.allSettled(calls);
    const partials: ShardPartial[] = [];
    const missing: MissingShard[] = [];
    let firstErr: unknown;
    settled.forEach((s, i) => {
      if (s.status === 'fulfilled') {
        partials.push(s.value);
        return;
      }
      const cause = (s.reason as { cause?: unknown }).cause;
      if (firstErr === undefined || (isQueryError(cause) && !isQueryError(firstErr))) firstErr = cause;
      const te = isTidemarkError(cause) ? cause : undefined;
      missing.push({
        shard: i,
        code: te?.code ?? 'UNAVAILABLE',
        reason: te?.reason ?? 'shard_failed',
        message: te?.message ?? String((cause as Error)?.message ?? cause),
      });
    });
    if (missing.length > 0 && (!opts.partial || isQueryError(firstErr))) {
      throw isTidemarkError(firstErr)
        ? firstErr
        : new TidemarkError(
            'UNAVAILABLE',
            'shard_failed',
            `shard ${missing[0]!.shard} failed: ${missing[0]!.message}`,
          );
    }
    const merged = mergePartials(partials, plan);
    if (merged.seriesScanned > plan.limits.maxSeries) {
      throw queryLimitError(
        'query_series_limit',
        'maxSeries',
        plan.limits.maxSeries,
        `${merged.seriesScanned} series match`,
      );
    }
    if (merged.samplesScanned > plan.limits.maxSamples) {
      throw queryLimitError(
        'query_samples_limit',
        'maxSamples',
        plan.limits.maxSamples,
        `${merged.samplesScanned} samples scanned`,
      );
    }
    return {
      results: finalize(merged, plan),
      missingShards: missing,
      plan,
      seriesScanned: merged.seriesScanned,
      samplesScanned: merged.samplesScanned,
    };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onCaller);
    // Whatever is still running is no longer wanted.
    if (!ctl.signal.aborted) ctl.abort(QUERY_SETTLED);
  }
}
