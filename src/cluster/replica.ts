/**
 * A shard replica: one member of a shard's Raft group with the shard store as its state machine.
 *
 *   <dataDir>/shard-<id>/raft     LmdbLogStorage (the Raft log and hard state)
 *   <dataDir>/shard-<id>/store    LmdbShardStore (the state machine; applied index inside)
 *   <dataDir>/shard-<id>/store-incoming, store-old   only during a snapshot install (docs/snapshots.md)
 *   <dataDir>/shard-<id>/images   temporary images this node serves to followers
 *
 * Writes are Raft proposals (resolved after commit + local apply: read-your-writes on the leader);
 * reads are linearizable (ReadIndex, then the local store once applied >= the read index) unless `stale`.
 * The log is compacted by the driver up to the store's durable applied index (never beyond it); the
 * Raft snapshot is a descriptor and images stream on demand (./store-snapshot.ts).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isTidemarkError, TidemarkError } from '../errors/index.js';
import { type DriverOptions, type DriverStatus, RaftDriver } from '../raft/driver.js';
import { type LmdbLogEnv, LmdbLogStorage } from '../raft/storage-lmdb.js';
import type { Transport } from '../raft/transport.js';
import type { NodeId, StateRole } from '../raft/types.js';
import { LmdbShardStore, type LmdbStoreOptions } from '../storage/lmdb-store.js';
import {
  type InstallFaultHook,
  recoverStoreSwap,
  STORE_DIR,
  type SwapRecovery,
} from '../storage/snapshot.js';
import type {
  ApplyResult,
  DeleteRequest,
  DeleteResult,
  SampleBatch,
  SelectRequest,
  SeriesData,
} from '../storage/store.js';
import {
  decodeRetention,
  type EntryCodec,
  entryCodec,
  type KafkaPosition,
  RETENTION_MS_KEY,
  type ShardPolicy,
} from './entry.js';
import { memberOfNode, nodeOfMember } from './member.js';
import { ShardStateMachine, type SnapshotPeers, type SnapshotSource } from './store-snapshot.js';
import { WriteMerger } from './write-merge.js';

/** Where a replica announces its image server (MemorySnapshotNetwork implements it). */
export interface SnapshotRegistry {
  register(node: NodeId, shard: number, source: SnapshotSource): void;
  unregister(node: NodeId, shard: number, source?: SnapshotSource): void;
}

/** Driver settings a replica passes through. */
export type ReplicaDriverOptions = Partial<
  Pick<
    DriverOptions,
    | 'tickMs'
    | 'electionTick'
    | 'heartbeatTick'
    | 'preVote'
    | 'checkQuorum'
    | 'readMode'
    | 'maxSizePerMsg'
    | 'maxInflightMsgs'
    | 'maxUncommittedEntriesSize'
    | 'maxCommittedSizePerReady'
    | 'random'
    | 'timers'
    | 'maxPendingProposals'
    | 'retryAfterMs'
    | 'proposalTimeoutMs'
    | 'readTimeoutMs'
    | 'compactThreshold'
  >
>;

export interface ShardReplicaOptions {
  shard: number;
  nodeId: NodeId;
  /** This replica's Raft member id (./member.ts); default the node id (the founding incarnation). */
  memberId?: string;
  dataDir: string;
  transport: Transport;
  /** Finds peers' image servers (snapshot install). */
  snapshotPeers: SnapshotPeers;
  /** If given, the replica registers its own image server there (and unregisters on close). */
  snapshotRegistry?: SnapshotRegistry;
  /**
   * Founding voters (member ids) of the group: the configuration of a brand-new (empty) log. Ignored once the
   * log has state. A replica joining an existing group later omits it (it learns the configuration from the
   * log or a snapshot).
   */
  voters?: NodeId[];
  storeOptions?: Partial<LmdbStoreOptions>;
  /** Keep the Raft log in this node-wide environment (shared fsyncs) instead of `<shard dir>/raft`. */
  logEnv?: LmdbLogEnv;
  /** Told when a possibly torn store (OS crash with unsynced commits) was moved to `aside` and rebuilt. */
  onStoreDiscarded?: (aside: string) => void;
  driver?: ReplicaDriverOptions;
  /** Store checkpoint period in ms (default 30,000; 0 disables). */
  checkpointIntervalMs?: number;
  /** Entry payload codec (default: the shard entry format, ./entry.ts and docs/format/batch.md). */
  codec?: EntryCodec;
  /** Chunk bound of images this replica serves (default 1 MiB). */
  snapshotChunkBytes?: number;
  /** How long a snapshot install keeps trying peers (default 60 s). */
  restoreTimeoutMs?: number;
  /** Crash injection during a snapshot install (tests). */
  installFaults?: InstallFaultHook;
  /** Called if the replica's driver stops on an unrecoverable error. */
  onFatal?: (err: unknown) => void;
}

