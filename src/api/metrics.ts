/**
 * Prometheus metrics of the HTTP API (prom-client). Each HttpMetrics owns its own Registry (never the
 * global default one, so several servers — or tests — can live in one process); `/metrics` serves it
 * together with any external registries the node passes in (Raft, storage, process gauges).
 *
 * Families the node also feeds (samples by protocol, query latency by API, query limit hits) are taken from
 * an external registry that already has them (the node's, src/cluster/node-metrics.ts), so /metrics shows
 * one family per name; without one (tests on a memory cluster) the API registers its own.
 */
import { Counter, Gauge, Histogram, type Metric, Registry } from 'prom-client';

export interface HttpMetrics {
  readonly registry: Registry;
  /** Requests by route (`/write`, `/api/put`, ..., `other` for unknown paths), method and status. */
  readonly requests: Counter<'endpoint' | 'method' | 'status'>;
  /** Request latency in seconds by route and status. */
  readonly duration: Histogram<'endpoint' | 'status'>;
  /** Samples the cluster accepted, by protocol (`influx`, `opentsdb`; the node adds `grpc`, `kafka`). */
  readonly samplesIngested: Counter<'protocol'>;
  /** Query latency (`/api/query`: api `http`) by outcome (`ok` or the error code). */
  readonly queryDuration: Histogram<'api' | 'outcome'>;
  /** Queries refused by a query limit, by limit name. */
  readonly queryLimitHits: Counter<'limit'>;
  /**
   * Rejected input by protocol and reason: a line/datapoint the parser refused counts once (reason = the
   * parser's reason), a sample the store refused counts once (reason = the store's, e.g. `too_old`).
   */
  readonly rejectedSamples: Counter<'protocol' | 'reason'>;
  /** Requests refused because the body (`raw`) or its decompressed form (`inflated`) passed the limit. */
  readonly bodyLimitRejections: Counter<'endpoint' | 'kind'>;
  /** Requests refused because too many were in flight. */
  readonly concurrencyRejections: Counter<'endpoint'>;
  /** Write requests in flight. */
  readonly inflight: Gauge;
}

/** The metric `name` of the first external registry that has it, else a new one made by `make`. */
function shared<T>(external: readonly Registry[], name: string, make: () => T): T {
  for (const r of external) {
    const m: Metric | undefined = r.getSingleMetric(name);
    if (m !== undefined) return m as unknown as T;
  }
  return make();
}

export function createHttpMetrics(external: readonly Registry[] = []): HttpMetrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'tidemark_http_requests_total',
      help: 'HTTP requests by endpoint, method and status',
      labelNames: ['endpoint', 'method', 'status'],
      registers,
    }),
    duration: new Histogram({
      name: 'tidemark_http_request_duration_seconds',
      help: 'HTTP request latency by endpoint and status',
      labelNames: ['endpoint', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    samplesIngested: shared(
      external,
      'tidemark_ingest_samples_total',
      () =>
        new Counter({
          name: 'tidemark_ingest_samples_total',
          help: 'Samples accepted by the cluster, by protocol',
          labelNames: ['protocol'],
          registers,
        }),
    ),
    queryDuration: shared(
      external,
      'tidemark_query_duration_seconds',
      () =>
        new Histogram({
          name: 'tidemark_query_duration_seconds',
          help: 'Query latency by API and outcome (ok or the error code)',
          labelNames: ['api', 'outcome'],
          buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
          registers,
        }),
    ),
    queryLimitHits: shared(
      external,
      'tidemark_query_limit_hits_total',
      () =>
        new Counter({
          name: 'tidemark_query_limit_hits_total',
          help: 'Queries refused because they passed a query limit, by limit',
          labelNames: ['limit'],
          registers,
        }),
    ),
    rejectedSamples: new Counter({
      name: 'tidemark_ingest_rejected_total',
      help: 'Lines/datapoints the parser rejected and samples the store rejected, by protocol and reason',
      labelNames: ['protocol', 'reason'],
      registers,
    }),
    bodyLimitRejections: new Counter({
      name: 'tidemark_http_body_limit_rejections_total',
      help: 'Requests rejected with 413: the body (raw) or its decompressed form (inflated) passed the limit',
      labelNames: ['endpoint', 'kind'],
      registers,
    }),
    concurrencyRejections: new Counter({
      name: 'tidemark_http_concurrency_rejections_total',
      help: 'Requests rejected with 429 because too many requests were in flight',
      labelNames: ['endpoint'],
      registers,
    }),
    inflight: new Gauge({
      name: 'tidemark_http_inflight_requests',
      help: 'Write requests in flight',
      registers,
    }),
  };
}

/** The text exposition of several registries, concatenated (metric names must not repeat across them). */
export async function renderMetrics(registries: readonly Registry[]): Promise<string> {
  const parts = await Promise.all(registries.map((r) => r.metrics()));
  return parts
    .filter((p) => p.length > 0)
    .map((p) => (p.endsWith('\n') ? p : `${p}\n`))
    .join('');
}
