/**
 * `tidemark_limit_rejections_total{limit}`: one counter for every limit, so an operator sees which limit
 * clients hit. `limit` is the setting's name without `limits.` (docs/security.md "Limits"). A request
 * rejected as a whole counts 1; samples rejected one by one (new series rate, series per metric) count
 * per sample; lines rejected for their length count per line.
 */
import { Counter, type Registry } from 'prom-client';

export type LimitName =
  | 'maxRequestBytes'
  | 'maxSamplesPerRequest'
  | 'maxSeriesPerRequest'
  | 'maxLineBytes'
  | 'maxNewSeriesPerMinute'
  | 'maxSeriesPerMetric'
  | 'maxConcurrentQueriesPerClient';

export const LIMIT_NAMES: readonly LimitName[] = Object.freeze([
  'maxRequestBytes',
  'maxSamplesPerRequest',
  'maxSeriesPerRequest',
  'maxLineBytes',
  'maxNewSeriesPerMinute',
  'maxSeriesPerMetric',
  'maxConcurrentQueriesPerClient',
]);

export interface LimitCounter {
  inc(limit: LimitName, n?: number): void;
}

export const LIMIT_REJECTIONS_METRIC = 'tidemark_limit_rejections_total';

/**
 * The counter in `registry`: the one already there (a node and its HTTP API share one family), else a new
 * one with every label pre-set to 0 so dashboards see the series at once.
 */
export function createLimitCounter(registry: Registry): LimitCounter {
  const c =
    (registry.getSingleMetric(LIMIT_REJECTIONS_METRIC) as Counter<'limit'> | undefined) ??
    new Counter({
      name: LIMIT_REJECTIONS_METRIC,
      help: 'Requests, samples or lines rejected by a configured limit, by limit (docs/security.md)',
      labelNames: ['limit'],
      registers: [registry],
    });
  for (const l of LIMIT_NAMES) c.inc({ limit: l }, 0);
  return {
    inc(limit, n = 1) {
      if (n > 0) c.inc({ limit }, n);
    },
  };
}