/** A member's replication progress as the leader tracks it. */
export interface PeerProgress {
  match: number;
  recentActive: boolean;
  isLearner: boolean;
}

export interface WriteOptions {
  /** Absolute deadline (Date.now() ms): past it the call rejects DEADLINE_EXCEEDED (outcome unknown). */
  deadline?: number;
  /** The Kafka records the batch covers: applied only if they come next (the exactly-once rule). */
  kafka?: KafkaPosition;
}

export interface ReadOptions {
  /** Skip ReadIndex: read this replica's applied state (may miss acknowledged writes). */
  stale?: boolean;
  deadline?: number;
}

export interface ReplicaStatus {
  shard: number;
  nodeId: NodeId;
  role: StateRole;
  term: number;
  leader: NodeId | '';
  commit: number;
  /** What the driver has applied (visible to reads). */
  applied: number;
  /** The store's durable applied index (what survives a crash; the compaction bound). */
  durableApplied: number;
  firstIndex: number;
  lastIndex: number;
  installingSnapshot: boolean;
  /** What recoverStoreSwap found at open. */
  recovery: SwapRecovery;
  raft: DriverStatus;
}

function shardDirOf(dataDir: string, shard: number): string {
  return join(dataDir, `shard-${shard}`);
}

export class ShardReplica {
  private checkpointTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly codec: EntryCodec;
  readonly merger = new WriteMerger((batch) => this.proposeBatch(batch));
  /** This replica's Raft member id (the node id, or `<node>~<incarnation>` after a rejoin). */
  readonly memberId: string;

  private constructor(
    readonly shard: number,
    readonly nodeId: NodeId,
    readonly dir: string,
    private readonly opts: ShardReplicaOptions,
    private readonly log: LmdbLogStorage,
    /** The state machine (and this node's image server for the shard). */
    readonly stateMachine: ShardStateMachine,
    readonly driver: RaftDriver,
    private readonly recovery: SwapRecovery,
  ) {
    this.codec = opts.codec ?? entryCodec;
    this.memberId = opts.memberId ?? opts.nodeId;
  }

