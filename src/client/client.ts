/**
 * The Tidemark SDK client (docs/client.md). Writes are validated locally, split by shard with a cached
 * shard map and sent straight to each shard's leader; NOT_LEADER, UNAVAILABLE and RESOURCE_EXHAUSTED are
 * retried (writes are idempotent: same series + timestamp = last write wins) with exponential backoff and
 * full jitter, within the call's deadline. Any node accepts any write and forwards it, so while the map is
 * unknown the client sends to any endpoint.
 */
import { outcomeUnknown, TidemarkError } from '../errors/index.js';
import {
  type MatchType as PbMatchType,
  ReplicaRole,
  type ShardMapResponse,
  TidemarkService,
  type WriteRequest,
} from '../gen/tidemark/v1/client_pb.js';
import type { SeriesSamples } from '../gen/tidemark/v1/types_pb.js';
import { shardOf, validateMetric, validateTimestamp } from '../model/index.js';
import { asMessage, createClient, type ServiceClient } from '../transport/grpc-adapter.js';
import { encodeWriteRequest } from '../transport/write-codec.js';
import {
  type BearerToken,
  bearerInterceptor,
  channelCredentials,
  checkToken,
  type TlsOptions,
  tlsChannelOptions,
} from './credentials.js';
import { type Prepared, type PreparedSeries, prepare, type WriteInput } from './prepare.js';
import { type BackoffOptions, backoffDelay, isRetryable, realSleep } from './retry.js';
import { BatchWriter, type WriterOptions } from './writer.js';

/** Shortest per-attempt deadline of a write (ms); see sendOne. */
const ATTEMPT_FLOOR_MS = 1000;

/**
 * How long a node that let an attempt time out, or refused the connection, is avoided by later requests (ms)
 * while another node is known: about two election timeouts at the default Raft timing, the time its peers need
 * to elect a new leader if it was isolated, paused or killed. Any answer from it clears it at once.
 */
const SUSPECT_MS = 3000;

export interface ConnectOptions {
  /** gRPC client-API addresses (host:port) of one or more nodes; the rest are learned from the shard map. */
  endpoints: readonly string[];
  /** Deadline of each operation (write with its retries, query, status), in ms (default 10,000). */
  deadlineMs?: number;
  /** Retry backoff: attempt n waits random() · min(maxMs, initialMs · 2^(n-1)) (defaults 50, 2000, 10). */
  retry?: Partial<BackoffOptions>;
  /** Defaults of `writer()` (maxSamples 5000, maxDelayMs 100). */
  batch?: Partial<WriterOptions>;
  /** TLS; plaintext when absent. */
  tls?: TlsOptions;
  /** Bearer token sent with every call (`authorization` metadata): a static token or a JWT, or a function. */
  token?: BearerToken;
  /** Source of jitter in [0, 1) (default Math.random). */
  random?: () => number;
  /** How often the shard map is refreshed in the background, in ms (default 30,000; 0 = never). */
  shardMapRefreshMs?: number;
  /** Largest message sent or received, in bytes (default 16 MiB). */
  maxMessageBytes?: number;
  /** Waits between retries (default a timer); tests inject their own. */
  sleep?: (ms: number) => Promise<void>;
}

/** A cluster's shard map as the client sees it. `version` counts the changes this client observed. */
export interface ClientShardMap {
  version: number;
  shardCount: number;
  shards: { shard: number; replicas: string[]; leader: string; term: number }[];
  /** Node id → client-API address. */
  nodes: Record<string, string>;
}

export interface WriteResult {
  /** Samples stored (a replaced value counts). */
  accepted: number;
  /** Samples the cluster refused (e.g. too old), by position in the input (columnar: series 0's first). */
  rejected: { index: number; reason: string }[];
}

export interface CallOptions {
  /** Overrides the client's deadlineMs for this call. */
  deadlineMs?: number;
  signal?: AbortSignal;
}

export type MatchOp = '=' | '!=' | '=~' | '!~';

export interface QueryMatcher {
  name: string;
  op: MatchOp;
  value: string;
}

