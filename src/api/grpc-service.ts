/**
 * The gRPC client API (`tidemark.v1.TidemarkService`) over a ClusterService: Write, a minimal Query (raw
 * series through `select`), ShardMap and Status. Conversions between the protobuf messages and the
 * in-memory shapes live here; every error is a TidemarkError, mapped to a gRPC status by the adapter.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '../errors/index.js';
import {
  MatchType,
  type Matcher as PbMatcher,
  type QueryRequest,
  type QueryResponseSchema,
  ReplicaRole,
  TidemarkService,
  type WriteRequest,
} from '../gen/tidemark/v1/client_pb.js';
import {
  clientOfAddress,
  type LimitGuard,
  limitExhausted,
  NEW_SERIES_RATE_LIMITED,
} from '../limits/index.js';
import {
  MAX_TIMESTAMP_MS,
  MIN_TIMESTAMP_MS,
  makeSeries,
  type Series,
  validateTimestamp,
} from '../model/index.js';
import { AGGREGATOR_ALIASES, parseDownsample, type QuerySpec, type SubQuery } from '../query/index.js';
import type { Matcher, MatchOp, SampleBatch, SelectRequest } from '../storage/store.js';
import {
  type AddServiceOptions,
  addService,
  type CallContext,
  PreEncoded,
  type ServiceImplementation,
} from '../transport/grpc-adapter.js';
import { decodeWriteRequest } from '../transport/write-codec.js';
import type { ClusterService } from './cluster-service.js';

export interface GrpcServiceOptions {
  /** Client API addresses of the nodes (NodeInfo in ShardMap); nodes without one are listed with "". */
  clientAddresses?: () => Record<string, string>;
  /** Series per QueryResponse message (default 256). */
  seriesPerMessage?: number;
  /** Write deadline when the client sets none (ms, default 10,000). */
  defaultWriteTimeoutMs?: number;
  /** Runs before each RPC (auth: src/security/roles.ts); throws UNAUTHENTICATED / PERMISSION_DENIED. */
  authorize?: AddServiceOptions['authorize'];
  /** Request-size and query-concurrency limits (src/limits); the node passes its own. Default: none. */
  guard?: LimitGuard;
}

/** The authenticated principal of a call (set by the authorize hook), the client key of the query limit. */
const principalOf = new WeakMap<object, string>();

/** A WriteRequest's batch as a SampleBatch, plus where each series' samples start (for rejected indexes). */
export function batchFromWriteRequest(
  req: WriteRequest,
  /** Called with the sample and series counts before anything is allocated (throws to refuse). */
  checkSize?: (samples: number, series: number) => void,
): { batch: SampleBatch; offsets: number[] } {
  const list = req.batch?.series ?? [];
  let n = 0;
  for (let i = 0; i < list.length; i++) {
    const s = list[i]!;
    if (s.timestamps.length !== s.values.length) {
      throw invalidArgument(
        'batch_invalid',
        `batch.series[${i}].values`,
        `batch.series[${i}]: ${s.timestamps.length} timestamps but ${s.values.length} values`,
      );
    }
    n += s.timestamps.length;
  }
  checkSize?.(n, list.length);
  const series: Series[] = [];
  const offsets: number[] = [];
  const seriesRef = new Uint32Array(n);
  const timestamps = new Float64Array(n);
  const values = new Float64Array(n);
  let j = 0;
  for (let i = 0; i < list.length; i++) {
    const s = list[i]!;
    if (s.series === undefined) {
      throw invalidArgument('series_missing', `batch.series[${i}].series`, `batch.series[${i}]: no series`);
    }
    series.push(makeSeries(s.series.metric, s.series.tags, `batch.series[${i}].series`));
    offsets.push(j);
    for (let k = 0; k < s.timestamps.length; k++, j++) {
      const t = Number(s.timestamps[k]);
      // Malformed input fails the whole request before anything is written (the store would only reject
      // the sample); policy rejections (too_old, out_of_retention) stay per sample in the response.
      if (!(t >= MIN_TIMESTAMP_MS && t <= MAX_TIMESTAMP_MS)) {
        validateTimestamp(t, `batch.series[${i}].timestamps[${k}]`);
      }
      seriesRef[j] = i;
      timestamps[j] = t;
      values[j] = s.values[k]!;
    }
  }
  return { batch: { series, seriesRef, timestamps, values, length: n }, offsets };
}