  /** Opens (creating if needed) the replica's directories, repairs an interrupted install, starts Raft. */
  static async open(options: ShardReplicaOptions): Promise<ShardReplica> {
    const opts: ShardReplicaOptions = {
      ...options,
      storeOptions: storeOptionsUnderRaft(options.storeOptions),
    };
    const dir = shardDirOf(opts.dataDir, opts.shard);
    mkdirSync(dir, { recursive: true });
    const recovery = await recoverStoreSwap(dir);
    await rm(join(dir, 'images'), { recursive: true, force: true });
    const ownLog = join(dir, 'raft');
    if (opts.logEnv !== undefined && existsSync(ownLog)) {
      throw new TidemarkError(
        'FAILED_PRECONDITION',
        'data_dir_layout_old',
        `${ownLog} is a per-shard Raft log of an older data-directory layout; this version keeps every shard's log in one environment per node. Start this node on an empty data directory (it is rebuilt from its peers)`,
        { dir: ownLog },
      );
    }
    const log = await LmdbLogStorage.open({
      path: ownLog,
      ...(opts.logEnv ? { env: opts.logEnv, name: `shard-${opts.shard}` } : {}),
      ...(opts.voters ? { conf: { voters: [...opts.voters], learners: [] } } : {}),
    });
    let store: LmdbShardStore;
    try {
      store = await openStore(join(dir, STORE_DIR), opts);
    } catch (err) {
      await log.close();
      throw err;
    }
    let driver: RaftDriver | undefined;
    const sm = new ShardStateMachine({
      shard: opts.shard,
      nodeId: opts.nodeId,
      shardDir: dir,
      store,
      ...(opts.storeOptions ? { storeOptions: opts.storeOptions } : {}),
      codec: opts.codec ?? entryCodec,
      peers: opts.snapshotPeers,
      members: () => {
        // Before the driver has started (a restore from RaftDriver.start) its conf is still empty.
        const live = driver?.status().conf;
        const c = live !== undefined && live.voters.length > 0 ? live : log.initialState().conf;
        return [...c.voters, ...c.learners].map(nodeOfMember);
      },
      termOf: (i) => log.term(i),
      ...(opts.snapshotChunkBytes ? { chunkBytes: opts.snapshotChunkBytes } : {}),
      ...(opts.restoreTimeoutMs ? { restoreTimeoutMs: opts.restoreTimeoutMs } : {}),
      ...(opts.installFaults ? { installFaults: opts.installFaults } : {}),
    });
    // A store can be ahead of the log only after a snapshot install whose image was newer than the Raft
    // snapshot (images are taken on demand). Report at most what the log knows is committed, so the
    // driver rebuilds the membership from the log and re-delivers the rest (duplicates by index: no-ops).
    const init = log.initialState();
    const ceiling = Math.max(init.hardState.commit, log.snapshotMeta().index);
    sm.ceiling = ceiling;
    // Set once the replica exists: the writes it merged while the driver was busy join the next cycle.
    let merged: WriteMerger | undefined;
    driver = new RaftDriver({
      id: opts.memberId ?? opts.nodeId,
      storage: log,
      transport: opts.transport,
      stateMachine: sm,
      ...opts.driver,
      pipelineApply: true,
      beforeCycle: () => merged?.flush(),
      ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
    });
    try {
      await driver.start();
    } catch (err) {
      await driver.stop().catch(() => {});
      await sm.close().catch(() => {});
      await log.close().catch(() => {});
      throw err;
    }
    sm.ceiling = Number.POSITIVE_INFINITY;
    const replica = new ShardReplica(opts.shard, opts.nodeId, dir, opts, log, sm, driver, recovery);
    merged = replica.merger;
    opts.snapshotRegistry?.register(opts.nodeId, opts.shard, sm);
    const every = opts.checkpointIntervalMs ?? 30_000;
    if (every > 0) {
      replica.checkpointTimer = setInterval(() => void replica.checkpoint().catch(() => {}), every);
      replica.checkpointTimer.unref();
    }
    return replica;
  }

  /** The live store (reads outside the replica API: stats, tests). Throws UNAVAILABLE during an install. */
  get store(): LmdbShardStore {
    return this.stateMachine.store;
  }

  /**
   * Proposes a batch. Resolves with the store's ApplyResult once committed and applied here. Errors:
   * NOT_LEADER (details.leaderHint), RESOURCE_EXHAUSTED (details.retryAfterMs; the bounded proposal
   * queue is full), UNAVAILABLE outcome_unknown, DEADLINE_EXCEEDED (outcome unknown), CLOSED.
   */
  write(batch: SampleBatch, options: WriteOptions = {}): Promise<ApplyResult> {
    // Plain writes made while the Raft loop is busy share an entry (write-merge.ts); a Kafka batch carries
    // its own offsets and stays one entry.
    const p =
      options.kafka === undefined && this.driver.busy
        ? this.merger.add(batch)
        : this.proposeBatch(batch, options.kafka);
    return this.withDeadline(p, options.deadline, 'write');
  }

  private proposeBatch(batch: SampleBatch, kafka?: KafkaPosition): Promise<ApplyResult> {
    const data = this.codec.encode(kafka ? { kind: 'batch', batch, kafka } : { kind: 'batch', batch });
    return this.driver.propose(data).catch(nodeHint) as Promise<ApplyResult>;
  }

  /** Proposes a policy entry (same semantics as write): every replica applies it at the same index. */
  setPolicy(policy: ShardPolicy, options: WriteOptions = {}): Promise<unknown> {
    const data = this.codec.encode({ kind: 'policy', policy });
    return this.withDeadline(this.driver.propose(data).catch(nodeHint), options.deadline, 'write');
  }