export interface QueryRequest {
  metric: string;
  matchers?: readonly QueryMatcher[];
  /** Inclusive range, ms since the Unix epoch. */
  start: number;
  end: number;
  /**
   * Aggregate across series (avg sum min max count first last p50 p75 p90 p95 p99, or none for one result
   * per series) instead of returning raw samples. The options below need it.
   */
  aggregator?: string;
  /** OpenTSDB downsample "<interval>-<fn>[-<fill>]", e.g. "1m-avg" or "5m-max-zero". */
  downsample?: string;
  /** Tag keys that split the results into groups. */
  groupBy?: readonly string[];
  /** Per-second rate of each series (after downsampling); options as OpenTSDB's rateOptions. */
  rate?: boolean | { counter?: boolean; counterMax?: number; resetValue?: number; dropResets?: boolean };
  /** Read any replica's applied state (faster, may miss the latest writes). Default: linearizable. */
  stale?: boolean;
}

export interface QuerySeries {
  metric: string;
  /** A raw series' tags, or an aggregated group's common tags. */
  tags: Record<string, string>;
  /** Aggregated queries: the tag keys whose values vary within the group. */
  aggregateTags?: string[];
  timestamps: number[];
  /** Aggregated queries: NaN marks a bucket filled with `nan`/`null`. */
  values: number[];
}

export interface ReplicaStatus {
  shard: number;
  role: 'follower' | 'pre_candidate' | 'candidate' | 'leader' | 'unspecified';
  term: number;
  commit: number;
  applied: number;
  leader: string;
  /** The group's configuration as Raft member ids (docs/cluster.md, "Membership and rejoining"). */
  voters?: string[];
  learners?: string[];
  /** The retention this replica applies, ms (0 = keep everything). */
  retentionMs?: number;
}

/** One Kafka partition as a node sees it (docs/kafka.md). */
export interface KafkaPartitionStatus {
  partition: number;
  /** True while this node consumes it (leads its shard). */
  consuming: boolean;
  /** The next offset the shard applies. */
  appliedOffset: number;
  highWatermark: number;
  lag: number;
  recordsPerSec: number;
  /** Consumed by this node since it started. */
  records: number;
  samples: number;
  deadLetters: number;
}

export interface NodeStatus {
  nodeId: string;
  replicas: ReplicaStatus[];
  /** Kafka partitions this node has consumed since it started (empty or absent without Kafka). */
  kafka?: KafkaPartitionStatus[];
}

type Conn = ServiceClient<typeof TidemarkService>;

/** The samples of one shard (-1: the shard map is unknown) and their retry state. */
interface ShardPart {
  shard: number;
  series: PreparedSeries[];
  /** Send the next attempt here (a NOT_LEADER hint). */
  override?: string | undefined;
  /** Avoid this address on the next attempt (it was unavailable). */
  avoid?: string | undefined;
  previous?: string;
  lastError?: TidemarkError;
}

const MATCH_TYPES: Record<MatchOp, PbMatchType> = { '=': 1, '!=': 2, '=~': 3, '!~': 4 };
const ROLES: Record<number, ReplicaStatus['role']> = {
  [ReplicaRole.FOLLOWER]: 'follower',
  [ReplicaRole.PRE_CANDIDATE]: 'pre_candidate',
  [ReplicaRole.CANDIDATE]: 'candidate',
  [ReplicaRole.LEADER]: 'leader',
};

function toMap(res: ShardMapResponse, version: number): ClientShardMap | undefined {
  if (res.shardCount === 0 || res.shards.length !== res.shardCount) return undefined;
  const nodes: Record<string, string> = {};
  for (const n of res.nodes) if (n.id !== '' && n.clientAddress !== '') nodes[n.id] = n.clientAddress;
  const shards = [...res.shards]
    .sort((a, b) => a.shard - b.shard)
    .map((s) => ({ shard: s.shard, replicas: [...s.replicas], leader: s.leader, term: Number(s.term) }));
  if (shards.some((s, i) => s.shard !== i)) return undefined;
  return { version, shardCount: res.shardCount, shards, nodes };
}

