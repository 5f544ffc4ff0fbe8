/**
 * The HTTP API (node:http, no framework): OpenTSDB `/api/put`, InfluxDB line protocol `/write`
 * (and `/api/v2/write`, `/ping`, a minimal `/query`), `/healthz`, `/readyz`, `/metrics`, the status page `/`
 * (src/web) and its JSON `/api/status`.
 * Endpoints, status codes, bodies and limits: docs/http.md.
 *
 * Every request is bounded: the body size (raw and decompressed, checked while streaming), a deadline,
 * the number of write requests in flight, and the parsers' line/point/sample limits. A request is parsed
 * completely before anything is written, so a rejected request writes nothing; within an accepted body
 * the partial-write policy of docs/ingest.md applies (the good lines/datapoints are written).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type Logger, pino } from 'pino';
import type { Registry } from 'prom-client';
import { retryHeaders, TidemarkError, toHttpStatus } from '../errors/index.js';
import {
  DEFAULT_MAX_BATCH_SAMPLES,
  DEFAULT_MAX_BATCH_SERIES,
  DEFAULT_MAX_ERRORS,
  DEFAULT_MAX_LINE_LENGTH,
  DEFAULT_MAX_LINES,
  DEFAULT_MAX_PUT_POINTS,
  type LineProtocolResult,
  lineProtocolResponse,
  type OpenTsdbPointError,
  openTsdbErrorBody,
  openTsdbPutResponse,
  parseLineProtocol,
  parsePrecision,
  putDatapoints,
} from '../ingest/index.js';
import {
  clientOfAddress,
  guardOf,
  LIMIT_REJECTIONS_METRIC,
  LimitGuard,
  limitExhausted,
  NEW_SERIES_RATE_LIMITED,
} from '../limits/index.js';
import {
  aggregatorNames,
  formatLookupResponse,
  formatQueryResponse,
  type LookupPartial,
  type LookupRequest,
  parseLastGet,
  parseLastPost,
  parseLookupGet,
  parseLookupPost,
  parseQueryGet,
  parseQueryPost,
  parseSuggestGet,
  type SuggestRequest,
} from '../query/index.js';
import type { Authenticator } from '../security/auth.js';
import { HTTP_ROUTE_ROLES } from '../security/roles.js';
import { PAGE_CSP, PAGE_HTML } from '../web/page.js';
import type { ClusterService, WriteResult } from './cluster-service.js';
import { ClientGone, HttpError, readBody } from './http-body.js';
import { createHttpMetrics, type HttpMetrics, renderMetrics } from './metrics.js';

export interface HttpLimits {
  /** Most bytes of a request body on the wire (default 16 MiB). */
  maxBodyBytes?: number;
  /** Most bytes of a compressed body once decompressed (default = maxBodyBytes). */
  maxDecodedBodyBytes?: number;
  /** Time from the request's arrival until its body is read and its write done (default 30 s). */
  requestTimeoutMs?: number;
  /** Largest JSON body of /api/query, /api/query/last and /api/suggest (default 1 MiB). */
  maxQueryBodyBytes?: number;
  /** Most write requests (`/write`, `/api/put`) in flight; more → 429 (default 64). */
  maxConcurrentWrites?: number;
  /** Retry-After hint of that 429, ms (default 1000). */
  concurrencyRetryAfterMs?: number;
  /** Line protocol: most points per body (default 100,000). */
  maxLines?: number;
  /** Line protocol: longest line (default 65,536). */
  maxLineLength?: number;
  /** OpenTSDB: most datapoints per body (default 100,000). */
  maxPoints?: number;
  /** Most samples per request (default 1,000,000). */
  maxSamples?: number;
  /** Most distinct series per request (default 100,000). */
  maxSeries?: number;
  /** Most per-line errors returned (default 100). */
  maxErrors?: number;
}

export type ResolvedHttpLimits = Required<HttpLimits>;

