/**
 * What the API layers (gRPC client service, HTTP endpoints) need from a node. The node implements it; tests
 * use an in-memory implementation behind the same interface. Every method may throw a TidemarkError.
 */

import type { ShardMapJSON } from '../cluster/shard-map.js';
import type {
  LastPoint,
  LastRequest,
  QueryLimits,
  QueryOutcome,
  QuerySpec,
  SuggestRequest,
} from '../query/index.js';
import type { SampleBatch, SelectRequest } from '../storage/store.js';

export interface WriteOptions {
  /** Absolute deadline (ms since epoch, as Date.now()); the write fails with DEADLINE_EXCEEDED after it. */
  deadline?: number;
}

export interface WriteResult {
  /** Samples stored (a replaced value counts). */
  accepted: number;
  /** Samples the shards refused, by index in the submitted batch (e.g. too old for the out-of-order window). */
  rejected: { index: number; reason: string }[];
  /** Shards whose samples this node forwarded to their leader, and that leader's node id. */
  leaders?: { shard: number; leader: string }[];
}

export interface ReadOptions {
  /** Skip ReadIndex: read whatever the chosen replica has applied (may lag the leader). */
  stale?: boolean;
  deadline?: number;
}

export interface QueryOptions extends ReadOptions {
  /** Return what arrived plus the missing shards instead of failing. */
  partial?: boolean;
  limits?: Partial<QueryLimits>;
  signal?: AbortSignal;
}

export interface SeriesResult {
  metric: string;
  tags: Record<string, string>;
  timestamps: Float64Array;
  values: Float64Array;
}

export interface ReplicaStatus {
  shard: number;
  role: string;
  term: number;
  commit: number;
  applied: number;
  leader: string;
  /** First and last index in the replica's Raft log (entries before firstIndex were compacted away). */
  firstIndex: number;
  lastIndex: number;
  /** The group's configuration (Raft member ids: docs/cluster.md, "Membership and rejoining"); absent if unknown. */
  voters?: string[];
  learners?: string[];
  /** The retention the replica applies (0 = keep everything). */
  retentionMs?: number;
}

export interface NodeStatus {
  nodeId: string;
  shardCount: number;
  replicas: ReplicaStatus[];
  /** Kafka partitions this node has consumed since it started (absent without Kafka). */
  kafka?: KafkaPartitionStatus[];
}

/** One Kafka partition as this node sees it (docs/kafka.md). */
export interface KafkaPartitionStatus {
  partition: number;
  consuming: boolean;
  appliedOffset: number;
  highWatermark: number;
  lag: number;
  recordsPerSec: number;
  records: number;
  samples: number;
  deadLetters: number;
}

export interface Readiness {
  ready: boolean;
  /** Why not, per local replica (e.g. "shard 3: no leader", "shard 5: applied 10 < commit 12"). */
  reasons: string[];
}

export interface ClusterService {
  /** Accepts a batch on any node: splits it by shard and proposes each part to its shard's leader. */
  write(batch: SampleBatch, options?: WriteOptions): Promise<WriteResult>;
  /** Raw samples of the matching series, from every shard (the Query issue adds aggregation). */
  select(request: SelectRequest, options?: ReadOptions): Promise<SeriesResult[]>;
  /**
   * Runs a query (src/query): one replica per shard computes partial aggregates, merged here. Linearizable
   * (ReadIndex on each shard) unless `stale`; with `partial`, unreachable shards are listed instead of failing.
   */
  query(spec: QuerySpec, options?: QueryOptions): Promise<QueryOutcome>;
  /** Metric names, tag keys or tag values starting with a prefix, from every shard (OpenTSDB /api/suggest). */
  suggest(request: SuggestRequest, options?: ReadOptions): Promise<string[]>;
  /** The last point of each matching series, from every shard (OpenTSDB /api/query/last). */
  last(request: LastRequest, now: number, options?: ReadOptions): Promise<LastPoint[]>;
  /**
   * Moves shard `shard`'s leadership to replica `to` ('' = the most caught-up other one) and resolves once
   * it moved. Only the node of the current leader can; others throw NOT_LEADER with a hint.
   */
  transferLeader(
    shard: number,
    to: string,
    options?: { deadline?: number },
  ): Promise<{ leader: string; term: number }>;
  /**
   * Sets every shard's retention through its Raft log (an admin operation); resolves with the shards whose
   * policy entry committed. Throws INVALID_ARGUMENT for a bad value, UNAVAILABLE if a shard has no leader.
   */
  setRetention(retentionMs: number, options?: { deadline?: number }): Promise<number[]>;
  shardMap(): ShardMapJSON;
  status(): NodeStatus;
  readiness(): Readiness;
}