/**
 * The newer knowledge of each shard: a node answering a shard map may be behind (isolated, just restarted)
 * and name a leader of an older term, which must not replace a newer one the client already knows. Per
 * shard, `next` wins unless its term is older, or the same with no leader named. A different shard count
 * is a different cluster: `next` as is.
 * @internal exported for tests
 */
export function mergeShardMaps(current: ClientShardMap, next: ClientShardMap): ClientShardMap {
  if (current.shardCount !== next.shardCount) return next;
  let kept = false;
  const shards = next.shards.map((n, i) => {
    const c = current.shards[i]!;
    if (n.term < c.term || (n.term === c.term && n.leader === '' && c.leader !== '')) {
      kept = true;
      return c;
    }
    return n;
  });
  return kept ? { ...next, shards, nodes: { ...current.nodes, ...next.nodes } } : next;
}

function sameMap(a: ClientShardMap, b: ClientShardMap): boolean {
  return JSON.stringify({ ...a, version: 0 }) === JSON.stringify({ ...b, version: 0 });
}

function toWriteRequest(series: readonly PreparedSeries[]): WriteRequest {
  return asMessage(
    encodeWriteRequest(
      series.map((s) => ({
        metric: s.series.metric,
        tags: s.series.tags,
        timestamps: s.timestamps,
        values: s.values,
      })),
    ),
  );
}

function fromSeriesSamples(s: SeriesSamples): QuerySeries {
  return {
    metric: s.series?.metric ?? '',
    tags: { ...(s.series?.tags ?? {}) },
    timestamps: s.timestamps.map((t) => Number(t)),
    values: [...s.values],
  };
}

function asError(err: unknown): TidemarkError {
  return err instanceof TidemarkError
    ? err
    : new TidemarkError('INTERNAL', 'internal', err instanceof Error ? err.message : String(err));
}

export class TidemarkClient {
  private readonly endpoints: readonly string[];
  private readonly deadlineMs: number;
  private readonly backoff: BackoffOptions;
  private readonly batchDefaults: Partial<WriterOptions>;
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly options: ConnectOptions;
  private readonly conns = new Map<string, Conn>();
  private readonly writers = new Set<BatchWriter>();
  private map: ClientShardMap | undefined;
  private mapVersion = 0;
  private refreshing: Promise<ClientShardMap | undefined> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private rr = 0;
  /** Addresses that recently did not answer, and until when they are avoided (see SUSPECT_MS). */
  private readonly suspects = new Map<string, number>();
  private closed = false;

