/**
 * LimitGuard: one node's limits (docs/security.md "Limits") in one object shared by the HTTP API, the gRPC
 * client service and the node's write path: the settings, the per-client query concurrency, the series
 * limiter and the rejection counter. Pure apart from the counter; the clock is injected.
 */
import type { Registry } from 'prom-client';
import { DEFAULT_CONFIG, type NodeConfig } from '../cluster/config.js';
import { isTidemarkError, type TidemarkError } from '../errors/index.js';
import { ClientConcurrency } from './concurrency.js';
import { requestTooLarge } from './errors.js';
import { createLimitCounter, type LimitCounter, type LimitName } from './metrics.js';
import { SeriesLimiter } from './series-limiter.js';

export interface LimitSettings {
  /** Largest request body / gRPC message, bytes. */
  maxRequestBytes: number;
  /** Most samples in one write request. */
  maxSamplesPerRequest: number;
  /** Most series in one write request (distinct series over HTTP; series entries over gRPC). */
  maxSeriesPerRequest: number;
  /** Longest line of a line-protocol body. */
  maxLineBytes: number;
  /** New series per minute per node (0 = unlimited). */
  maxNewSeriesPerMinute: number;
  /** Series per metric in the cluster (0 = unlimited). */
  maxSeriesPerMetric: number;
  /** Queries in flight per client (0 = unlimited). */
  maxConcurrentQueriesPerClient: number;
}

const D = DEFAULT_CONFIG.limits;

/** The defaults: those of the one defaults object, DEFAULT_CONFIG.limits. */
export const DEFAULT_LIMIT_SETTINGS: Readonly<LimitSettings> = Object.freeze({
  maxRequestBytes: D.maxRequestBytes,
  maxSamplesPerRequest: D.maxSamplesPerRequest!,
  maxSeriesPerRequest: D.maxSeriesPerRequest!,
  maxLineBytes: D.maxLineBytes!,
  maxNewSeriesPerMinute: D.maxNewSeriesPerMinute!,
  maxSeriesPerMetric: D.maxSeriesPerMetric!,
  maxConcurrentQueriesPerClient: D.maxConcurrentQueriesPerClient!,
});

/** The limit settings of a node configuration (settings it does not spell take their defaults). */
export function limitSettingsOf(config: Pick<NodeConfig, 'limits'>): LimitSettings {
  const out = { ...DEFAULT_LIMIT_SETTINGS };
  for (const k of Object.keys(out) as (keyof LimitSettings)[]) {
    const v = (config.limits as Partial<LimitSettings>)[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

export interface LimitGuardOptions {
  settings?: Partial<LimitSettings>;
  /** Registry of the rejection counter (a node passes its own; default: a new one). */
  registry: Registry;
  /** The series limiter's view of the local shard stores (required for the series limits to apply). */
  seed?: (shard: number, metric: string) => Iterable<string>;
  shards?: number;
  now?: () => number;
  /** Retry hint of the concurrency rejection, ms (default 1000). */
  queryRetryAfterMs?: number;
}

export class LimitGuard {
  readonly settings: Readonly<LimitSettings>;
  readonly queries: ClientConcurrency;
  /** Undefined when neither series limit is set or no store view was given. */
  readonly series: SeriesLimiter | undefined;
  readonly counter: LimitCounter;

  constructor(options: LimitGuardOptions) {
    this.settings = Object.freeze({ ...DEFAULT_LIMIT_SETTINGS, ...stripUndefined(options.settings ?? {}) });
    this.queries = new ClientConcurrency(
      this.settings.maxConcurrentQueriesPerClient,
      options.queryRetryAfterMs ?? 1000,
    );
    const s = this.settings;
    this.series =
      options.seed !== undefined && (s.maxNewSeriesPerMinute > 0 || s.maxSeriesPerMetric > 0)
        ? new SeriesLimiter({
            maxNewSeriesPerMinute: s.maxNewSeriesPerMinute,
            maxSeriesPerMetric: s.maxSeriesPerMetric,
            shards: options.shards ?? 1,
            seed: options.seed,
            ...(options.now ? { now: options.now } : {}),
          })
        : undefined;
    this.counter = createLimitCounter(options.registry);
  }

  /** Throws (and counts) when a write request has more samples or series than allowed. */
  checkWriteSize(samples: number, series: number, field = 'batch'): void {
    const s = this.settings;
    if (series > s.maxSeriesPerRequest) {
      this.counter.inc('maxSeriesPerRequest');
      throw requestTooLarge(
        'maxSeriesPerRequest',
        s.maxSeriesPerRequest,
        field,
        'batch_too_many_series',
        `the request has ${series} series, more than limits.maxSeriesPerRequest = ${s.maxSeriesPerRequest}; split it`,
      );
    }
    if (samples > s.maxSamplesPerRequest) {
      this.counter.inc('maxSamplesPerRequest');
      throw requestTooLarge(
        'maxSamplesPerRequest',
        s.maxSamplesPerRequest,
        field,
        'batch_too_many_samples',
        `the request has ${samples} samples, more than limits.maxSamplesPerRequest = ${s.maxSamplesPerRequest}; split it`,
      );
    }
  }

  /**
   * Counts a request-level rejection that another layer raised (the body reader's 413, the parsers'
   * batch limits); returns the limit it was, or undefined when `err` is not a limit error.
   */
  countError(err: unknown): LimitName | undefined {
    const limit = limitOfError(err);
    if (limit === undefined) return undefined;
    this.counter.inc(limit);
    // Errors raised below the limits layer (parsers, body reader) name their own option; add the setting.
    const e = isTidemarkError(err) ? err : (err as { error: TidemarkError }).error;
    if (e.details.setting === undefined) e.details.setting = `limits.${limit}`;
    return limit;
  }
}

/**
 * The guard a ClusterService carries (TidemarkNode.limitGuard), so the HTTP API shares the node's
 * settings, query slots and counter without extra wiring.
 */
export function guardOf(cluster: unknown): LimitGuard | undefined {
  const g = (cluster as { limitGuard?: unknown } | null | undefined)?.limitGuard;
  return g instanceof LimitGuard ? g : undefined;
}

/** Which limit a TidemarkError reports (by reason), if any. */
export function limitOfError(err: unknown): LimitName | undefined {
  const e = isTidemarkError(err) ? err : (err as { error?: unknown } | undefined)?.error;
  if (!isTidemarkError(e)) return undefined;
  switch (e.reason) {
    case 'body_too_large':
      return 'maxRequestBytes';
    case 'batch_too_many_samples':
      return 'maxSamplesPerRequest';
    case 'batch_too_many_series':
      return 'maxSeriesPerRequest';
    case 'too_many_concurrent_queries':
      return 'maxConcurrentQueriesPerClient';
    default:
      return undefined;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