  /** The retention this replica applies: its shard's replicated policy, else `fallback` (the node setting). */
  retentionMs(fallback: number): number {
    return decodeRetention(this.stateMachine.store.getMeta(RETENTION_MS_KEY)) ?? fallback;
  }

  /** Proposes a delete (same semantics as write). */
  delete(request: DeleteRequest, options: WriteOptions = {}): Promise<DeleteResult> {
    const data = this.codec.encode({ kind: 'delete', request });
    return this.withDeadline(
      this.driver.propose(data).catch(nodeHint),
      options.deadline,
      'delete',
    ) as Promise<DeleteResult>;
  }

  /**
   * Selects from this replica. Linearizable by default: ReadIndex through the leader (works on followers),
   * then waits until applied >= the read index; `stale` reads the local state directly.
   */
  /**
   * Waits until the local store reflects every write acknowledged before the call (ReadIndex), unless
   * `stale`; then returns the store for reads in the same event-loop turn (or later, seeing newer data).
   */
  async readBarrier(options: ReadOptions = {}): Promise<LmdbShardStore> {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'shard replica is closed');
    if (!options.stale)
      await this.withDeadline(this.driver.readIndex().catch(nodeHint), options.deadline, 'read');
    return this.stateMachine.store;
  }

  async read(request: SelectRequest, options: ReadOptions = {}): Promise<SeriesData[]> {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'shard replica is closed');
    if (!options.stale)
      await this.withDeadline(this.driver.readIndex().catch(nodeHint), options.deadline, 'read');
    return this.stateMachine.store.select(request);
  }

  status(): ReplicaStatus {
    const s = this.driver.status();
    let durable = -1;
    try {
      durable = this.stateMachine.store.appliedIndex();
    } catch {
      durable = -1;
    }
    return {
      shard: this.shard,
      nodeId: this.nodeId,
      role: s.role,
      term: s.term,
      leader: s.leader === '' ? '' : nodeOfMember(s.leader),
      commit: s.commit,
      applied: s.applied,
      durableApplied: durable,
      firstIndex: s.firstIndex,
      lastIndex: s.lastIndex,
      installingSnapshot: this.stateMachine.isInstalling(),
      recovery: this.recovery,
      raft: s,
    };
  }

  isLeader(): boolean {
    return this.driver.isLeader();
  }

  /** The node of the shard's leader ('' when unknown). */
  leader(): NodeId | '' {
    const l = this.driver.leader();
    return l === '' ? '' : nodeOfMember(l);
  }

  /**
   * The driver's status in node terms: leader as a node id, configuration as node ids (during a rejoin a
   * node has two members, its old voter and its new learner: it is listed once, where its newest member is).
   */
  raftStatus(): DriverStatus {
    const s = this.driver.status();
    const voters = s.conf.voters.map(nodeOfMember);
    const learners = s.conf.learners.map(nodeOfMember).filter((n) => !voters.includes(n));
    return {
      ...s,
      leader: s.leader === '' ? '' : nodeOfMember(s.leader),
      conf: { voters: [...new Set(voters)], learners: [...new Set(learners)] },
    };
  }

  /** The member id of `node` in this group's configuration (voters first), if it has one. */
  memberOf(node: NodeId): string | undefined {
    const c = this.driver.status().conf;
    return memberOfNode(c.voters, node) ?? memberOfNode(c.learners, node);
  }

  /**
   * The leader's view of each member's replication progress (empty on a follower), keyed by member id, and
   * the leader's last log index.
   */
  progress(): { members: Map<string, PeerProgress>; lastIndex: number } {
    const core = this.driver.coreStatus() as
      | { progress?: Map<string, PeerProgress>; lastIndex: number }
      | undefined;
    return { members: core?.progress ?? new Map(), lastIndex: core?.lastIndex ?? 0 };
  }

  /** Progress of the replica on `node` (its member in the configuration), on the leader. */
  progressOf(node: NodeId): PeerProgress | undefined {
    const m = this.memberOf(node);
    return m === undefined ? undefined : this.progress().members.get(m);
  }

  /** Hands leadership to the replica on `node` (a voter). */
  transferLeader(to: NodeId): void {
    this.driver.transferLeader(this.memberOf(to) ?? to);
  }

  campaign(): void {
    this.driver.campaign();
  }

  /**
   * Checkpoints the store (persists the head, truncates its write-ahead records). Log truncation follows
   * in the driver (compactThreshold), bounded by the store's durable applied index.
   */
  async checkpoint(): Promise<void> {
    if (this.closed || this.stateMachine.isInstalling()) return;
    await this.stateMachine.store.checkpoint();
  }

  /** Stops Raft, then closes the store (checkpointing it) and the log. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    this.opts.snapshotRegistry?.unregister(this.nodeId, this.shard, this.stateMachine);
    await this.driver.stop();
    try {
      // A clean stop leaves the data once on disk: checkpoint the store, drop the log up to it.
      if (!this.stateMachine.isInstalling()) {
        await this.driver.compactAfterStop();
        await this.log.collectAllGarbage();
      }
    } catch {
      // Best effort: the log then keeps those entries, as after a crash; nothing is lost.
    }
    try {
      await this.stateMachine.close();
    } catch (err) {
      if (!isTidemarkError(err, 'CLOSED')) throw err;
    } finally {
      await this.log.close();
    }
  }

  private withDeadline<T>(p: Promise<T>, deadline: number | undefined, what: string): Promise<T> {
    if (deadline === undefined) return p;
    const left = deadline - Date.now();
    if (left <= 0) {
      p.catch(() => {});
      return Promise.reject(
        new TidemarkError('DEADLINE_EXCEEDED', 'deadline_exceeded', `${what} deadline already passed`, {
          outcome: what === 'read' ? 'none' : 'unknown',
        }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        p.catch(() => {});
        reject(
          new TidemarkError(
            'DEADLINE_EXCEEDED',
            'deadline_exceeded',
            `${what} did not complete before its deadline`,
            {
              outcome: what === 'read' ? 'none' : 'unknown',
            },
          ),
        );
      }, left);
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e) => {
          clearTimeout(t);
          reject(e);
        },
      );
    });
  }
}

/**
 * A store under Raft without a sync interval syncs pipelined (fsync off the event loop, docs/format/store.md
 * "Pipelined sync"): its durable index lags one commit, which the log covers — it is fsync'd before apply
 * and never compacted past the store's durable index — and it never tears on an OS crash, so a replica
 * with no peer (R=1) still recovers everything acknowledged.
 */
