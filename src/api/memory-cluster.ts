/**
 * An in-memory ClusterService: S MemoryShardStores behind splitByShard, one node that leads every shard.
 * A fast test double for the API layers (HTTP, gRPC, SDK, query) with injectable failures and delays.
 *
 * Failures are checked before anything is applied, so an injected failure never leaves a write half done.
 */

import { ShardMap, type ShardMapJSON } from '../cluster/shard-map.js';
import { notLeader, resourceExhausted, TidemarkError } from '../errors/index.js';
import { canonicalKeyFast, routeByShard } from '../ingest/batch.js';
import { seriesIdOfKey, shardOf } from '../model/index.js';
import {
  type LastPoint,
  type LastRequest,
  localShard,
  type QueryOutcome,
  type QuerySpec,
  queryLast,
  runQuery,
  type ShardFn,
  type SuggestRequest,
  suggest,
} from '../query/index.js';
import { MemoryShardStore } from '../storage/memory-store.js';
import type { StoreOptions } from '../storage/options.js';
import type { SampleBatch, SelectRequest } from '../storage/store.js';
import type {
  ClusterService,
  NodeStatus,
  QueryOptions,
  Readiness,
  ReadOptions,
  SeriesResult,
  WriteOptions,
  WriteResult,
} from './cluster-service.js';

export type MemoryClusterOp = 'write' | 'select';

/** What an injected failure throws. */
export type FailureMode =
  | { kind: 'not_leader'; leaderHint?: string }
  | { kind: 'resource_exhausted'; retryAfterMs: number }
  | { kind: 'unavailable'; retryAfterMs?: number }
  | { kind: 'error'; error: unknown };

export interface Injection {
  /** Thrown by the affected calls (after the delay, if any). */
  failure?: FailureMode;
  /** Wait this long (ms) before answering; a call whose deadline passes first fails with DEADLINE_EXCEEDED. */
  delayMs?: number;
  /** Hold the call until this settles (then apply delayMs and failure); for tests that need calls in flight. */
  gate?: Promise<unknown>;
  /** Calls affected (default: every call until cleared). */
  times?: number;
  /** Which calls (default both). */
  ops?: readonly MemoryClusterOp[];
}

export interface MemoryClusterOptions {
  /** Shards (default 4). */
  shardCount?: number;
  /** This node's id (default `node-0`). */
  nodeId?: string;
  /** Options of every shard store (e.g. oooWindowMs). */
  store?: Partial<StoreOptions>;
}

interface ActiveInjection extends Injection {
  remaining: number;
}

export class MemoryCluster implements ClusterService {
  readonly nodeId: string;
  readonly shardCount: number;
  readonly stores: MemoryShardStore[] = [];
  /** write() calls that reached the stores (an injected failure does not count). */
  writesApplied = 0;
  /** Samples the stores accepted over all writes. */
  samplesAccepted = 0;
  private readonly injections: ActiveInjection[] = [];
  private readonly down = new Map<number, string>();
  private map: ShardMap;

  constructor(options: MemoryClusterOptions = {}) {
    this.shardCount = options.shardCount ?? 4;
    this.nodeId = options.nodeId ?? 'node-0';
    for (let s = 0; s < this.shardCount; s++) this.stores.push(new MemoryShardStore(options.store));
    this.map = ShardMap.create(this.shardCount, [this.nodeId], 1).withObservations(
      this.stores.map((_, shard) => ({ shard, leader: this.nodeId, term: 1 })),
    );
  }

  /** Adds a failure/delay injection; returns a function that removes it. */
  inject(injection: Injection): () => void {
    const active: ActiveInjection = { ...injection, remaining: injection.times ?? Number.POSITIVE_INFINITY };
    this.injections.push(active);
    return () => {
      const i = this.injections.indexOf(active);
      if (i >= 0) this.injections.splice(i, 1);
    };
  }

  /** Removes every injection and marks every shard available again. */
  clearInjections(): void {
    this.injections.length = 0;
    for (const shard of [...this.down.keys()]) this.setShardAvailable(shard, true);
  }

  /**
   * Marks a shard as without a leader (`available = false`): readiness reports it, and a write or select
   * touching it fails with UNAVAILABLE before anything is applied.
   */
  setShardAvailable(shard: number, available: boolean, reason = 'no leader'): void {
    if (available) this.down.delete(shard);
    else this.down.set(shard, reason);
    this.map = this.map.withObservedLeader(
      shard,
      available ? this.nodeId : '',
      this.map.shard(shard).term + 1,
    );
  }

  /** Every sample stored, over all shards (for assertions). */
  sampleCount(): number {
    let n = 0;
    for (const s of this.stores) n += s.stats().headSamples;
    return n;
  }

  /** The shard a series lands on. */
  shardOfSeries(series: { metric: string; tags: Record<string, string> }): number {
    return shardOf(seriesIdOfKey(canonicalKeyFast(series)), this.shardCount);
  }

  async write(batch: SampleBatch, options: WriteOptions = {}): Promise<WriteResult> {
    await this.before('write', options.deadline);
    const { parts, origin } = routeByShard(batch, this.shardCount);
    for (let s = 0; s < parts.length; s++) {
      if (parts[s].length > 0 && this.down.has(s)) throw this.unavailable(s);
    }
    this.writesApplied++;
    const result: WriteResult = { accepted: 0, rejected: [] };
    for (let s = 0; s < parts.length; s++) {
      if (parts[s].length === 0) continue;
      const applied = await this.stores[s].append(parts[s]);
      result.accepted += applied.accepted;
      for (const r of applied.rejected) result.rejected.push({ index: origin[s][r.index], reason: r.reason });
    }
    result.rejected.sort((a, b) => a.index - b.index);
    this.samplesAccepted += result.accepted;
    return result;
  }

