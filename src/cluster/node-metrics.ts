/**
 * Prometheus metrics of a TidemarkNode (prom-client). The node owns its own Registry (never the global
 * default one, so several nodes — or tests — can live in one process); `tidemark start` serves it on
 * the HTTP port's `/metrics` together with the HTTP API's own registry (src/api/metrics.ts). Names:
 * docs/cluster.md, "Metrics".
 *
 * Raft and storage gauges are read on scrape (`collect()`): Raft state from the drivers' status(), the
 * store figures from store.stats() (a scan of the chunk headers, so cached for `storeStatsCacheMs`, ≥ 1 s).
 * Counters of events the node sees (leader changes observed, proposals, forwarded writes, write latency)
 * are fed by the node.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { isTidemarkError } from '../errors/index.js';
import type { StoreStats } from '../storage/store.js';
import type { PeerTransportStats } from '../transport/peer.js';
import type { ShardReplica } from './replica.js';

/** What the metrics read on scrape. */
export interface NodeMetricsSource {
  /** The node's local replicas by shard. */
  replicas(): ReadonlyMap<number, ShardReplica>;
  /** Peer transport counters (snapshots sent / received). */
  peerStats?(): PeerTransportStats;
}

export interface NodeMetricsOptions {
  /** How long store.stats() results are reused (ms; default 1,000, at least 1,000). */
  storeStatsCacheMs?: number;
  /** Clock (ms; default Date.now). */
  now?: () => number;
}

const ROLES = ['follower', 'pre-candidate', 'candidate', 'leader'] as const;

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
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
  }

  /** Records a shard's observed leader ('' = none); a change from a known leader counts once. */
  observeLeader(shard: number, leader: string): void {
    const prev = this.leaders.get(shard);
    if (prev === leader) return;
    this.leaders.set(shard, leader);
    if (prev !== undefined && prev !== '') this.leaderChanges.inc({ shard: String(shard) });
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
      (r) => end({ outcome: r.rejected.length === 0 ? 'ok' : 'partial' }),
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
