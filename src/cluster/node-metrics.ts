/**
 * Prometheus metrics of a TidemarkNode (prom-client). The node owns its own Registry (never the global
 * default one, so several nodes — or tests — can live in one process); `tidemark start` serves it on
 * the HTTP port's `/metrics` together with the HTTP API's own registry (src/api/metrics.ts). Names:
 * docs/cluster.md, "Metrics".
 *
 * Raft and storage gauges are read on scrape (`collect()`): Raft state from the drivers' status(), the
 * store figures from store.stats() (a scan of the chunk headers, so cached for `storeStatsCacheMs`, ≥ 1 s).
 * Counters of events the node sees (leader changes observed, proposals, forwarded writes, write latency)
 * are fed by the node; commit/apply latency by the Raft drivers (RaftDriver.onTimings).
 *
 * Families shared with the HTTP API (`tidemark_ingest_samples_total`, `tidemark_query_duration_seconds`,
 * `tidemark_query_limit_hits_total`) live here; src/api/metrics.ts reuses them when it is handed this
 * registry, so one family carries every protocol / API. Process metrics (prom-client's default collectors:
 * CPU, memory, heap, event-loop lag, GC) are created once per process and registered into every node's
 * registry, so several nodes in one process neither duplicate nor restart them.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from 'prom-client';
import type { ClusterService } from '../api/cluster-service.js';
import { isTidemarkError } from '../errors/index.js';
import type { RaftDriver } from '../raft/driver.js';
import type { StoreStats } from '../storage/store.js';
import type { PeerTransportStats } from '../transport/peer.js';
import type { ShardReplica } from './replica.js';

/** What the metrics read on scrape. */
export interface NodeMetricsSource {
  /** The node's local replicas by shard. */
  replicas(): ReadonlyMap<number, ShardReplica>;
  /** Peer transport counters (snapshots sent / received). */
  peerStats?(): PeerTransportStats;
  /** Samples decoded from Kafka by this node, per partition (undefined when Kafka is off). */
  kafkaSamples?(): readonly { samples: number }[] | undefined;
}

export interface NodeMetricsOptions {
  /** How long store.stats() results are reused (ms; default 1,000, at least 1,000). */
  storeStatsCacheMs?: number;
  /** Clock (ms; default Date.now). */
  now?: () => number;
}

const ROLES = ['follower', 'pre-candidate', 'candidate', 'leader'] as const;

/** Latency buckets (seconds) of the write, query, commit and apply histograms. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

let processRegistry: Registry | undefined;

/**
 * prom-client's default process metrics (CPU, memory, heap, event-loop lag, GC), collected once per process
 * into one registry whose metric objects every node's registry also registers.
 */
export function processMetrics(): Metric[] {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, eventLoopMonitoringPrecision: 20 });
  }
  return processRegistry.getMetricsAsArray() as unknown as Metric[];
}

/** The limit a query-limit error names (`limits.maxSeries` → `maxSeries`), undefined for other errors. */
export function limitOf(err: unknown): string | undefined {
  if (!isTidemarkError(err, 'RESOURCE_EXHAUSTED')) return undefined;
  const field = err.details.field;
  return typeof field === 'string' && field.startsWith('limits.') ? field.slice('limits.'.length) : undefined;
}

/** The outcome label of an error: its code in lower case (`not_leader`, ...), `internal` if not a TidemarkError. */
export function outcomeOf(err: unknown): string {
  return isTidemarkError(err) ? err.code.toLowerCase() : 'internal';
}

export class NodeMetrics {
  readonly registry = new Registry();
  private readonly leaders = new Map<number, string>();
  private readonly leaderChanges: Counter<'shard'>;
  private readonly proposals: Counter<'shard'>;
  private readonly proposalsFailed: Counter<'shard' | 'code'>;
  private readonly forwarded: Counter<'shard' | 'outcome'>;
  private readonly writeDuration: Histogram<'outcome'>;
  private readonly storeRejected: Counter<'reason'>;
  private readonly commitDuration: Histogram;
  private readonly applyDuration: Histogram;
  private readonly retentionRuns: Counter<'shard'>;
  private readonly retentionChunks: Counter<'shard'>;
  private readonly retentionSeries: Counter<'shard'>;
  /** Samples accepted by the cluster, by protocol (influx, opentsdb, grpc, kafka); shared with the HTTP API. */
  readonly samplesIngested: Counter<'protocol'>;
  /** Query latency by API (http, grpc) and outcome; shared with the HTTP API. */
  readonly queryDuration: Histogram<'api' | 'outcome'>;
  /** Queries refused by a query limit, by limit (maxSeries, maxSamples, maxPoints, ...); shared. */
  readonly queryLimitHits: Counter<'limit'>;
  private readonly timed = new WeakSet<RaftDriver>();
  private readonly cacheMs: number;
  private readonly now: () => number;
  private storeCache: { at: number; stats: Map<number, StoreStats> } | undefined;