  async select(request: SelectRequest, options: ReadOptions = {}): Promise<SeriesResult[]> {
    await this.before('select', options.deadline);
    for (const [s] of this.down) throw this.unavailable(s);
    const out: SeriesResult[] = [];
    for (const store of this.stores) {
      for (const data of store.select(request)) {
        const { ts, vals, count } = data.toArrays();
        out.push({
          metric: data.series.metric,
          tags: { ...data.series.tags },
          timestamps: ts.subarray(0, count),
          values: vals.subarray(0, count),
        });
      }
    }
    return out.sort((a, b) => compareTags(a.tags, b.tags));
  }

  async query(spec: QuerySpec, options: QueryOptions = {}): Promise<QueryOutcome> {
    await this.before('select', options.deadline);
    const shards = this.stores.map((store, s): ShardFn => {
      const local = localShard(store);
      return async (q, signal) => {
        if (this.down.has(s)) throw this.unavailable(s);
        return local(q, signal);
      };
    });
    return runQuery(spec, shards, {
      ...(options.deadline !== undefined ? { deadlineMs: Math.max(1, options.deadline - Date.now()) } : {}),
      ...(options.partial ? { partial: true } : {}),
      ...(options.limits ? { limits: options.limits } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  async suggest(request: SuggestRequest, options: ReadOptions = {}): Promise<string[]> {
    await this.before('select', options.deadline);
    for (const [s] of this.down) throw this.unavailable(s);
    return suggest(this.stores, request);
  }

  async last(request: LastRequest, now: number, options: ReadOptions = {}): Promise<LastPoint[]> {
    await this.before('select', options.deadline);
    for (const [s] of this.down) throw this.unavailable(s);
    return queryLast(this.stores, request, now);
  }

  /** One node: the policy is this cluster's; it is applied at once (no log to replicate it through). */
  async setRetention(retentionMs: number): Promise<number[]> {
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
    const now = Date.now();
    for (const store of this.stores) await store.applyRetention(now, retentionMs);
    return this.stores.map((_, shard) => shard);
  }

  async transferLeader(shard: number, to: string): Promise<{ leader: string; term: number }> {
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.shardCount) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'shard_invalid',
        `shard must be in [0, ${this.shardCount - 1}]`,
        {
          field: 'shard',
        },
      );
    }
    // One node: there is no other replica to lead.
    throw new TidemarkError(
      'INVALID_ARGUMENT',
      'transfer_target_invalid',
      `shard ${shard} has no other voter`,
      {
        field: 'to',
        ...(to === '' ? {} : { to }),
      },
    );
  }

  shardMap(): ShardMapJSON {
    return this.map.toJSON();
  }

  status(): NodeStatus {
    return {
      nodeId: this.nodeId,
      shardCount: this.shardCount,
      replicas: this.stores.map((store, shard) => {
        const applied = store.appliedIndex();
        const down = this.down.has(shard);
        return {
          shard,
          role: down ? 'follower' : 'leader',
          term: this.map.shard(shard).term,
          commit: applied,
          applied,
          leader: down ? '' : this.nodeId,
          firstIndex: applied === 0 ? 0 : 1,
          lastIndex: applied,
        };
      }),
    };
  }

  readiness(): Readiness {
    const reasons = [...this.down].sort((a, b) => a[0] - b[0]).map(([s, why]) => `shard ${s}: ${why}`);
    return { ready: reasons.length === 0, reasons };
  }

  async close(): Promise<void> {
    for (const s of this.stores) await s.close();
  }

  private unavailable(shard: number): TidemarkError {
    return new TidemarkError('UNAVAILABLE', 'no_leader', `shard ${shard} has no leader`, {
      retryAfterMs: 1000,
    });
  }

  /** Applies the first matching injection: its delay (bounded by the deadline), then its failure. */
  private async before(op: MemoryClusterOp, deadline: number | undefined): Promise<void> {
    if (deadline !== undefined && Date.now() >= deadline) throw deadlineExceeded();
    const inj = this.injections.find((i) => i.remaining > 0 && (i.ops === undefined || i.ops.includes(op)));
    if (inj === undefined) return;
    inj.remaining--;
    if (inj.remaining <= 0) this.injections.splice(this.injections.indexOf(inj), 1);
    if (inj.gate !== undefined) await inj.gate.catch(() => {});
    if (inj.delayMs !== undefined && inj.delayMs > 0) {
      const wait = deadline === undefined ? inj.delayMs : Math.min(inj.delayMs, deadline - Date.now());
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
      if (deadline !== undefined && Date.now() >= deadline) throw deadlineExceeded();
    }
    if (inj.failure !== undefined) throw failureError(inj.failure);
  }
}

function deadlineExceeded(): TidemarkError {
  return new TidemarkError('DEADLINE_EXCEEDED', 'deadline_exceeded', 'the deadline passed before the write');
}

function failureError(f: FailureMode): unknown {
  switch (f.kind) {
    case 'not_leader':
      return notLeader(f.leaderHint);
    case 'resource_exhausted':
      return resourceExhausted('overloaded', 'the node is overloaded; retry later', f.retryAfterMs);
    case 'unavailable':
      return new TidemarkError(
        'UNAVAILABLE',
        'unavailable',
        'the cluster is unavailable',
        f.retryAfterMs === undefined ? {} : { retryAfterMs: f.retryAfterMs },
      );
    case 'error':
      return f.error;
  }
}

function compareTags(a: Record<string, string>, b: Record<string, string>): number {
  const ka = JSON.stringify(Object.entries(a).sort());
  const kb = JSON.stringify(Object.entries(b).sort());
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