/** (series index, sample index within it) of flat sample `index`, given each series' first flat index. */
export function unflatten(
  offsets: readonly number[],
  index: number,
): { seriesIndex: number; sampleIndex: number } {
  let lo = 0;
  let hi = offsets.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (offsets[mid]! <= index) lo = mid;
    else hi = mid - 1;
  }
  return { seriesIndex: lo, sampleIndex: index - (offsets[lo] ?? 0) };
}

const MATCH_OPS: Record<number, MatchOp> = {
  [MatchType.EQUAL]: '=',
  [MatchType.NOT_EQUAL]: '!=',
  [MatchType.REGEX]: '=~',
  [MatchType.NOT_REGEX]: '!~',
};

/** Protobuf matchers → store matchers (INVALID_ARGUMENT naming `matchers[i].type` for a missing type). */
export function matchersFromPb(list: readonly PbMatcher[]): Matcher[] {
  return list.map((m, i) => {
    const op = MATCH_OPS[m.type];
    if (op === undefined) {
      throw invalidArgument('matcher_invalid', `matchers[${i}].type`, `matchers[${i}]: type is required`);
    }
    return { name: m.name, op, value: m.value };
  });
}

const MATCH_TYPES: Record<MatchOp, MatchType> = {
  '=': MatchType.EQUAL,
  '!=': MatchType.NOT_EQUAL,
  '=~': MatchType.REGEX,
  '!~': MatchType.NOT_REGEX,
};

/** Store matchers → protobuf matchers. */
export function matchersToPb(list: readonly Matcher[]): { name: string; type: MatchType; value: string }[] {
  return list.map((m) => ({ name: m.name, type: MATCH_TYPES[m.op], value: m.value }));
}

export function selectFromQueryRequest(req: QueryRequest): SelectRequest {
  if (req.metric === '') throw invalidArgument('metric_missing', 'metric', 'metric is required');
  const matchers = matchersFromPb(req.matchers);
  const out: SelectRequest = { metric: req.metric, matchers };
  if (req.startMs !== 0n) out.minT = Number(req.startMs);
  if (req.endMs !== 0n) out.maxT = Number(req.endMs);
  if (out.minT !== undefined && out.maxT !== undefined && out.minT > out.maxT) {
    throw invalidArgument('range_invalid', 'start_ms', 'start_ms is after end_ms');
  }
  return out;
}

/**
 * An aggregating QueryRequest as a query-engine spec: matchers become filters of the same op; field names
 * in errors are the request's (`downsample`, `aggregator`, ...), which the engine's validation also uses.
 */
export function specFromQueryRequest(req: QueryRequest): QuerySpec {
  if (req.metric === '') throw invalidArgument('metric_missing', 'metric', 'metric is required');
  const ops = matchersFromPb(req.matchers);
  const sub: SubQuery = {
    metric: req.metric,
    aggregator: (AGGREGATOR_ALIASES[req.aggregator] ?? req.aggregator) as SubQuery['aggregator'],
    filters: ops.map((m) => ({ tagk: m.name, type: m.op, filter: m.value, groupBy: false })),
  };
  if (req.groupBy.length > 0) sub.groupBy = [...req.groupBy];
  if (req.downsample !== '') sub.downsample = parseDownsample(req.downsample, 'downsample');
  if (req.rate) {
    sub.rate = {
      counter: req.rateCounter,
      ...(req.rateCounterMax !== 0 ? { counterMax: req.rateCounterMax } : {}),
      ...(req.rateResetValue !== 0 ? { resetValue: req.rateResetValue } : {}),
      dropResets: req.rateDropResets,
    };
  }
  const start = req.startMs === 0n ? MIN_TIMESTAMP_MS : Number(req.startMs);
  const end = req.endMs === 0n ? MAX_TIMESTAMP_MS : Number(req.endMs);
  if (start > end) throw invalidArgument('range_invalid', 'start_ms', 'start_ms is after end_ms');
  return { start, end, queries: [sub] };
}