function storeOptionsUnderRaft(o: Partial<LmdbStoreOptions> | undefined): Partial<LmdbStoreOptions> {
  // The log is the store's write-ahead log (externalLog): no second copy of every sample.
  return (o?.syncIntervalMs ?? 0) === 0
    ? { pipelinedSync: true, externalLog: true, ...o, syncIntervalMs: 0 }
    : { externalLog: true, ...o };
}

/** Rewrites a NOT_LEADER hint from a Raft member id to the node clients and forwarders address. */
function nodeHint(err: unknown): never {
  if (isTidemarkError(err, 'NOT_LEADER') && typeof err.details.leaderHint === 'string') {
    const node = nodeOfMember(err.details.leaderHint);
    if (node !== err.details.leaderHint) {
      throw new TidemarkError(err.code, err.reason, err.message, { ...err.details, leaderHint: node });
    }
  }
  throw err;
}

/**
 * Opens the shard store. A store that an OS crash may have torn (deferred sync, `store_unsynced_os_restart`)
 * is set aside and replaced by an empty one: the Raft log and its hard state live in their own fsync'd
 * environment and are intact, so the replica keeps its identity and votes, and the driver refills the store
 * from the log, or from a peer's image when the log was compacted (RaftDriver.start → restore).
 */
async function openStore(path: string, opts: ShardReplicaOptions): Promise<LmdbShardStore> {
  try {
    return await LmdbShardStore.open(path, opts.storeOptions);
  } catch (err) {
    if (!isTidemarkError(err, 'FAILED_PRECONDITION') || err.reason !== 'store_unsynced_os_restart') throw err;
    const aside = `${path}.torn-${Date.now()}`;
    await rename(path, aside);
    opts.onStoreDiscarded?.(aside);
    return LmdbShardStore.open(path, opts.storeOptions);
  }
}