  private constructor(options: ConnectOptions) {
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw new TidemarkError('INVALID_ARGUMENT', 'endpoints_empty', 'endpoints: give at least one address', {
        field: 'endpoints',
      });
    }
    this.options = options;
    this.endpoints = [...options.endpoints];
    this.deadlineMs = options.deadlineMs ?? 10_000;
    this.backoff = {
      initialMs: options.retry?.initialMs ?? 50,
      maxMs: options.retry?.maxMs ?? 2000,
      maxAttempts: options.retry?.maxAttempts ?? 10,
    };
    const positive: [string, number, number][] = [
      ['deadlineMs', this.deadlineMs, 1],
      ['retry.initialMs', this.backoff.initialMs, 0],
      ['retry.maxMs', this.backoff.maxMs, 0],
      ['retry.maxAttempts', this.backoff.maxAttempts, 1],
    ];
    for (const [field, v, min] of positive) {
      if (typeof v !== 'number' || Number.isNaN(v) || v < min) {
        throw new TidemarkError(
          'INVALID_ARGUMENT',
          'option_invalid',
          `${field}: must be a number >= ${min}`,
          {
            field,
          },
        );
      }
    }
    this.batchDefaults = options.batch ?? {};
    this.random = options.random ?? Math.random;
    this.sleep = options.sleep ?? realSleep;
    channelCredentials(options.tls); // validates the TLS options now
    checkToken(options.token);
  }

  /**
   * Connects: creates the channels and loads the shard map. An unreachable cluster does not fail the
   * connect (calls retry within their deadlines); invalid options do.
   */
  static async connect(options: ConnectOptions): Promise<TidemarkClient> {
    const c = new TidemarkClient(options);
    await c.refreshShardMap().catch(() => undefined);
    const every = options.shardMapRefreshMs ?? 30_000;
    if (every > 0) {
      c.timer = setInterval(() => void c.refreshShardMap().catch(() => undefined), every);
      c.timer.unref();
    }
    return c;
  }

  // ------------------------------------------------------------------------------------------------------
  // Connections and the shard map

  private conn(address: string): Conn {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'the client is closed');
    let c = this.conns.get(address);
    if (c === undefined) {
      c = createClient(TidemarkService, address, {
        credentials: channelCredentials(this.options.tls),
        grpcOptions: tlsChannelOptions(this.options.tls),
        ...(this.options.token === undefined
          ? {}
          : { interceptors: [bearerInterceptor(this.options.token)] }),
        ...(this.options.maxMessageBytes === undefined
          ? {}
          : { maxMessageBytes: this.options.maxMessageBytes }),
      });
      this.conns.set(address, c);
    }
    return c;
  }

  /** Every address known: the configured endpoints, then the nodes of the map. */
  private addresses(): string[] {
    const out = [...this.endpoints];
    if (this.map !== undefined)
      for (const a of Object.values(this.map.nodes)) if (!out.includes(a)) out.push(a);
    return out;
  }

  /** Any address, round robin, avoiding `avoid` and suspects while another is left. */
  private anyAddress(avoid?: string): string {
    const all = this.addresses();
    let candidates = all.length > 1 && avoid !== undefined ? all.filter((a) => a !== avoid) : all;
    const trusted = candidates.filter((a) => !this.isSuspect(a));
    if (trusted.length > 0) candidates = trusted;
    return candidates[this.rr++ % candidates.length]!;
  }

  /**
   * The address of the shard's leader when known and not suspect, else any other: a follower forwards the
   * write to the leader it knows, or answers NOT_LEADER with a hint.
   */
  private addressFor(shard: number, avoid?: string): string {
    const m = this.map;
    if (m !== undefined && shard >= 0 && shard < m.shardCount) {
      const leader = m.shards[shard]!.leader;
      const address = leader === '' ? undefined : m.nodes[leader];
      if (address !== undefined && address !== avoid && !this.isSuspect(address)) return address;
    }
    return this.anyAddress(avoid);
  }

  private isSuspect(address: string): boolean {
    const until = this.suspects.get(address);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.suspects.delete(address);
    return false;
  }

  /** Records how a node answered: no answer (a timed-out attempt, a refused connection) or any answer. */
  private noteAnswer(address: string, answered: boolean): void {
    if (answered) this.suspects.delete(address);
    else this.suspects.set(address, Date.now() + SUSPECT_MS);
  }

  private setMap(fetched: ClientShardMap): void {
    const next = this.map === undefined ? fetched : mergeShardMaps(this.map, fetched);
    if (this.map !== undefined && sameMap(this.map, next)) return;
    next.version = ++this.mapVersion;
    this.map = next;
  }

  /** Records a leader learned from a NOT_LEADER hint. */
  private noteLeader(shard: number, leader: string): void {
    const m = this.map;
    if (m === undefined || shard < 0 || shard >= m.shardCount || m.shards[shard]!.leader === leader) return;
    const shards = m.shards.map((s) => (s.shard === shard ? { ...s, leader } : s));
    this.setMap({ ...m, shards });
  }

  /** Fetches the shard map now (one fetch at a time), trying each known address once. */
  refreshShardMap(): Promise<ClientShardMap | undefined> {
    if (this.refreshing !== undefined) return this.refreshing;
    const p = this.fetchShardMap().finally(() => {
      if (this.refreshing === p) this.refreshing = undefined;
    });
    this.refreshing = p;
    return p;
  }

  private async fetchShardMap(): Promise<ClientShardMap | undefined> {
    let last: unknown;
    const known = this.addresses();
    const start = this.rr++;
    const rotated = known.map((_, i) => known[(start + i) % known.length]!);
    // A suspect node (isolated, paused) may still believe it leads: ask the others first.
    const all = [...rotated.filter((a) => !this.isSuspect(a)), ...rotated.filter((a) => this.isSuspect(a))];
    for (let i = 0; i < all.length && !this.closed; i++) {
      const address = all[i]!;
      try {
        const res = await this.conn(address).shardMap({}, { timeoutMs: this.deadlineMs });
        const next = toMap(res, this.mapVersion);
        if (next === undefined) continue;
        this.setMap(next);
        return this.map;
      } catch (err) {
        last = err;
      }
    }
    if (last !== undefined) throw asError(last);
    return this.map;
  }

  private requestRefresh(): void {
    void this.refreshShardMap().catch(() => undefined);
  }

  /** The cached shard map (fetched first if none is cached or `refresh` is set); undefined if unknown. */
  async shardMap(options: { refresh?: boolean } = {}): Promise<ClientShardMap | undefined> {
    if (options.refresh === true || this.map === undefined) await this.refreshShardMap();
    return this.map === undefined ? undefined : structuredClone(this.map);
  }

  // ------------------------------------------------------------------------------------------------------
  // Write

  /**
   * Writes samples. Validates locally first (INVALID_ARGUMENT naming the field; nothing is sent), then sends
   * each shard's samples to its leader, retrying transient errors within the deadline. Rejects with the last
   * error if a shard's part could not be written (other parts may have been: writes are idempotent, so
   * writing the same input again is safe).
   */
  async write(input: WriteInput, options: CallOptions = {}): Promise<WriteResult> {
    const prepared = prepare(input);
    return this.writePrepared(prepared, Date.now() + (options.deadlineMs ?? this.deadlineMs), options.signal);
  }

  /** A buffered writer that coalesces small writes into batches (see BatchWriter). */
  writer(options: Partial<WriterOptions> = {}): BatchWriter {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'the client is closed');
    const w = new BatchWriter(
      (p) => this.writePrepared(p, Date.now() + this.deadlineMs),
      { ...this.batchDefaults, ...options },
      () => this.writers.delete(w),
    );
    this.writers.add(w);
    return w;
  }

  /** @internal Sends a validated write. */
  async writePrepared(p: Prepared, deadline: number, signal?: AbortSignal): Promise<WriteResult> {
    const result: WriteResult = { accepted: 0, rejected: [] };
    if (p.samples === 0) return result;
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'the client is closed');
    const m = this.map;
    // No map yet (the cluster was unreachable at connect): this write goes to any node, which forwards it;
    // fetch the map now so the next ones go straight to the leaders, not after the periodic refresh.
    if (m === undefined) this.requestRefresh();
    const byShard = new Map<number, ShardPart>();
    for (const s of p.series) {
      const shard = m === undefined ? -1 : shardOf(s.id, m.shardCount);
      const part = byShard.get(shard);
      if (part === undefined) byShard.set(shard, { shard, series: [s] });
      else part.series.push(s);
    }
    await this.sendParts([...byShard.values()], deadline, result, signal);
    result.rejected.sort((a, b) => a.index - b.index);
    return result;
  }

  /**
   * Rounds of requests: each round groups the parts still unwritten by target node (a shard's leader, or any
   * node) into one request per node; failed parts are retried in the next round, after a backoff.
   */
  private async sendParts(
    parts: ShardPart[],
    deadline: number,
    result: WriteResult,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    let pending = parts;
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw new TidemarkError('CLOSED', 'cancelled', 'the write was cancelled');
      const byAddress = new Map<string, ShardPart[]>();
      for (const part of pending) {
        const address = part.override ?? this.addressFor(part.shard, part.avoid);
        part.override = undefined;
        part.avoid = undefined;
        const g = byAddress.get(address);
        if (g === undefined) byAddress.set(address, [part]);
        else g.push(part);
      }
      const rounds = await Promise.all(
        [...byAddress].map(async ([address, group]) => ({
          address,
          group,
          err: await this.sendOne(address, group, deadline, result, signal),
        })),
      );
      const failed = rounds.filter((r) => r.err !== undefined) as {
        address: string;
        group: ShardPart[];
        err: TidemarkError;
      }[];
      if (failed.length === 0) return;
      const first = failed[0]!;
      for (const f of failed) if (this.closed || !isRetryable(f.err)) throw this.lastError(f.err, f.group);
      if (attempt >= this.backoff.maxAttempts) throw this.lastError(first.err, first.group);
      const backoff = backoffDelay(this.backoff, attempt, this.random);
      let delay = 0;
      let refresh: 'now' | 'background' | undefined;
      for (const { address, group, err } of failed) {
        let d = backoff;
        if (err.code === 'NOT_LEADER') {
          const hint = err.details.leaderHint;
          const hinted = hint === undefined ? undefined : this.map?.nodes[hint];
          // The hint names the leader of one shard: follow it when the request held only that shard.
          if (group.length === 1 && hint !== undefined && hinted !== undefined && hinted !== address) {
            const part = group[0]!;
            this.noteLeader(part.shard, hint);
            part.override = hinted;
            // Follow a fresh hint at once; a second NOT_LEADER in a row backs off (no ping-pong spin).
            if (part.previous !== 'NOT_LEADER') d = 0;
            refresh ??= 'background';
          } else {
            refresh = 'now';
          }
        } else if (err.code === 'RESOURCE_EXHAUSTED') {
          d = Math.max(d, err.details.retryAfterMs ?? 0);
        } else {
          // UNAVAILABLE (incl. outcome_unknown) or CLOSED: that node may be down or stepping down.
          for (const part of group) part.avoid = address;
          refresh ??= 'background';
        }
        for (const part of group) {
          part.previous = err.code;
          part.lastError = err;
        }
        delay = Math.max(delay, d);
      }
      if (refresh === 'now') await this.refreshShardMap().catch(() => undefined);
      else if (refresh === 'background') this.requestRefresh();
      if (Date.now() + delay >= deadline) throw first.err;
      if (delay > 0) await this.sleep(delay);
      pending = failed.flatMap((f) => f.group);
    }
  }

  /** The error to report: a deadline hit while retrying reports the error that caused the retries. */
  private lastError(err: TidemarkError, group: ShardPart[]): TidemarkError {
    if (err.code !== 'DEADLINE_EXCEEDED') return err;
    return group.find((p) => p.lastError !== undefined)?.lastError ?? err;
  }

  /** One Write request to `address` holding `parts`; resolves with the error, if any. */
  private async sendOne(
    address: string,
    parts: ShardPart[],
    deadline: number,
    result: WriteResult,
    signal: AbortSignal | undefined,
  ): Promise<TidemarkError | undefined> {
    const series = parts.length === 1 ? parts[0]!.series : parts.flatMap((p) => p.series);
    // Each attempt gets at most half of what is left (at least ATTEMPT_FLOOR_MS): a node that stopped answering
    // (isolated, paused) must not eat the whole deadline while another replica could lead the shard.
    const started = Date.now();
    const attemptDeadline = Math.min(
      deadline,
      started + Math.max(ATTEMPT_FLOOR_MS, (deadline - started) / 2),
    );
    try {
      const res = await this.conn(address).write(toWriteRequest(series), {
        deadline: attemptDeadline,
        ...(signal === undefined ? {} : { signal }),
      });
      this.noteAnswer(address, true);
      // The node forwarded these shards to their leaders: send them there directly from now on.
      for (const h of res.leaders) if (h.leader !== '') this.noteLeader(h.shard, h.leader);
      result.accepted += Number(res.accepted);
      for (const r of res.rejected) {
        const index = series[r.seriesIndex]?.origin[r.sampleIndex];
        if (index !== undefined) result.rejected.push({ index, reason: r.reason });
      }
      return undefined;
    } catch (e) {
      const err = asError(e);
      if (err.code === 'DEADLINE_EXCEEDED' && attemptDeadline < deadline) {
        // Only this attempt timed out: retryable elsewhere (writes are idempotent); the first may still apply.
        this.noteAnswer(address, false);
        const budget = Math.round(attemptDeadline - started);
        return outcomeUnknown(`no answer from ${address} within ${budget} ms`, { address });
      }
      // A transport failure (refused, reset) is no answer; an error the node sent is one.
      this.noteAnswer(address, !(err.code === 'UNAVAILABLE' && err.reason === 'unavailable'));
      return err;
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Query, status

  /**
   * Streams the series matching a query (raw samples). Iterating may throw a TidemarkError; leaving the
   * loop early cancels the call. Retried on transient errors only until the first series arrived.
   */
  query(request: QueryRequest, options: CallOptions = {}): AsyncIterable<QuerySeries> {
    const metric = validateMetric(request.metric, 'metric');
    const start = validateTimestamp(request.start, 'start');
    const end = validateTimestamp(request.end, 'end');
    if (start > end) {
      throw new TidemarkError('INVALID_ARGUMENT', 'range_invalid', `start: ${start} is after end ${end}`, {
        field: 'start',
      });
    }
    const matchers = (request.matchers ?? []).map((m, i) => {
      const type = MATCH_TYPES[m?.op];
      if (type === undefined || typeof m.name !== 'string' || typeof m.value !== 'string') {
        throw new TidemarkError(
          'INVALID_ARGUMENT',
          'matcher_invalid',
          `matchers[${i}]: needs a name, an op (= != =~ !~) and a value`,
          { field: `matchers[${i}]` },
        );
      }
      return { name: m.name, type, value: m.value };
    });
    const req: Record<string, unknown> = { metric, matchers, startMs: BigInt(start), endMs: BigInt(end) };
    if (request.aggregator !== undefined) {
      if (typeof request.aggregator !== 'string' || request.aggregator === '') {
        throw new TidemarkError(
          'INVALID_ARGUMENT',
          'aggregator_invalid',
          'aggregator must be a function name',
          {
            field: 'aggregator',
          },
        );
      }
      req.aggregator = request.aggregator;
      if (request.downsample !== undefined) req.downsample = request.downsample;
      if (request.groupBy !== undefined) req.groupBy = [...request.groupBy];
      const rate = request.rate;
      if (rate !== undefined && rate !== false) {
        req.rate = true;
        if (typeof rate === 'object') {
          req.rateCounter = rate.counter === true;
          if (rate.counterMax !== undefined) req.rateCounterMax = rate.counterMax;
          if (rate.resetValue !== undefined) req.rateResetValue = rate.resetValue;
          req.rateDropResets = rate.dropResets === true;
        }
      }
    } else if (
      request.downsample !== undefined ||
      request.groupBy !== undefined ||
      request.rate !== undefined
    ) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'aggregator_missing',
        'downsample, groupBy and rate need an aggregator (use "none" to keep every series)',
        { field: 'aggregator' },
      );
    }
    if (request.stale === true) req.stale = true;
    const deadline = Date.now() + (options.deadlineMs ?? this.deadlineMs);
    return this.queryStream(req, deadline, options.signal);
  }

  private async *queryStream(
    req: object,
    deadline: number,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<QuerySeries> {
    let avoid: string | undefined;
    for (let attempt = 1; ; attempt++) {
      const address = this.anyAddress(avoid);
      let yielded = false;
      try {
        const stream = this.conn(address).query(req as never, {
          deadline,
          ...(signal === undefined ? {} : { signal }),
        });
        for await (const res of stream) {
          for (const s of res.series) {
            yielded = true;
            yield fromSeriesSamples(s);
          }
          for (const r of res.results) {
            yielded = true;
            yield {
              metric: r.metric,
              tags: { ...r.tags },
              aggregateTags: [...r.aggregateTags],
              timestamps: r.timestamps.map((t) => Number(t)),
              values: [...r.values],
            };
          }
        }
        return;
      } catch (e) {
        const err = asError(e);
        if (yielded || this.closed || !isRetryable(err) || attempt >= this.backoff.maxAttempts) throw err;
        let delay = backoffDelay(this.backoff, attempt, this.random);
        if (err.code === 'RESOURCE_EXHAUSTED') delay = Math.max(delay, err.details.retryAfterMs ?? 0);
        else avoid = address;
        if (Date.now() + delay >= deadline) throw err;
        if (delay > 0) await this.sleep(delay);
      }
    }
  }

  /**
   * Moves shard `shard`'s leadership to node `to` (default: the most caught-up other replica); resolves with
   * the new leader and term. An admin operation: sent to the shard's leader, following NOT_LEADER hints.
   */
  async transferLeader(
    shard: number,
    to = '',
    options: CallOptions = {},
  ): Promise<{ leader: string; term: number }> {
    if (this.map === undefined) await this.refreshShardMap().catch(() => undefined);
    const deadline = Date.now() + (options.deadlineMs ?? this.deadlineMs);
    let address = this.map === undefined ? this.anyAddress() : this.addressFor(shard);
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await this.conn(address).transferLeader(
          { shard, to },
          { deadline, ...(options.signal === undefined ? {} : { signal: options.signal }) },
        );
        this.requestRefresh();
        return { leader: res.leader, term: Number(res.term) };
      } catch (e) {
        const err = asError(e);
        const hint = err.code === 'NOT_LEADER' ? err.details.leaderHint : undefined;
        const hinted = hint === undefined ? undefined : this.map?.nodes[hint];
        if (hinted === undefined || hinted === address || attempt >= this.backoff.maxAttempts) throw err;
        address = hinted;
      }
    }
  }

  /** The status of one node: `node` is a node id from the shard map or an address (default: any endpoint). */
  async status(node?: string, options: CallOptions = {}): Promise<NodeStatus> {
    const address = node === undefined ? this.anyAddress() : (this.map?.nodes[node] ?? node);
    const res = await this.conn(address).status(
      {},
      {
        timeoutMs: options.deadlineMs ?? this.deadlineMs,
        ...(options.signal ? { signal: options.signal } : {}),
      },
    );
    return {
      nodeId: res.nodeId,
      replicas: res.replicas.map((r) => ({
        shard: r.shard,
        role: ROLES[r.role] ?? 'unspecified',
        term: Number(r.term),
        commit: Number(r.commit),
        applied: Number(r.applied),
        leader: r.leader,
        voters: [...r.voters],
        learners: [...r.learners],
        retentionMs: Number(r.retentionMs),
      })),
      kafka: res.kafka.map((k) => ({
        partition: k.partition,
        consuming: k.consuming,
        appliedOffset: Number(k.appliedOffset),
        highWatermark: Number(k.highWatermark),
        lag: Number(k.lag),
        recordsPerSec: k.recordsPerSec,
        records: Number(k.records),
        samples: Number(k.samples),
        deadLetters: Number(k.deadLetters),
      })),
    };
  }

  /**
   * Sets every shard's retention (admin role): samples older than now - retentionMs are dropped by each
   * replica's periodic retention pass; 0 keeps everything. Resolves once every shard's policy entry committed.
   */
  async setRetention(retentionMs: number, options: CallOptions = {}): Promise<number[]> {
    if (!Number.isSafeInteger(retentionMs) || retentionMs < 0) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'retention_invalid',
        'retentionMs must be a non-negative integer',
        {
          field: 'retentionMs',
        },
      );
    }
    const res = await this.conn(this.anyAddress()).setRetention(
      { retentionMs: BigInt(retentionMs) },
      {
        timeoutMs: options.deadlineMs ?? this.deadlineMs,
        ...(options.signal ? { signal: options.signal } : {}),
      },
    );
    return [...res.shards];
  }

  /** Flushes and closes every writer, then closes the channels. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    const errors = await Promise.allSettled([...this.writers].map((w) => w.close()));
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
    for (const e of errors) if (e.status === 'rejected') throw e.reason;
  }
}