const ROLES: Record<string, ReplicaRole> = {
  follower: ReplicaRole.FOLLOWER,
  'pre-candidate': ReplicaRole.PRE_CANDIDATE,
  candidate: ReplicaRole.CANDIDATE,
  leader: ReplicaRole.LEADER,
};

export function tidemarkServiceImpl(
  cluster: ClusterService,
  options: GrpcServiceOptions = {},
): ServiceImplementation<typeof TidemarkService> {
  const perMessage = options.seriesPerMessage ?? 256;
  const writeTimeout = options.defaultWriteTimeoutMs ?? 10_000;
  const guard = options.guard;
  const checkSize =
    guard === undefined
      ? undefined
      : (samples: number, series: number) => guard.checkWriteSize(samples, series, 'batch.series');
  async function* runQuery(
    req: QueryRequest,
    ctx: CallContext,
  ): AsyncGenerator<MessageInitShape<typeof QueryResponseSchema>> {
    if (req.aggregator !== '') {
      const spec = specFromQueryRequest(req);
      const out = await cluster.query(spec, {
        ...(ctx.deadline !== undefined ? { deadline: ctx.deadline } : {}),
        ...(req.stale ? { stale: true } : {}),
        ...(req.partial ? { partial: true } : {}),
        signal: ctx.signal,
      });
      const missingShards = out.missingShards.map((m) => m.shard);
      if (out.results.length === 0) yield { missingShards };
      for (let i = 0; i < out.results.length; i += perMessage) {
        yield {
          ...(i === 0 ? { missingShards } : {}),
          results: out.results.slice(i, i + perMessage).map((r) => ({
            metric: r.metric,
            tags: r.tags,
            aggregateTags: r.aggregateTags,
            timestamps: Array.from(r.ts, (t) => BigInt(t)),
            values: Array.from(r.vals),
          })),
        };
      }
      return;
    }
    const select = selectFromQueryRequest(req);
    const series = await cluster.select(select, ctx.deadline === undefined ? {} : { deadline: ctx.deadline });
    for (let i = 0; i < series.length; i += perMessage) {
      yield {
        series: series.slice(i, i + perMessage).map((s) => ({
          series: { metric: s.metric, tags: s.tags },
          timestamps: Array.from(s.timestamps, (t) => BigInt(t)),
          values: Array.from(s.values),
        })),
      };
    }
  }
  return {
    write: async (req, ctx) => {
      // Over gRPC the request arrives as wire bytes (rawRequests below): decoded straight into a batch.
      const { batch, offsets } =
        req instanceof PreEncoded
          ? decodeWriteRequest(req.bytes, checkSize)
          : batchFromWriteRequest(req, checkSize);
      const r = await cluster.write(batch, { deadline: ctx.deadline ?? Date.now() + writeTimeout });
      // Nothing written and only because of the new-series rate: the whole call fails with a retry hint.
      if (
        r.accepted === 0 &&
        r.rejected.length > 0 &&
        r.rejected.every((x) => x.reason === NEW_SERIES_RATE_LIMITED)
      ) {
        throw limitExhausted(
          'maxNewSeriesPerMinute',
          guard?.settings.maxNewSeriesPerMinute ?? 0,
          NEW_SERIES_RATE_LIMITED,
          `every series of the request is new and the new-series rate (limits.maxNewSeriesPerMinute) is exhausted; retry later`,
          Math.max(1000, guard?.series?.retryAfterMs() ?? 1000),
        );
      }
      return {
        accepted: BigInt(r.accepted),
        rejected: r.rejected.map((x) => ({ ...unflatten(offsets, x.index), reason: x.reason })),
        leaders: r.leaders ?? [],
      };
    },
    query: async function* (req, ctx) {
      // Concurrent queries per client: the principal when auth is on, else the remote address.
      let release: (() => void) | undefined;
      try {
        release = guard?.queries.acquire(principalOf.get(ctx) ?? clientOfAddress(ctx.peer));
      } catch (err) {
        guard?.countError(err);
        throw err;
      }
      try {
        yield* runQuery(req, ctx);
      } finally {
        release?.();
      }
    },
    transferLeader: async (req, ctx) => {
      const r = await cluster.transferLeader(
        req.shard,
        req.to,
        ctx.deadline === undefined ? {} : { deadline: ctx.deadline },
      );
      return { leader: r.leader, term: BigInt(r.term) };
    },
    setRetention: async (req, ctx) => {
      if (req.retentionMs > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw invalidArgument('retention_invalid', 'retention_ms', 'retention_ms must be at most 2^53 - 1');
      }
      const shards = await cluster.setRetention(
        Number(req.retentionMs),
        ctx.deadline === undefined ? {} : { deadline: ctx.deadline },
      );
      return { shards };
    },
    shardMap: () => {
      const m = cluster.shardMap();
      const addresses = options.clientAddresses?.() ?? {};
      return {
        shardCount: m.shardCount,
        shards: m.shards.map((s) => ({
          shard: s.shard,
          replicas: s.replicas,
          leader: s.leader,
          term: BigInt(s.term),
        })),
        nodes: m.nodes.map((id) => ({ id, clientAddress: addresses[id] ?? '' })),
      };
    },
    status: () => {
      const s = cluster.status();
      return {
        nodeId: s.nodeId,
        replicas: s.replicas.map((r) => ({
          shard: r.shard,
          role: ROLES[r.role] ?? ReplicaRole.UNSPECIFIED,
          term: BigInt(r.term),
          commit: BigInt(r.commit),
          applied: BigInt(r.applied),
          leader: r.leader,
          firstIndex: BigInt(r.firstIndex),
          lastIndex: BigInt(r.lastIndex),
          voters: r.voters ?? [],
          learners: r.learners ?? [],
          retentionMs: BigInt(r.retentionMs ?? 0),
        })),
        // uint64 on the wire: a stale high watermark can put lag below 0 for a moment.
        kafka: (s.kafka ?? []).map((k) => ({
          partition: k.partition,
          consuming: k.consuming,
          appliedOffset: u64(k.appliedOffset),
          highWatermark: u64(k.highWatermark),
          lag: u64(k.lag),
          recordsPerSec: k.recordsPerSec,
          records: u64(k.records),
          samples: u64(k.samples),
          deadLetters: u64(k.deadLetters),
        })),
      };
    },
  };
}

/** Registers TidemarkService for `cluster` on `server`. */
export function addTidemarkService(
  server: grpc.Server,
  cluster: ClusterService,
  options: GrpcServiceOptions = {},
): void {
  // authorize: the per-method role check (src/security/roles.ts) when auth is configured.
  const authorize = options.authorize;
  addService(server, TidemarkService, tidemarkServiceImpl(cluster, options), {
    rawRequests: ['write'],
    // The principal the hook returns is kept for the call: it is the client of the per-client query limit.
    authorize:
      authorize === undefined
        ? undefined
        : (method, ctx) => {
            const p = authorize(method, ctx) as { subject?: unknown } | undefined;
            if (typeof p?.subject === 'string') principalOf.set(ctx, p.subject);
            return p;
          },
  });
}

/** A non-negative integer for a uint64 field (negative or fractional inputs are clamped / truncated). */
function u64(n: number): bigint {
  return Number.isFinite(n) && n > 0 ? BigInt(Math.trunc(n)) : 0n;
}