export const DEFAULT_HTTP_LIMITS: Readonly<ResolvedHttpLimits> = Object.freeze({
  maxBodyBytes: 16 * 1024 * 1024,
  maxDecodedBodyBytes: 16 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  maxQueryBodyBytes: 1024 * 1024,
  maxConcurrentWrites: 64,
  concurrencyRetryAfterMs: 1000,
  maxLines: DEFAULT_MAX_LINES,
  maxLineLength: DEFAULT_MAX_LINE_LENGTH,
  maxPoints: DEFAULT_MAX_PUT_POINTS,
  maxSamples: DEFAULT_MAX_BATCH_SAMPLES,
  maxSeries: DEFAULT_MAX_BATCH_SERIES,
  maxErrors: DEFAULT_MAX_ERRORS,
});

export interface HttpApiOptions {
  cluster: ClusterService;
  limits?: HttpLimits;
  /** Default: a silent logger. */
  logger?: Logger;
  /** Registries served by `/metrics` after the API's own (the node's Raft/storage/process metrics). */
  metrics?: Registry | readonly Registry[];
  /** Clock for the default timestamp of line-protocol points without one (ms; default Date.now). */
  now?: () => number;
  /** Line protocol: between measurement and field key in the metric name (default `_`). */
  separator?: string;
  /** Bearer-token auth: each route needs its role (src/security/roles.ts); health, readiness, metrics stay open. */
  auth?: Authenticator;
  /** Serve HTTPS with these node:https options (cert, key, ca, requestCert). */
  https?: HttpsServerOptions;
  /**
   * The limits (src/limits): body/line/sample/series sizes (as defaults under `limits`), query slots per
   * client and the rejection counter. Default: the cluster's own (TidemarkNode.limitGuard), else defaults.
   */
  guard?: LimitGuard;
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface HttpApi {
  /** The request handler (usable with any node:http server). */
  readonly handler: RequestHandler;
  /** The API's own metrics (its `registry` is served by /metrics). */
  readonly metrics: HttpMetrics;
  readonly limits: ResolvedHttpLimits;
  /** The server started by listen(), if any. */
  readonly server: Server | undefined;
  /** Starts a server on host:port (port 0 = any free port); resolves with the bound address. */
  listen(host: string, port: number): Promise<{ host: string; port: number }>;
  /** Stops accepting, closes idle connections, waits up to `graceMs` (default 5 s) for requests in flight. */
  close(graceMs?: number): Promise<void>;
}

/** Series lookup (TidemarkNode.lookup); optional until ClusterService declares it. */
interface LookupService {
  lookup?: (
    request: LookupRequest,
    options?: { stale?: boolean; deadline?: number },
  ) => Promise<LookupPartial[]>;
}

type Route =
  | 'put'
  | 'write'
  | 'ping'
  | 'query'
  | 'healthz'
  | 'readyz'
  | 'metrics'
  | 'tsdbQuery'
  | 'tsdbLast'
  | 'tsdbLookup'
  | 'suggest'
  | 'aggregators'
  | 'filters'
  | 'page'
  | 'status';

const ROUTES: ReadonlyMap<string, { route: Route; methods: readonly string[] }> = new Map([
  ['/api/put', { route: 'put' as Route, methods: ['POST'] }],
  ['/write', { route: 'write' as Route, methods: ['POST'] }],
  ['/api/v2/write', { route: 'write' as Route, methods: ['POST'] }],
  ['/ping', { route: 'ping' as Route, methods: ['GET', 'HEAD'] }],
  ['/query', { route: 'query' as Route, methods: ['GET', 'POST'] }],
  ['/healthz', { route: 'healthz' as Route, methods: ['GET', 'HEAD'] }],
  ['/readyz', { route: 'readyz' as Route, methods: ['GET', 'HEAD'] }],
  ['/metrics', { route: 'metrics' as Route, methods: ['GET', 'HEAD'] }],
  ['/api/query', { route: 'tsdbQuery' as Route, methods: ['GET', 'POST'] }],
  ['/api/query/last', { route: 'tsdbLast' as Route, methods: ['GET', 'POST'] }],
  ['/api/search/lookup', { route: 'tsdbLookup' as Route, methods: ['GET', 'POST'] }],
  ['/api/suggest', { route: 'suggest' as Route, methods: ['GET', 'POST'] }],
  ['/api/aggregators', { route: 'aggregators' as Route, methods: ['GET'] }],
  ['/api/config/filters', { route: 'filters' as Route, methods: ['GET'] }],
  ['/', { route: 'page' as Route, methods: ['GET', 'HEAD'] }],
  ['/api/status', { route: 'status' as Route, methods: ['GET'] }],
]);

/** OpenTSDB's /api/config/filters (Grafana reads it to offer filter types). */
const FILTER_DESCRIPTIONS: Record<string, { examples: string; description: string }> = {
  literal_or: {
    examples: 'host=literal_or(web01), host=literal_or(web01|web02)',
    description: 'Matches one or more values exactly (case sensitive), separated by |.',
  },
  iliteral_or: {
    examples: 'host=iliteral_or(web01|WEB02)',
    description: 'Matches one or more values exactly, ignoring case, separated by |.',
  },
  not_literal_or: {
    examples: 'host=not_literal_or(web01|web02)',
    description: 'Matches every value except the listed ones (case sensitive).',
  },
  wildcard: {
    examples: 'host=wildcard(web*), host=wildcard(*.example.com)',
    description: 'Wildcard match with * (case sensitive).',
  },
  iwildcard: {
    examples: 'host=iwildcard(WEB*)',
    description: 'Wildcard match with *, ignoring case.',
  },
  regexp: {
    examples: 'host=regexp(web[0-9]+)',
    description: 'Regular expression, matched against the whole value.',
  },
};

/** How an endpoint family shapes its error bodies. */
type ErrorStyle = 'tidemark' | 'influx' | 'opentsdb';

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  endpoint: string;
  /** Absolute (Date.now clock). */
  deadline: number;
  /** Who is asking, for per-client limits: the auth principal, else the remote address. */
  client: string;
}