  constructor(
    private readonly source: NodeMetricsSource,
    options: NodeMetricsOptions = {},
  ) {
    this.cacheMs = Math.max(1000, options.storeStatsCacheMs ?? 1000);
    this.now = options.now ?? Date.now;
    const registers = [this.registry];
    const self = this;
    const perShard = (
      name: string,
      help: string,
      value: (s: ReturnType<ShardReplica['driver']['status']>) => number,
    ): void => {
      new Gauge({
        name,
        help,
        labelNames: ['shard'],
        registers,
        collect() {
          this.reset();
          for (const [shard, r] of self.source.replicas())
            this.set({ shard: String(shard) }, value(r.driver.status()));
        },
      });
    };
    perShard('tidemark_raft_term', 'Current Raft term of the local replica, by shard', (s) => s.term);
    perShard('tidemark_raft_is_leader', '1 if the local replica leads the shard, else 0', (s) =>
      s.role === 'leader' ? 1 : 0,
    );
    perShard('tidemark_raft_commit_index', 'Highest log index known committed, by shard', (s) => s.commit);
    perShard(
      'tidemark_raft_applied_index',
      'Highest log index applied to the store, by shard',
      (s) => s.applied,
    );
    perShard(
      'tidemark_raft_apply_lag',
      'Committed entries not yet applied (commit - applied), by shard',
      (s) => Math.max(0, s.commit - s.applied),
    );
    perShard('tidemark_raft_last_index', 'Last index of the local Raft log, by shard', (s) => s.lastIndex);
    perShard(
      'tidemark_raft_pending_proposals',
      'Proposals waiting for commit + apply (the bounded proposal queue), by shard',
      (s) => s.pendingProposals,
    );
    perShard('tidemark_raft_pending_reads', 'ReadIndex requests waiting, by shard', (s) => s.pendingReads);
    new Gauge({
      name: 'tidemark_raft_role',
      help: '1 for the Raft role the local replica is in, by shard and role',
      labelNames: ['shard', 'role'],
      registers,
      collect() {
        this.reset();
        for (const [shard, r] of self.source.replicas()) {
          const role = r.driver.status().role;
          for (const x of ROLES) this.set({ shard: String(shard), role: x }, role === x ? 1 : 0);
        }
      },
    });
    this.leaderChanges = new Counter({
      name: 'tidemark_raft_leader_changes_total',
      help: 'Leader changes observed by this node (a known leader replaced or lost), by shard',
      labelNames: ['shard'],
      registers,
    });
    this.proposals = new Counter({
      name: 'tidemark_raft_proposals_total',
      help: 'Write proposals made by this node to its local replicas, by shard',
      labelNames: ['shard'],
      registers,
    });
    this.proposalsFailed = new Counter({
      name: 'tidemark_raft_proposals_failed_total',
      help: 'Write proposals that failed, by shard and error code (not_leader, resource_exhausted, ...)',
      labelNames: ['shard', 'code'],
      registers,
    });
    const peerCounter = (name: string, help: string, value: (s: PeerTransportStats) => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          const s = self.source.peerStats?.();
          this.reset();
          if (s !== undefined) this.inc(value(s));
        },
      });
    };
    peerCounter(
      'tidemark_raft_snapshots_sent_total',
      'Raft snapshots sent to peers (all shards)',
      (s) => s.snapshotsSent,
    );
    peerCounter(
      'tidemark_raft_snapshots_send_failed_total',
      'Raft snapshots that could not be delivered to peers (all shards)',
      (s) => s.snapshotsFailed,
    );
    peerCounter(
      'tidemark_raft_snapshots_received_total',
      'Raft snapshots received from peers (all shards)',
      (s) => s.snapshotsReceived,
    );
    peerCounter(
      'tidemark_raft_snapshots_rejected_total',
      'Raft snapshot streams received and rejected (corrupt, incomplete, unknown shard)',
      (s) => s.snapshotsRejected,
    );
    const storeGauge = (name: string, help: string, value: (s: StoreStats) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['shard'],
        registers,
        collect() {
          this.reset();
          for (const [shard, s] of self.storeStats()) this.set({ shard: String(shard) }, value(s));
        },
      });
    };
    storeGauge('tidemark_store_series', 'Series in the shard store', (s) => s.series);
    storeGauge('tidemark_store_chunks', 'Sealed chunks in the shard store', (s) => s.chunks);
    storeGauge(
      'tidemark_store_chunk_bytes',
      'Bytes of encoded chunks in the shard store',
      (s) => s.chunkBytes,
    );
    storeGauge(
      'tidemark_store_head_samples',
      'Samples in the open (head) chunks of the shard store',
      (s) => s.headSamples,
    );
    storeGauge('tidemark_store_disk_bytes', "Size of the shard store's data file", (s) => s.diskBytes);
    this.forwarded = new Counter({
      name: 'tidemark_write_forwarded_total',
      help: "Write parts forwarded to another node (the shard's leader), by shard and outcome (ok or error code)",
      labelNames: ['shard', 'outcome'],
      registers,
    });
    this.writeDuration = new Histogram({
      name: 'tidemark_write_duration_seconds',
      help: 'Cluster write latency (split, propose/forward, commit, apply), by outcome: ok, partial (some samples rejected) or the error code',
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.storeRejected = new Counter({
      name: 'tidemark_write_rejected_samples_total',
      help: 'Samples of cluster writes that the shard stores refused (dropped), by reason (too_old, out_of_retention, ...)',
      labelNames: ['reason'],
      registers,
    });
    this.commitDuration = new Histogram({
      name: 'tidemark_raft_commit_duration_seconds',
      help: "Time from a local leader's proposal to its commit (all shards)",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.applyDuration = new Histogram({
      name: 'tidemark_raft_apply_duration_seconds',
      help: 'Time to apply one committed entry to the shard store, on every replica (all shards)',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    new Counter({
      name: 'tidemark_raft_log_compactions_total',
      help: 'Raft log compactions (snapshot taken, log truncated) of the local replica, by shard',
      labelNames: ['shard'],
      registers,
      collect() {
        this.reset();
        for (const [shard, r] of self.source.replicas())
          this.inc({ shard: String(shard) }, r.driver.status().stats.compactions);
      },
    });
    storeGauge(
      'tidemark_store_retention_cutoff_ms',
      'Retention cutoff of the shard store (samples older are dropped; 0 = no retention applied)',
      (s) => Math.max(0, s.retentionCutoff),
    );
    storeGauge(
      'tidemark_store_checkpoint_index',
      "Raft index of the shard store's last checkpoint (head persisted, write-ahead records truncated)",
      (s) => s.checkpointIndex,
    );
    this.retentionRuns = new Counter({
      name: 'tidemark_store_retention_runs_total',
      help: 'Retention passes run on the shard store, by shard',
      labelNames: ['shard'],
      registers,
    });
    this.retentionChunks = new Counter({
      name: 'tidemark_store_retention_dropped_chunks_total',
      help: 'Chunks dropped by retention, by shard',
      labelNames: ['shard'],
      registers,
    });
    this.retentionSeries = new Counter({
      name: 'tidemark_store_retention_removed_series_total',
      help: 'Series removed by retention (no sample left), by shard',
      labelNames: ['shard'],
      registers,
    });
    this.samplesIngested = new Counter({
      name: 'tidemark_ingest_samples_total',
      help: 'Samples accepted by the cluster, by protocol (influx = /write, opentsdb = /api/put, grpc, kafka = decoded from the topic)',
      labelNames: ['protocol'],
      registers,
      collect() {
        // Kafka's own partition is proposed by its ingester, not through an API: read its counters.
        const parts = self.source.kafkaSamples?.();
        if (parts === undefined) return;
        this.remove({ protocol: 'kafka' });
        this.inc(
          { protocol: 'kafka' },
          parts.reduce((a, p) => a + p.samples, 0),
        );
      },
    });
    this.queryDuration = new Histogram({
      name: 'tidemark_query_duration_seconds',
      help: 'Query latency by API (http = /api/query, grpc = Query) and outcome (ok or the error code)',
      labelNames: ['api', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queryLimitHits = new Counter({
      name: 'tidemark_query_limit_hits_total',
      help: 'Queries refused because they passed a query limit, by limit (maxSeries, maxSamples, maxPoints, ...)',
      labelNames: ['limit'],
      registers,
    });
    for (const m of processMetrics()) this.registry.registerMetric(m);
    for (const r of this.source.replicas().values()) this.timeDriver(r.driver);
  }

  /** Feeds the commit/apply histograms from a replica's driver (once per driver). */
  private timeDriver(driver: RaftDriver): void {
    if (this.timed.has(driver)) return;
    this.timed.add(driver);
    driver.onTimings((kind, ms) =>
      (kind === 'commit' ? this.commitDuration : this.applyDuration).observe(ms / 1000),
    );
  }

  /**
   * Records a shard's observed leader ('' = none); a change from a known leader counts once. Returns whether
   * the leader differs from the last observation (the first observation of a leader counts as a change).
   */
  observeLeader(shard: number, leader: string): boolean {
    // A replica opened after the node started (membership change) gets its latency feed here.
    const r = this.source.replicas().get(shard);
    if (r !== undefined) this.timeDriver(r.driver);
    const prev = this.leaders.get(shard);
    if (prev === leader) return false;
    this.leaders.set(shard, leader);
    if (prev !== undefined && prev !== '') this.leaderChanges.inc({ shard: String(shard) });
    return prev !== undefined || leader !== '';
  }

  /** Counts one retention pass of a shard store and what it dropped. */
  observeRetention(shard: number, result: { chunksDropped: number; seriesRemoved: number }): void {
    const label = { shard: String(shard) };
    this.retentionRuns.inc(label);
    this.retentionChunks.inc(label, result.chunksDropped);
    this.retentionSeries.inc(label, result.seriesRemoved);
  }

  /** Counts the query limit a failed query hit, if any (RESOURCE_EXHAUSTED naming `limits.*`); returns `p`. */
  countLimitHits<T>(p: Promise<T>): Promise<T> {
    p.catch((err: unknown) => {
      const limit = limitOf(err);
      if (limit !== undefined) this.queryLimitHits.inc({ limit });
    });
    return p;
  }

  /** Times a query served by `api`; returns `p`. */
  trackQuery<T>(api: string, p: Promise<T>): Promise<T> {
    const end = this.queryDuration.startTimer({ api });
    p.then(
      () => end({ outcome: 'ok' }),
      (err: unknown) => end({ outcome: outcomeOf(err) }),
    );
    return p;
  }

  /**
   * `service` as an API sees it: queries timed under `api`, accepted samples counted under protocol `api`
   * (the gRPC service's view of the node; the HTTP API counts its own protocols).
   */
  instrument(service: ClusterService, api: string): ClusterService {
    const query: ClusterService['query'] = (spec, options) =>
      this.trackQuery(api, service.query(spec, options));
    const write: ClusterService['write'] = async (batch, options) => {
      const r = await service.write(batch, options);
      this.samplesIngested.inc({ protocol: api }, r.accepted);
      return r;
    };
    return new Proxy(service, {
      get(target, prop) {
        if (prop === 'query') return query;
        if (prop === 'write') return write;
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  }

  /** Counts a local proposal and its failure (by code); returns `p`. */
  trackProposal<T>(shard: number, p: Promise<T>): Promise<T> {
    const label = String(shard);
    this.proposals.inc({ shard: label });
    p.catch((err: unknown) => this.proposalsFailed.inc({ shard: label, code: outcomeOf(err) }));
    return p;
  }

  /** Counts a forwarded write part by outcome; returns `p`. */
  trackForward<T>(shard: number, p: Promise<T>): Promise<T> {
    const label = String(shard);
    p.then(
      () => this.forwarded.inc({ shard: label, outcome: 'ok' }),
      (err: unknown) => this.forwarded.inc({ shard: label, outcome: outcomeOf(err) }),
    );
    return p;
  }

  /** Times a cluster write: outcome `ok`, `partial` (some samples rejected) or the error code; returns `p`. */
  trackWrite<T extends { rejected: readonly unknown[] }>(p: Promise<T>): Promise<T> {
    const end = this.writeDuration.startTimer();
    p.then(
      (r) => {
        end({ outcome: r.rejected.length === 0 ? 'ok' : 'partial' });
        if (r.rejected.length === 0) return;
        const reasons = new Map<string, number>();
        for (const x of r.rejected as readonly { reason?: unknown }[]) {
          const reason = typeof x.reason === 'string' ? x.reason : 'unknown';
          reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
        }
        for (const [reason, n] of reasons) this.storeRejected.inc({ reason }, n);
      },
      (err: unknown) => end({ outcome: outcomeOf(err) }),
    );
    return p;
  }

  /** The Prometheus text exposition of the registry. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** store.stats() of every local replica, cached for cacheMs (replicas installing a snapshot are skipped). */
  private storeStats(): Map<number, StoreStats> {
    const now = this.now();
    if (this.storeCache !== undefined && now - this.storeCache.at < this.cacheMs)
      return this.storeCache.stats;
    const stats = new Map<number, StoreStats>();
    for (const [shard, r] of this.source.replicas()) {
      try {
        stats.set(shard, r.store.stats());
      } catch {
        // UNAVAILABLE during a snapshot install, CLOSED while closing: no figures for this shard now.
      }
    }
    this.storeCache = { at: now, stats };
    return stats;
  }
}