export function resolveHttpLimits(limits: HttpLimits = {}): ResolvedHttpLimits {
  const out: ResolvedHttpLimits = { ...DEFAULT_HTTP_LIMITS };
  for (const [k, v] of Object.entries(limits)) {
    if (v === undefined) continue;
    if (!Object.hasOwn(DEFAULT_HTTP_LIMITS, k)) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'option_unknown',
        `unknown HTTP limit ${JSON.stringify(k)}`,
        {
          field: `limits.${k}`,
        },
      );
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'option_invalid',
        `HTTP limit ${k} must be a positive integer`,
        {
          field: `limits.${k}`,
        },
      );
    }
    (out as Record<string, number>)[k] = v;
  }
  if (limits.maxDecodedBodyBytes === undefined) out.maxDecodedBodyBytes = out.maxBodyBytes;
  return out;
}

export function createHttpApi(options: HttpApiOptions): HttpApi {
  const cluster = options.cluster;
  const logger = options.logger ?? pino({ level: 'silent' });
  const now = options.now ?? Date.now;
  const separator = options.separator ?? '_';
  const external =
    options.metrics === undefined ? [] : Array.isArray(options.metrics) ? options.metrics : [options.metrics];
  const metrics = createHttpMetrics(external as Registry[]);
  // Limits: the node's guard (its settings, query slots and counter) unless one is given.
  const guard =
    options.guard ??
    guardOf(cluster) ??
    new LimitGuard({
      registry:
        (external as Registry[]).find((r) => r.getSingleMetric(LIMIT_REJECTIONS_METRIC) !== undefined) ??
        metrics.registry,
    });
  const limits = resolveHttpLimits({
    maxBodyBytes: guard.settings.maxRequestBytes,
    maxLineLength: guard.settings.maxLineBytes,
    maxSamples: guard.settings.maxSamplesPerRequest,
    maxSeries: guard.settings.maxSeriesPerRequest,
    ...options.limits,
  });
  const registries = [metrics.registry, ...(external as Registry[])];
  let inflightWrites = 0;
  let server: Server | undefined;
  const pending = new Set<Promise<void>>();

  // ---------------------------------------------------------------- responses

  function send(
    ctx: Ctx,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
    contentType = 'application/json; charset=utf-8',
  ): void {
    const res = ctx.res;
    if (res.headersSent || res.destroyed) return;
    // A body we did not read completely: close the connection rather than read the rest.
    if (!ctx.req.complete) res.setHeader('connection', 'close');
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    if (body === undefined) {
      res.writeHead(status);
      res.end();
      return;
    }
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  function errorBody(err: TidemarkError, status: number, style: ErrorStyle): unknown {
    const extra: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(err.details)) if (k !== 'field' && v !== undefined) extra[k] = v;
    const details = Object.keys(extra).length > 0 ? extra : undefined;
    if (style === 'opentsdb') {
      const b = openTsdbErrorBody(err, status);
      return { error: { ...b.error, reason: err.reason, field: err.field, details } };
    }
    if (style === 'influx') {
      return { error: err.message, code: err.code, reason: err.reason, field: err.field, details };
    }
    return { error: { code: err.code, reason: err.reason, message: err.message, field: err.field, details } };
  }

  function sendError(ctx: Ctx, err: unknown, style: ErrorStyle): void {
    guard.countError(err);
    if (err instanceof HttpError) {
      if (err.status === 413)
        metrics.bodyLimitRejections.inc({ endpoint: ctx.endpoint, kind: err.kind ?? 'raw' });
      send(ctx, err.status, errorBody(err.error, err.status, style), retryHeaders(err.error));
      return;
    }
    if (err instanceof TidemarkError) {
      const status = toHttpStatus(err);
      if (status >= 500) logger.warn({ err, endpoint: ctx.endpoint }, 'request failed');
      send(ctx, status, errorBody(err, status, style), retryHeaders(err));
      return;
    }
    logger.error({ err, endpoint: ctx.endpoint }, 'internal error');
    const internal = new TidemarkError('INTERNAL', 'internal', 'internal error');
    send(ctx, 500, errorBody(internal, 500, style));
  }

  // ---------------------------------------------------------------- writes

  /** The cluster write, bounded by the request deadline (past it: 504, the outcome unknown). */
  async function clusterWrite(ctx: Ctx, batch: Parameters<ClusterService['write']>[0]): Promise<WriteResult> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new TidemarkError(
              'DEADLINE_EXCEEDED',
              'deadline_exceeded',
              'the write did not complete before the request deadline; it may or may not have been applied',
            ),
          ),
        Math.max(0, ctx.deadline - Date.now()),
      );
    });
    try {
      return await Promise.race([cluster.write(batch, { deadline: ctx.deadline }), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Nothing written, and only because the new-series rate is spent: the whole request fails with 429 and
   * a Retry-After (a retry later can succeed; nothing is lost).
   */
  function throwIfOnlyRateLimited(written: WriteResult, protocol: string): void {
    if (
      written.accepted === 0 &&
      written.rejected.length > 0 &&
      written.rejected.every((r) => r.reason === NEW_SERIES_RATE_LIMITED)
    ) {
      const { reasons } = storeRejectionSummary(written.rejected);
      countRejected(protocol, reasons);
      throw limitExhausted(
        'maxNewSeriesPerMinute',
        guard.settings.maxNewSeriesPerMinute,
        NEW_SERIES_RATE_LIMITED,
        `every series of the request is new and the new-series rate (limits.maxNewSeriesPerMinute = ${guard.settings.maxNewSeriesPerMinute}) is exhausted; retry later`,
        Math.max(1000, guard.series?.retryAfterMs() ?? 1000),
      );
    }
  }

  function countRejected(protocol: string, reasons: Map<string, number>): void {
    for (const [reason, n] of reasons) metrics.rejectedSamples.inc({ protocol, reason }, n);
  }

  function storeRejectionSummary(rejected: WriteResult['rejected']): {
    text: string;
    reasons: Map<string, number>;
  } {
    const reasons = new Map<string, number>();
    for (const r of rejected) reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
    const text = [...reasons].map(([r, n]) => `${r}: ${n}`).join(', ');
    return { text, reasons };
  }

  async function handleWrite(ctx: Ctx): Promise<void> {
    const precision = parsePrecision(ctx.url.searchParams.get('precision'));
    const body = await readBody(ctx.req, {
      maxBytes: limits.maxBodyBytes,
      maxDecodedBytes: limits.maxDecodedBodyBytes,
      deadline: ctx.deadline,
    });
    const parsed: LineProtocolResult = parseLineProtocol(body, {
      now: now(),
      precision,
      separator,
      maxLines: limits.maxLines,
      maxLineLength: limits.maxLineLength,
      maxErrors: limits.maxErrors,
      limits: { maxSamples: limits.maxSamples, maxSeries: limits.maxSeries },
    });
    guard.counter.inc('maxLineBytes', parsed.linesTooLong ?? 0);
    if (parsed.rejected > 0) {
      const reasons = new Map<string, number>();
      for (const e of parsed.errors) reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1);
      const unlisted = parsed.rejected - parsed.errors.length;
      if (unlisted > 0) reasons.set('unlisted', unlisted);
      countRejected('influx', reasons);
    }
    let written: WriteResult = { accepted: 0, rejected: [] };
    if (parsed.samples > 0) written = await clusterWrite(ctx, parsed.batch);
    metrics.samplesIngested.inc({ protocol: 'influx' }, written.accepted);
    if (parsed.rejected === 0) throwIfOnlyRateLimited(written, 'influx');
    const answer = lineProtocolResponse(parsed);
    if (written.rejected.length === 0) {
      send(ctx, answer.status, answer.body);
      return;
    }
    // Samples the store refused (e.g. too old for the out-of-order window): a partial write, as InfluxDB
    // reports points beyond the retention policy.
    const { text, reasons } = storeRejectionSummary(written.rejected);
    countRejected('influx', reasons);
    const dropped = (answer.body?.rejected ?? 0) + written.rejected.length;
    const first = answer.body?.errors[0]?.message;
    const storeMsg = `${written.rejected.length} samples rejected by the store (${text})`;
    send(ctx, 400, {
      error: `${written.accepted > 0 ? 'partial write: ' : ''}${first ?? storeMsg} dropped=${dropped}`,
      errors: answer.body?.errors ?? [],
      accepted: parsed.accepted,
      rejected: parsed.rejected,
      samplesRejected: written.rejected.length,
      samplesRejectedReasons: Object.fromEntries(reasons),
    });
  }

  async function handlePut(ctx: Ctx): Promise<void> {
    const flagOn = (name: string): boolean => {
      const v = ctx.url.searchParams.get(name);
      return v !== null && v !== 'false' && v !== '0';
    };
    const details = flagOn('details');
    const summary = flagOn('summary');
    const body = await readBody(ctx.req, {
      maxBytes: limits.maxBodyBytes,
      maxDecodedBytes: limits.maxDecodedBodyBytes,
      deadline: ctx.deadline,
    });
    let text: string;
    try {
      text = utf8.decode(body);
    } catch {
      throw new TidemarkError('INVALID_ARGUMENT', 'body_not_utf8', 'the body is not valid UTF-8', {
        field: 'body',
      });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'json_invalid',
        `unable to parse the body as JSON: ${err instanceof Error ? err.message : String(err)}`,
        { field: 'body' },
      );
    }
    const parsed = putDatapoints(json, {
      maxPoints: limits.maxPoints,
      limits: { maxSamples: limits.maxSamples, maxSeries: limits.maxSeries },
    });
    if (parsed.failed > 0) countRejected('opentsdb', new Map([['invalid_datapoint', parsed.failed]]));
    let written: WriteResult = { accepted: 0, rejected: [] };
    if (parsed.batch.length > 0) written = await clusterWrite(ctx, parsed.batch);
    metrics.samplesIngested.inc({ protocol: 'opentsdb' }, written.accepted);
    if (parsed.failed === 0) throwIfOnlyRateLimited(written, 'opentsdb');
    let result = parsed;
    if (written.rejected.length > 0) {
      const { reasons } = storeRejectionSummary(written.rejected);
      countRejected('opentsdb', reasons);
      // Batch index k is the k-th good datapoint (the parser adds good points in order).
      const points: readonly unknown[] = Array.isArray(json) ? json : [json];
      const bad = new Set(parsed.errors.map((e) => e.datapoint));
      const good = points.filter((p) => p !== null && typeof p === 'object' && !bad.has(p));
      const extra: OpenTsdbPointError[] = written.rejected.map((r) => ({
        datapoint: good.length === parsed.batch.length ? good[r.index] : batchPoint(parsed.batch, r.index),
        error: `Rejected by the store: ${r.reason}`,
      }));
      result = {
        ...parsed,
        success: parsed.success - extra.length,
        failed: parsed.failed + extra.length,
        errors: [...parsed.errors, ...extra],
      };
    }
    const answer = openTsdbPutResponse(result, { summary, details });
    send(ctx, answer.status, answer.body);
  }

  // ---------------------------------------------------------------- other endpoints

  async function handleReadyz(ctx: Ctx): Promise<void> {
    let ready: boolean;
    let reasons: string[];
    try {
      ({ ready, reasons } = cluster.readiness());
    } catch (err) {
      ready = false;
      reasons = [err instanceof Error ? err.message : String(err)];
    }
    send(ctx, ready ? 200 : 503, { ready, reasons });
  }

  async function handleMetrics(ctx: Ctx): Promise<void> {
    const text = await renderMetrics(registries);
    send(ctx, 200, text, {}, metrics.registry.contentType);
  }

  /** InfluxQL stub for loaders that create their database first (Telegraf, TSBS): accepts CREATE DATABASE. */
  async function handleQuery(ctx: Ctx): Promise<void> {
    let q = ctx.url.searchParams.get('q');
    if (q === null && ctx.req.method === 'POST') {
      const body = await readBody(ctx.req, {
        maxBytes: 65_536,
        maxDecodedBytes: 65_536,
        deadline: ctx.deadline,
      });
      const ct = ctx.req.headers['content-type'] ?? '';
      if (ct.includes('application/x-www-form-urlencoded'))
        q = new URLSearchParams(body.toString('utf8')).get('q');
    }
    const stmt = (q ?? '').trim();
    if (/^create\s+database\b/i.test(stmt)) {
      send(ctx, 200, { results: [{ statement_id: 0 }] });
      return;
    }
    if (/^show\s+databases\s*;?$/i.test(stmt)) {
      send(ctx, 200, {
        results: [{ statement_id: 0, series: [{ name: 'databases', columns: ['name'], values: [] }] }],
      });
      return;
    }
    send(ctx, 400, {
      error: 'only CREATE DATABASE and SHOW DATABASES are supported on /query (Tidemark has no InfluxQL)',
      code: 'INVALID_ARGUMENT',
      reason: 'query_unsupported',
      field: 'q',
    });
  }

  // ---------------------------------------------------------------- OpenTSDB queries

  /** Query-string or JSON body input of a GET/POST OpenTSDB endpoint. */
  async function jsonBody(ctx: Ctx): Promise<unknown> {
    const body = await readBody(ctx.req, {
      maxBytes: limits.maxQueryBodyBytes,
      maxDecodedBytes: limits.maxQueryBodyBytes,
      deadline: ctx.deadline,
    });
    try {
      return JSON.parse(body.toString('utf8'));
    } catch {
      throw new TidemarkError('INVALID_ARGUMENT', 'json_invalid', 'the request body is not valid JSON', {
        field: 'body',
      });
    }
  }

  function readOptions(ctx: Ctx): { stale?: boolean; deadline: number } {
    const c = ctx.url.searchParams.get('consistency');
    if (c !== null && c !== 'stale' && c !== 'linearizable') {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'consistency_invalid',
        'consistency must be linearizable or stale',
        {
          field: 'consistency',
        },
      );
    }
    return c === 'stale' ? { stale: true, deadline: ctx.deadline } : { deadline: ctx.deadline };
  }

  async function handleTsdbQuery(ctx: Ctx): Promise<void> {
    // Concurrent queries per client (limits.maxConcurrentQueriesPerClient): 429 with Retry-After past it.
    const release = guard.queries.acquire(ctx.client);
    try {
      await runTsdbQuery(ctx);
    } finally {
      release();
    }
  }

  async function runTsdbQuery(ctx: Ctx): Promise<void> {
    const now = Date.now();
    const parsed =
      ctx.req.method === 'POST'
        ? parseQueryPost(await jsonBody(ctx), now)
        : parseQueryGet(ctx.url.searchParams, now);
    const partialParam = ctx.url.searchParams.get('partial');
    const end = metrics.queryDuration.startTimer({ api: 'http' });
    let out: Awaited<ReturnType<ClusterService['query']>>;
    try {
      out = await cluster.query(parsed.spec, {
        ...readOptions(ctx),
        ...(partialParam === 'true' || partialParam === '1' ? { partial: true } : {}),
      });
      end({ outcome: 'ok' });
    } catch (err) {
      end({ outcome: err instanceof TidemarkError ? err.code.toLowerCase() : 'internal' });
      throw err;
    }
    const headers: Record<string, string> = {};
    if (out.missingShards.length > 0) {
      headers['x-tidemark-missing-shards'] = out.missingShards.map((m) => m.shard).join(',');
    }
    send(ctx, 200, formatQueryResponse(out.results, parsed), headers);
  }

  async function handleTsdbLast(ctx: Ctx): Promise<void> {
    const req =
      ctx.req.method === 'POST' ? parseLastPost(await jsonBody(ctx)) : parseLastGet(ctx.url.searchParams);
    send(ctx, 200, await cluster.last(req, Date.now(), readOptions(ctx)));
  }

  async function handleTsdbLookup(ctx: Ctx): Promise<void> {
    const t0 = performance.now();
    const req =
      ctx.req.method === 'POST' ? parseLookupPost(await jsonBody(ctx)) : parseLookupGet(ctx.url.searchParams);
    const { lookup } = cluster as ClusterService & LookupService;
    if (lookup === undefined) {
      throw new TidemarkError('NOT_FOUND', 'route_not_found', 'this node does not serve /api/search/lookup');
    }
    const parts = await lookup.call(cluster, req, readOptions(ctx));
    send(ctx, 200, formatLookupResponse(req, parts, performance.now() - t0));
  }

  async function handleSuggest(ctx: Ctx): Promise<void> {
    let req: SuggestRequest;
    if (ctx.req.method === 'POST') {
      const b = (await jsonBody(ctx)) as Record<string, unknown> | null;
      const params = new URLSearchParams();
      if (b !== null && typeof b === 'object') {
        for (const k of ['type', 'q', 'max']) if (b[k] !== undefined) params.set(k, String(b[k]));
      }
      req = parseSuggestGet(params);
    } else {
      req = parseSuggestGet(ctx.url.searchParams);
    }
    send(ctx, 200, await cluster.suggest(req, readOptions(ctx)));
  }

  // ---------------------------------------------------------------- dispatch

  async function dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const deadline = Date.now() + limits.requestTimeoutMs;
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      url = new URL('http://localhost/');
    }
    const entry = ROUTES.get(url.pathname);
    const endpoint = entry === undefined ? 'other' : url.pathname;
    const ctx: Ctx = {
      req,
      res,
      url,
      endpoint,
      deadline,
      client: clientOfAddress(req.socket?.remoteAddress),
    };
    const method = req.method ?? 'GET';
    try {
      if (entry === undefined) {
        send(ctx, 404, {
          error: { code: 'NOT_FOUND', reason: 'route_not_found', message: `no endpoint ${url.pathname}` },
        });
        return;
      }
      if (!entry.methods.includes(method)) {
        send(
          ctx,
          405,
          {
            error: {
              code: 'INVALID_ARGUMENT',
              reason: 'method_not_allowed',
              message: `${method} is not allowed on ${url.pathname} (allowed: ${entry.methods.join(', ')})`,
            },
          },
          { allow: entry.methods.join(', ') },
        );
        return;
      }
      const route = entry.route;
      const needed = options.auth === undefined ? undefined : HTTP_ROUTE_ROLES[url.pathname];
      if (needed !== undefined) {
        try {
          // The header is only passed to the verifier: it is never logged (and pino redacts it anyway).
          ctx.client = options.auth!.authorize(req.headers.authorization, needed).subject;
        } catch (err) {
          const status = toHttpStatus(err);
          send(
            ctx,
            status,
            errorBody(err as TidemarkError, status, 'tidemark'),
            status === 401 ? { 'www-authenticate': 'Bearer realm="tidemark"' } : {},
          );
          return;
        }
      }
      const style: ErrorStyle =
        route === 'put' || route.startsWith('tsdb') || route === 'suggest'
          ? 'opentsdb'
          : route === 'write'
            ? 'influx'
            : 'tidemark';
      if (route === 'put' || route === 'write') {
        if (inflightWrites >= limits.maxConcurrentWrites) {
          metrics.concurrencyRejections.inc({ endpoint });
          sendError(
            ctx,
            new TidemarkError(
              'RESOURCE_EXHAUSTED',
              'too_many_requests',
              `more than ${limits.maxConcurrentWrites} write requests in flight; retry later`,
              { retryAfterMs: limits.concurrencyRetryAfterMs },
            ),
            style,
          );
          return;
        }
        inflightWrites++;
        metrics.inflight.inc();
        try {
          if (route === 'put') await handlePut(ctx);
          else await handleWrite(ctx);
        } catch (err) {
          if (err instanceof ClientGone) {
            res.destroy();
            return;
          }
          sendError(ctx, err, style);
        } finally {
          inflightWrites--;
          metrics.inflight.dec();
        }
        return;
      }
      try {
        switch (route) {
          case 'healthz':
            send(ctx, 200, { status: 'ok' });
            break;
          case 'ping':
            send(ctx, 204, undefined, { 'x-influxdb-version': '1.8-compatible (Tidemark)' });
            break;
          case 'readyz':
            await handleReadyz(ctx);
            break;
          case 'metrics':
            await handleMetrics(ctx);
            break;
          case 'query':
            await handleQuery(ctx);
            break;
          case 'tsdbQuery':
            await handleTsdbQuery(ctx);
            break;
          case 'tsdbLast':
            await handleTsdbLast(ctx);
            break;
          case 'tsdbLookup':
            await handleTsdbLookup(ctx);
            break;
          case 'suggest':
            await handleSuggest(ctx);
            break;
          case 'aggregators':
            send(ctx, 200, aggregatorNames());
            break;
          case 'filters':
            send(ctx, 200, FILTER_DESCRIPTIONS);
            break;
          case 'page':
            send(ctx, 200, PAGE_HTML, { 'content-security-policy': PAGE_CSP }, 'text/html; charset=utf-8');
            break;
          case 'status':
            send(ctx, 200, {
              node: cluster.status(),
              shardMap: cluster.shardMap(),
              readiness: cluster.readiness(),
              time: Date.now(),
            });
            break;
        }
      } catch (err) {
        if (err instanceof ClientGone) {
          res.destroy();
          return;
        }
        sendError(ctx, err, style);
      }
    } catch (err) {
      logger.error({ err }, 'unexpected error in the HTTP handler');
      try {
        sendError(ctx, err, 'tidemark');
      } catch {
        res.destroy();
      }
    } finally {
      // A client that went away before an answer is counted as `aborted`.
      const status = res.headersSent ? String(res.statusCode) : 'aborted';
      metrics.requests.inc({ endpoint, method: ROUTE_METHODS.has(method) ? method : 'other', status });
      metrics.duration.observe({ endpoint, status }, (performance.now() - started) / 1000);
      logger.debug({ method, path: url.pathname, status: res.statusCode }, 'request');
    }
  }

  const handler: RequestHandler = (req, res) => {
    const p = dispatch(req, res).catch((err) => {
      logger.error({ err }, 'request handler crashed');
      res.destroy();
    });
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };

  return {
    handler,
    metrics,
    limits,
    get server() {
      return server;
    },
    listen(host: string, port: number) {
      if (server !== undefined) return Promise.reject(new Error('already listening'));
      const s =
        options.https === undefined ? createServer(handler) : createHttpsServer(options.https, handler);
      server = s;
      s.on('clientError', (err, socket) => {
        logger.debug({ err }, 'client error');
        if (socket.writable && !socket.destroyed)
          socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        else socket.destroy();
      });
      return new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, () => {
          s.off('error', reject);
          const a = s.address() as AddressInfo;
          resolve({ host: a.address, port: a.port });
        });
      });
    },
    async close(graceMs = 5000) {
      const s = server;
      if (s === undefined) return;
      server = undefined;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      s.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...pending]),
        new Promise((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
      s.closeAllConnections();
      await closed;
    },
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const ROUTE_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

/** A datapoint rebuilt from the batch (only if the sent one cannot be found). */
function batchPoint(
  batch: {
    series: { metric: string; tags: Record<string, string> }[];
    seriesRef: Uint32Array;
    timestamps: Float64Array;
    values: Float64Array;
  },
  i: number,
): unknown {
  const s = batch.series[batch.seriesRef[i]];
  return { metric: s.metric, timestamp: batch.timestamps[i], value: batch.values[i], tags: { ...s.tags } };
}
