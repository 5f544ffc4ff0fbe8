/**
 * The Raft driver: runs a pure core (RawNode) against real time, a durable LogStorage, a Transport and a
 * StateMachine.
 *
 * One loop, serialized (one Ready at a time), in the order types.ts documents:
 *   0. feed the core what arrived since the last cycle: incoming messages, elapsed ticks, queued
 *      proposals / reads / admin requests (nothing touches the core while a Ready is in flight);
 *   1. persist the Ready's snapshot, entries and hard state, and wait until durable;
 *   2. send its messages;
 *   3. install its snapshot into the state machine, apply its committed entries (resolving the
 *      proposals they carry) and note its read states. With pipelineApply, committed entries that were
 *      durable here before this Ready (persisted by an earlier one) are issued during step 1 instead:
 *      they do not depend on its write, so the write and their apply overlap;
 *   4. advance the core;
 *   5. compact the log if applied - firstIndex exceeds the threshold.
 * Proposals arriving while step 1 is in flight queue up and go into the core together at the start of
 * the next cycle, so one durable write (and one append message per follower) carries the whole batch.
 */
import {
  closed,
  invalidArgument,
  isTidemarkError,
  notLeader,
  outcomeUnknown,
  resourceExhausted,
  TidemarkError,
} from '../errors/errors.js';
import { decodeConfChange, encodeConfChange } from './conf-change.js';
import { RawNode } from './core.js';
import type { SnapshotLogStorage } from './storage-memory.js';
import type { Transport, TransportReport } from './transport.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type LogReader,
  type Message,
  MessageType,
  type NodeId,
  type Ready,
  type SoftState,
  type StateMachine,
  StateRole,
} from './types.js';

/** The core's configuration as the driver builds it. */
export interface RaftCoreConfig {
  id: NodeId;
  storage: LogReader;
  electionTick: number;
  heartbeatTick: number;
  /** Uniform [0, 1) source for election jitter. */
  random: () => number;
  /** Index of the last entry the state machine has applied (entries after it will be re-delivered). */
  applied: number;
  preVote: boolean;
  checkQuorum: boolean;
  /** How the leader confirms reads (core.ts Config.readMode; default 'index'). */
  readMode?: 'index' | 'lease';
  /** Max bytes of entries per append message. */
  maxSizePerMsg?: number;
  /** Max in-flight append messages per follower. */
  maxInflightMsgs?: number;
  /** Max bytes in flight per follower (0 = no limit). */
  maxInflightBytes?: number;
  /** Payload bytes the leader accepts beyond what has been applied. */
  maxUncommittedEntriesSize?: number;
  /** Max bytes of committed entries per Ready. */
  maxCommittedSizePerReady?: number;
}

/** What the driver needs from the pure core (a RawNode). */
export interface RaftCore {
  tick(): void;
  step(msg: Message): void;
  /**
   * Appends one entry per element (leader only; throws NOT_LEADER otherwise) and returns the index and
   * term of the last one: the entries are at index - n + 1 .. index.
   */
  propose(data: Uint8Array | Uint8Array[]): Proposed;
  proposeConfChange(cc: ConfChange): Proposed;
  campaign(): void;
  transferLeader(to: NodeId): void;
  readIndex(ctx: Uint8Array): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(): void;
  applyConfChange(cc: ConfChange): ConfState;
  reportUnreachable(id: NodeId): void;
  reportSnapshot(id: NodeId, ok: boolean): void;
  status(): unknown;
}

export interface Proposed {
  index: number;
  term: number;
}

export type RaftCoreFactory = (config: RaftCoreConfig) => RaftCore;

/** The default core: the pure RawNode of ./core.ts. */
export const rawNodeFactory: RaftCoreFactory = (config) => new RawNode(config);

/** Injectable time (tests use a manual clock). */
export interface DriverTimers {
  now(): number;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const realTimers: DriverTimers = {
  now: () => performance.now(),
  // Not unref'd: a running driver keeps the process alive until stop().
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export interface DriverOptions {
  id: NodeId;
  storage: SnapshotLogStorage;
  transport: Transport;
  stateMachine: StateMachine;
  /** Builds the core (default: RawNode). */
  createCore?: RaftCoreFactory;
  /** Milliseconds per core tick (default 100). */
  tickMs?: number;
  /** Ticks without a leader before campaigning (default 10). */
  electionTick?: number;
  /** Ticks between leader heartbeats (default 1). */
  heartbeatTick?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /**
   * 'lease': a leader answers read indexes from its lease without a heartbeat round (needs checkQuorum;
   * assumptions in src/raft/read-only.ts); its ticks then follow the monotonic clock. Default 'index'.
   */
  readMode?: 'index' | 'lease';
  /** Passed to the core (see RaftCoreConfig). */
  maxSizePerMsg?: number;
  maxInflightMsgs?: number;
  maxInflightBytes?: number;
  maxUncommittedEntriesSize?: number;
  maxCommittedSizePerReady?: number;
  random?: () => number;
  timers?: DriverTimers;
  /** Max proposals queued or awaiting commit+apply (default 10,000); beyond it propose() is refused. */
  maxPendingProposals?: number;
  /** retryAfterMs suggested when the proposal queue is full (default 50). */
  retryAfterMs?: number;
  /** Proposals not applied within this many ms are rejected with DEADLINE_EXCEEDED (default 30,000). */
  proposalTimeoutMs?: number;
  /** readIndex() requests not served within this many ms are rejected (default 10,000). */
  readTimeoutMs?: number;
  /** Compact when applied - firstIndex exceeds this many entries (default 10,000; 0 disables). */
  compactThreshold?: number;
  /** Called once if the driver stops because of an unrecoverable error (e.g. a failed durable write). */
  onFatal?: (err: unknown) => void;
  /**
   * Issue every committed entry of a Ready to the state machine before awaiting any of them (default
   * false: await each apply in turn). For state machines that group-commit the applies issued in one
   * event-loop turn (the shard store): one durable write per Ready instead of one per entry. Only for
   * state machines whose applies complete in issue order and that cannot apply entry i+1 after failing
   * entry i (a failed apply stops the driver either way).
   */
  pipelineApply?: boolean;
  /**
   * Called at the start of every cycle, just before queued proposals go into the core: a caller that
   * gathers proposals while the driver is busy (ShardReplica's write merging) proposes them here, so they
   * make this cycle instead of waiting for another.
   */
  beforeCycle?: () => void;
}

export interface DriverStatus {
  id: NodeId;
  role: StateRole;
  leader: NodeId | '';
  term: number;
  vote: NodeId | '';
  commit: number;
  applied: number;
  firstIndex: number;
  lastIndex: number;
  conf: ConfState;
  pendingProposals: number;
  pendingReads: number;
  stopped: boolean;
  /** Counters: Readys handled, entries persisted, proposals applied, compactions. */
  stats: DriverStats;
}

export interface DriverStats {
  readies: number;
  persistedEntries: number;
  appliedEntries: number;
  proposalsResolved: number;
  compactions: number;
}

interface Pending {
  type: EntryType;
  data: Uint8Array;
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
  deadline: number;
  index: number; // 0 until the core assigned one
  term: number;
  done: boolean;
}

interface PendingRead {
  key: string;
  ctx: Uint8Array;
  resolve: (index: number) => void;
  reject: (err: unknown) => void;
  deadline: number;
  index: number; // -1 until the core returned a read state
}

type AdminOp = (core: RaftCore) => void;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

export class RaftDriver {
  readonly id: NodeId;
  private readonly storage: SnapshotLogStorage;
  private readonly transport: Transport;
  private readonly sm: StateMachine;
  private readonly timers: DriverTimers;
  private readonly opts: Required<
    Pick<
      DriverOptions,
      | 'tickMs'
      | 'maxPendingProposals'
      | 'retryAfterMs'
      | 'proposalTimeoutMs'
      | 'readTimeoutMs'
      | 'compactThreshold'
      | 'pipelineApply'
    >
  >;
  private readonly onFatal: ((err: unknown) => void) | undefined;
  private readonly beforeCycle: (() => void) | undefined;
  private core: RaftCore | undefined;
  private readonly createCore: RaftCoreFactory;
  private readonly coreConfig: Omit<RaftCoreConfig, 'applied'>;

  // Inputs accumulated between cycles.
  private inbox: Message[] = [];
  private reports: TransportReport[] = [];
  private pendingTicks = 0;
  /** Monotonic time of the last tick counted (lease-mode leaders count ticks from the clock). */
  private tickBase = 0;
  private proposalQueue: Pending[] = [];
  private confQueue: Pending[] = [];
  private readQueue: PendingRead[] = [];
  private adminQueue: AdminOp[] = [];

  // Proposals handed to the core, waiting for commit + apply, by log index (ascending insertion order).
  private byIndex = new Map<number, Pending>();
  private pendingCount = 0;
  private reads = new Map<string, PendingRead>();
  private readCounter = 0;

  private soft: SoftState = { lead: '', role: StateRole.Follower };
  private hard: HardState = { term: 0, vote: '', commit: 0 };
  private applied = 0;
  private conf: ConfState = { voters: [], learners: [] };
  /** Membership as of each applied change since the last compaction (conf as of a given index). */
  private confLog: Array<{ index: number; conf: ConfState }> = [];

  private started = false;
  private stopped = false;
  private running = false;
  private scheduled = false;
  private loopDone: Promise<void> = Promise.resolve();
  /** The last commit-only hard state save, not waited for by the loop (stop() waits for it). */
  private lazySave: Promise<void> = Promise.resolve();
  /** pipelineApply: the applies of the last Ready, while they run (never rejects: a failure stops the driver). */
  private applying: Promise<void> | undefined;
  /** The last log index this node has made durable (entries of Readys already persisted). */
  private stableIndex = 0;
  /** A StateMachine.persist() requested by maybeCompact is running. */
  private persisting = false;
  /** A persist() finished: the loop checks compaction even without a Ready. */
  private compactDue = false;
  /** The applied index when persist() was last asked for. */
  private persistAsked = 0;
  private tickHandle: unknown;
  private fatal: unknown;
  private timing: ((kind: 'commit' | 'apply', ms: number) => void) | undefined;
  private readonly stats: DriverStats = {
    readies: 0,
    persistedEntries: 0,
    appliedEntries: 0,
    proposalsResolved: 0,
    compactions: 0,
  };

  constructor(options: DriverOptions) {
    this.id = options.id;
    this.storage = options.storage;
    this.transport = options.transport;
    this.sm = options.stateMachine;
    this.timers = options.timers ?? realTimers;
    this.createCore = options.createCore ?? rawNodeFactory;
    this.onFatal = options.onFatal;
    this.beforeCycle = options.beforeCycle;
    const electionTick = options.electionTick ?? 10;
    const tickMs = options.tickMs ?? 100;
    this.opts = {
      tickMs,
      maxPendingProposals: options.maxPendingProposals ?? 10_000,
      retryAfterMs: options.retryAfterMs ?? 50,
      proposalTimeoutMs: options.proposalTimeoutMs ?? 30_000,
      readTimeoutMs: options.readTimeoutMs ?? 10_000,
      compactThreshold: options.compactThreshold ?? 10_000,
      pipelineApply: options.pipelineApply ?? false,
    };
    this.coreConfig = {
      id: options.id,
      storage: options.storage,
      electionTick,
      heartbeatTick: options.heartbeatTick ?? 1,
      random: options.random ?? Math.random,
      preVote: options.preVote ?? true,
      checkQuorum: options.checkQuorum ?? true,
      ...(options.readMode === 'lease' ? { readMode: 'lease' as const } : {}),
    };
    for (const k of [
      'maxSizePerMsg',
      'maxInflightMsgs',
      'maxInflightBytes',
      'maxUncommittedEntriesSize',
      'maxCommittedSizePerReady',
    ] as const) {
      if (options[k] !== undefined) this.coreConfig[k] = options[k];
    }
  }

  /**
   * Brings the state machine up to the log's snapshot if it is behind it, creates the core, re-applies
   * membership changes in (snapshot, applied], starts ticking and receiving.
   */
  async start(): Promise<void> {
    if (this.started)
      throw new TidemarkError('FAILED_PRECONDITION', 'already_started', 'raft driver already started');
    this.started = true;
    const snapMeta = this.storage.snapshotMeta();
    if (this.sm.appliedIndex() < snapMeta.index) {
      await this.sm.restore(this.storage.snapshot());
    }
    this.applied = this.sm.appliedIndex();
    let init = this.storage.initialState();
    if (this.applied > init.hardState.commit && this.applied <= this.storage.lastIndex()) {
      // Commit-only hard states are saved without waiting (handleReady), so after a crash the state
      // machine may have durably applied entries past the durable commit index. They were committed (only
      // committed entries are applied): record that before the core starts (it refuses applied > commit).
      await this.storage.save({ ...init.hardState, commit: this.applied }, []);
      init = this.storage.initialState();
    }
    this.hard = { ...init.hardState };
    this.stableIndex = this.storage.lastIndex();
    this.conf = init.conf;
    this.confLog = [{ index: snapMeta.index, conf: init.conf }];
    const core = this.createCore({ ...this.coreConfig, applied: this.applied });
    // Membership changes already applied by the state machine but after the snapshot: replay into the core.
    const from = Math.max(snapMeta.index + 1, this.storage.firstIndex());
    const to = Math.min(this.applied, this.storage.lastIndex());
    if (from <= to) {
      for (const e of this.storage.entries(from, to + 1)) {
        if (e.type === EntryType.ConfChange)
          this.setConf(e.index, core.applyConfChange(decodeConfChange(e.data)));
      }
    }
    this.transport.onMessage((m) => {
      if (this.stopped) return;
      this.inbox.push(m);
      this.schedule();
    });
    this.transport.onReport?.((r) => {
      if (this.stopped) return;
      this.reports.push(r);
      this.schedule();
    });
    this.core = core;
    this.tickHandle = this.timers.setInterval(() => this.onTick(), this.opts.tickMs);
    this.schedule();
  }

  /**
   * Proposes `data` for the log. Resolves with the state machine's apply result once the entry is
   * committed and applied on this node; rejects with NOT_LEADER (details.leaderHint) when this node is not
   * the leader or loses leadership first, RESOURCE_EXHAUSTED (retryAfterMs) when the queue is full.
   */
  propose(data: Uint8Array): Promise<unknown> {
    if (data.length === 0) {
      // Empty normal entries are the leader's no-ops, never applied: refuse them up front.
      return Promise.reject(invalidArgument('empty_proposal', 'data', 'a raft proposal must not be empty'));
    }
    const err = this.admissionError();
    if (err) return Promise.reject(err);
    return new Promise((resolve, reject) => {
      this.pendingCount++;
      this.proposalQueue.push(this.newPending(EntryType.Normal, data, resolve, reject));
      this.schedule();
    });
  }

  /** Proposes a membership change; resolves with the new ConfState once applied. */
  proposeConfChange(cc: ConfChange): Promise<ConfState> {
    const err = this.admissionError();
    if (err) return Promise.reject(err);
    return new Promise((resolve, reject) => {
      this.pendingCount++;
      this.confQueue.push(
        this.newPending(EntryType.ConfChange, encodeConfChange(cc), resolve as (v: unknown) => void, reject),
      );
      this.schedule();
    });
  }

  /**
   * Linearizable read barrier: resolves (with the read index) once this node's state machine has applied
   * everything committed before the call, so a local read then sees all acknowledged writes.
   */
  readIndex(): Promise<number> {
    if (this.stopped) return Promise.reject(this.stoppedError());
    if (this.soft.role !== StateRole.Leader && this.soft.lead === '') {
      return Promise.reject(notLeader(undefined, 'no known leader to confirm the read'));
    }
    return new Promise((resolve, reject) => {
      const n = this.readCounter++;
      const key = `${this.id}/${n}`;
      const ctx = textEncoder.encode(key);
      const r: PendingRead = {
        key,
        ctx,
        resolve,
        reject,
        deadline: this.timers.now() + this.opts.readTimeoutMs,
        index: -1,
      };
      this.reads.set(key, r);
      this.readQueue.push(r);
      this.schedule();
    });
  }

  /**
   * A Ready is being handled (persisted, sent, applied): a proposal made now joins the core at the start of
   * the next cycle, not sooner. Callers may gather proposals meanwhile (ShardReplica merges writes).
   */
  get busy(): boolean {
    return this.running;
  }

  /** Asks the leader to hand leadership to `to` (takes effect asynchronously). */
  transferLeader(to: NodeId): void {
    this.admin((core) => core.transferLeader(to));
  }

  /** Starts an election now. */
  campaign(): void {
    this.admin((core) => core.campaign());
  }

  status(): DriverStatus {
    return {
      id: this.id,
      role: this.soft.role,
      leader: this.soft.lead,
      term: this.hard.term,
      vote: this.hard.vote,
      commit: this.hard.commit,
      applied: this.applied,
      firstIndex: this.storage.firstIndex(),
      lastIndex: this.storage.lastIndex(),
      conf: { voters: [...this.conf.voters], learners: [...this.conf.learners] },
      pendingProposals: this.pendingCount,
      pendingReads: this.reads.size,
      stopped: this.stopped,
      stats: { ...this.stats },
    };
  }

  /**
   * Read-only latency feed for metrics (ms): `commit` = one of this node's proposals from propose() until it
   * is committed and about to apply; `apply` = one state-machine apply of a normal entry. One observer.
   */
  onTimings(fn: ((kind: 'commit' | 'apply', ms: number) => void) | undefined): void {
    this.timing = fn;
  }

  /** The core's own status (for debugging). */
  coreStatus(): unknown {
    return this.core?.status();
  }

  isLeader(): boolean {
    return this.soft.role === StateRole.Leader;
  }

  leader(): NodeId | '' {
    return this.soft.lead;
  }

  /**
   * Stops ticking and receiving, waits for the Ready in flight to finish (so nothing half-persisted is
   * left behind), rejects everything pending with CLOSED and closes the transport. The storage and the
   * state machine belong to the caller.
   */
  async stop(): Promise<void> {
    if (this.stopped) {
      await this.loopDone;
      return;
    }
    this.stopped = true;
    if (this.tickHandle !== undefined) this.timers.clearInterval(this.tickHandle);
    await this.loopDone;
    await this.applying;
    await this.lazySave.catch(() => {});
    this.rejectAll(this.stoppedError());
    await this.transport.close();
  }

  /**
   * After stop(), on a clean shutdown: makes the state machine durable (persist) and compacts the log up to
   * it, so a stopped node keeps its data once (in the state machine) rather than twice. Followers that lag
   * this node then catch up from their leader's log or by snapshot, as after any compaction.
   */
  async compactAfterStop(): Promise<void> {
    if (!this.stopped)
      throw new TidemarkError('FAILED_PRECONDITION', 'driver_running', 'stop() the driver first');
    if (this.fatal !== undefined || this.opts.compactThreshold <= 0) return; // 0: never compact
    if (this.sm.persist) await this.sm.persist();
    const at = Math.min(this.sm.appliedIndex(), this.applied);
    if (at < this.storage.firstIndex()) return;
    const data = await this.sm.snapshot();
    await this.storage.compact(at, this.confAt(at), data);
    this.stats.compactions++;
  }

  // --- internals ---

  private admissionError(): TidemarkError | undefined {
    if (this.stopped) return this.stoppedError();
    if (this.soft.role !== StateRole.Leader) {
      return notLeader(this.soft.lead || undefined);
    }
    if (this.pendingCount >= this.opts.maxPendingProposals) {
      return resourceExhausted(
        'raft_proposal_queue_full',
        `raft proposal queue is full (${this.pendingCount} pending)`,
        this.opts.retryAfterMs,
      );
    }
    return undefined;
  }

  private newPending(
    type: EntryType,
    data: Uint8Array,
    resolve: (v: unknown) => void,
    reject: (e: unknown) => void,
  ): Pending {
    return {
      type,
      data,
      resolve,
      reject,
      deadline: this.timers.now() + this.opts.proposalTimeoutMs,
      index: 0,
      term: 0,
      done: false,
    };
  }

  private stoppedError(): TidemarkError {
    if (this.fatal !== undefined) {
      return new TidemarkError(
        'UNAVAILABLE',
        'raft_driver_failed',
        'raft driver stopped after a fatal error',
        {},
        this.fatal,
      );
    }
    return closed('raft driver');
  }

  private admin(op: AdminOp): void {
    if (this.stopped) return;
    this.adminQueue.push(op);
    this.schedule();
  }

  private onTick(): void {
    if (this.stopped) return;
    this.pendingTicks += this.dueTicks(true);
    this.schedule();
    this.expire();
  }

  /**
   * Ticks to feed now: one per timer fire, except on a lease-mode leader, which counts whole tick periods
   * of the monotonic clock: timers that fire late (a stalled event loop) must not stretch its lease in
   * real time beyond the followers' election timers (src/raft/read-only.ts).
   */
  private dueTicks(timer: boolean): number {
    const now = this.timers.now();
    if (this.coreConfig.readMode !== 'lease' || this.soft.role !== StateRole.Leader) {
      if (timer) this.tickBase = now;
      return timer ? 1 : 0;
    }
    const due = Math.floor((now - this.tickBase) / this.opts.tickMs);
    if (due <= 0) return 0;
    this.tickBase += due * this.opts.tickMs;
    return due;
  }

  /** Rejects proposals and reads past their deadline. */
  private expire(): void {
    const now = this.timers.now();
    const timedOut = (what: string) =>
      new TidemarkError('DEADLINE_EXCEEDED', 'raft_timeout', `raft ${what} timed out`);
    for (const [key, r] of this.reads) {
      if (r.deadline <= now) {
        this.reads.delete(key);
        r.reject(timedOut('read index'));
      }
    }
    // byIndex is in proposal order: the oldest come first.
    for (const [index, p] of this.byIndex) {
      if (p.deadline > now) break;
      this.byIndex.delete(index);
      this.finish(p, undefined, timedOut('proposal'));
    }
  }

  private schedule(): void {
    if (this.scheduled || this.running || this.stopped || this.core === undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.running || this.stopped) return;
      this.loopDone = this.loop();
    });
  }

  private async loop(): Promise<void> {
    const core = this.core!;
    this.running = true;
    try {
      while (!this.stopped) {
        this.beforeCycle?.();
        this.feed(core);
        if (!core.hasReady()) {
          // A checkpoint the state machine finished while idle: compact now, not at the next Ready.
          if (this.compactDue) {
            this.compactDue = false;
            await this.maybeCompact();
          }
          break;
        }
        const rd = core.ready();
        await this.handleReady(core, rd);
        if (this.stopped) return;
        core.advance();
        await this.maybeCompact();
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.running = false;
    }
    // Inputs that arrived after the last feed() but before running was cleared.
    if (!this.stopped && this.hasInput()) this.schedule();
  }

  private hasInput(): boolean {
    return (
      this.inbox.length > 0 ||
      this.reports.length > 0 ||
      this.pendingTicks > 0 ||
      this.proposalQueue.length > 0 ||
      this.confQueue.length > 0 ||
      this.readQueue.length > 0 ||
      this.adminQueue.length > 0 ||
      this.compactDue
    );
  }

  /** Step 0: hands the core everything that arrived since the last cycle. */
  private feed(core: RaftCore): void {
    // A lease-mode leader's clock catches up first: reads below (local or forwarded in the inbox) are
    // judged against its lease, which must not outlast real time.
    const due = this.dueTicks(false);
    for (let i = 0; i < due; i++) core.tick();
    if (this.inbox.length > 0) {
      const msgs = this.inbox;
      this.inbox = [];
      for (const m of msgs) {
        try {
          core.step(m);
        } catch (err) {
          // A message the core refuses (stale, unknown peer) is dropped; anything else is a bug.
          if (!isTidemarkError(err) || err.code === 'INTERNAL' || err.code === 'DATA_CORRUPTION') throw err;
        }
      }
    }
    if (this.reports.length > 0) {
      const reports = this.reports;
      this.reports = [];
      for (const r of reports) {
        if (r.kind === 'unreachable') core.reportUnreachable(r.to);
        else core.reportSnapshot(r.to, r.ok);
      }
    }
    while (this.pendingTicks > 0) {
      this.pendingTicks--;
      core.tick();
    }
    if (this.adminQueue.length > 0) {
      const ops = this.adminQueue;
      this.adminQueue = [];
      for (const op of ops) {
        try {
          op(core);
        } catch {
          // transferLeader/campaign on a node that cannot do it: nothing to report to anyone.
        }
      }
    }
    if (this.confQueue.length > 0) {
      const q = this.confQueue;
      this.confQueue = [];
      for (const p of q) {
        if (p.done) continue;
        try {
          const res = core.proposeConfChange(decodeConfChange(p.data));
          this.track(p, res.index, res.term);
        } catch (err) {
          this.finish(p, undefined, this.withHint(err));
        }
      }
    }
    if (this.proposalQueue.length > 0) {
      // The whole batch goes into the core as one proposal: one log append, one Ready.
      const q = this.proposalQueue.filter((p) => !p.done);
      this.proposalQueue = [];
      if (q.length > 0) {
        try {
          const res = core.propose(q.map((p) => p.data));
          const first = res.index - q.length + 1;
          for (let i = 0; i < q.length; i++) this.track(q[i], first + i, res.term);
        } catch (err) {
          const e = this.withHint(err);
          for (const p of q) this.finish(p, undefined, e);
        }
      }
    }
    if (this.readQueue.length > 0) {
      const q = this.readQueue;
      this.readQueue = [];
      for (const r of q) {
        if (!this.reads.has(r.key)) continue; // timed out meanwhile
        try {
          core.readIndex(r.ctx);
        } catch (err) {
          this.reads.delete(r.key);
          r.reject(this.withHint(err));
        }
      }
    }
  }

  private track(p: Pending, index: number, term: number): void {
    p.index = index;
    p.term = term;
    this.byIndex.set(index, p);
  }

  /** NOT_LEADER errors from the core get this node's idea of the leader as a hint. */
  private withHint(err: unknown): unknown {
    if (isTidemarkError(err, 'NOT_LEADER') && err.details.leaderHint === undefined) {
      const lead = this.soft.lead;
      return notLeader(lead && lead !== this.id ? lead : undefined, err.message);
    }
    return err;
  }

  private async handleReady(core: RaftCore, rd: Ready): Promise<void> {
    this.stats.readies++;
    if (rd.softState) {
      const leaderChanged = rd.softState.lead !== this.soft.lead;
      this.soft = { ...rd.softState };
      // Read requests not yet answered are lost with the leader that was to answer them.
      if (leaderChanged) this.rejectUnansweredReads();
    }

    // A leader's appends and heartbeats may leave while it writes the same entries locally (the core
    // counts the leader's own acknowledgement only in advance(), once durable): the followers' disk
    // writes overlap the leader's instead of following it. Only when nothing in the Ready depends on
    // state still being persisted: no snapshot, no term or vote change, nothing but App / Heartbeat.
    const early = this.canSendEarly(rd);
    if (early) this.send(rd.messages);

    // 1. Persist, durably.
    if (rd.snapshot) {
      await this.storage.applySnapshot(rd.snapshot);
      this.stableIndex = rd.snapshot.meta.index;
    }
    let committed = rd.committedEntries;
    if (rd.entries.length > 0 || rd.hardState) {
      const saved = this.storage.save(rd.hardState, rd.entries);
      this.stats.persistedEntries += rd.entries.length;
      // 3a. Committed entries this node had made durable in earlier Readys do not depend on this write: they
      // apply while it is in flight, as etcd's server applies on its own goroutine while the next Ready
      // persists. Under load each proposal is then answered one log write sooner (its commit arrives with
      // the next proposals' entries, whose write it no longer waits for). Only entries on disk as they are
      // here: a follower's Ready may commit the very entries it is persisting, or entries that replace a
      // conflicting (never committed) suffix it had persisted, so the durable prefix ends before them.
      if (this.opts.pipelineApply && !rd.snapshot && committed.length > 0 && rd.entries.length > 0) {
        const durable = Math.min(this.stableIndex, rd.entries[0].index - 1);
        let k = 0;
        while (k < committed.length && committed[k].index <= durable) k++;
        if (k > 0) {
          if (this.applying !== undefined) {
            await this.applying;
            if (this.stopped) return;
          }
          this.applyInBackground(core, k === committed.length ? committed : committed.slice(0, k));
          committed = committed.slice(k);
        }
      }
      if (this.commitOnly(rd)) {
        // Only the commit index moved: it promises nothing to anyone (it is re-learned from the leader
        // after a crash), so it is written in order with the next saves but not waited for (etcd's
        // MustSync). A failed write still stops the driver.
        this.lazySave = saved;
        saved.catch((err: unknown) => this.fail(err));
      } else {
        await saved;
      }
      if (rd.entries.length > 0) this.stableIndex = rd.entries[rd.entries.length - 1].index;
    }
    if (rd.hardState) this.hard = { ...rd.hardState };
    if (this.stopped) return;

    // 2. Send.
    if (!early && rd.messages.length > 0) this.send(rd.messages);

    // 3. Apply. With pipelineApply the previous Ready's applies may still be running (below): they finish
    // first, so the state machine sees entries in log order and at most one Ready is ever in flight.
    if (this.applying !== undefined && (committed.length > 0 || rd.snapshot)) {
      await this.applying;
      if (this.stopped) return;
    }
    if (rd.snapshot) {
      await this.sm.restore(rd.snapshot);
      this.applied = rd.snapshot.meta.index;
      this.confLog = [];
      this.setConf(rd.snapshot.meta.index, rd.snapshot.meta.conf);
      // Proposals at or below the snapshot were overtaken by it: their outcome is unknown here.
      for (const [index, p] of this.byIndex) {
        if (index > this.applied) break;
        this.byIndex.delete(index);
        this.finish(p, undefined, this.unknownOutcome('proposal was overtaken by a snapshot'));
      }
    }
    if (this.opts.pipelineApply) {
      if (committed.length > 0) this.applyInBackground(core, committed);
    } else {
      for (const e of committed) await this.applyEntry(core, e);
    }
    for (const rs of rd.readStates) {
      const r = this.reads.get(textDecoder.decode(rs.context));
      if (r) r.index = rs.index;
    }
    this.serveReads();

    if (this.soft.role !== StateRole.Leader && this.byIndex.size > 0) {
      // Leadership lost: pending entries are in the log and may still be committed by the next leader.
      const err = this.unknownOutcome('leadership was lost before the proposal committed');
      for (const p of this.byIndex.values()) this.finish(p, undefined, err);
      this.byIndex.clear();
    }
  }

  /**
   * pipelineApply: each applyEntry issues its sm.apply synchronously (before its first await), so the
   * entries reach the state machine in one event-loop turn (one group commit). They complete in the
   * background: the loop goes on to persist the next Ready while these apply, as etcd applies on its own
   * goroutine. The core may count these entries applied already; nothing it decides depends on it (conf
   * changes take effect when issued), and proposals, reads and compaction wait on this.applied, which moves
   * only when an apply has completed. The caller has awaited the previous run (entries apply in log order).
   */
  private applyInBackground(core: RaftCore, entries: Entry[]): void {
    const run: Promise<void> = Promise.all(entries.map((e) => this.applyEntry(core, e))).then(
      () => {
        if (this.applying === run) this.applying = undefined;
        this.serveReads();
      },
      (err: unknown) => {
        if (this.applying === run) this.applying = undefined;
        this.fail(err);
      },
    );
    this.applying = run;
  }

  /** A Ready whose only durable change is the commit index (no entries, snapshot, term or vote). */
  private commitOnly(rd: Ready): boolean {
    const hs = rd.hardState;
    return (
      rd.entries.length === 0 &&
      !rd.snapshot &&
      hs !== undefined &&
      hs.term === this.hard.term &&
      hs.vote === this.hard.vote
    );
  }

  /** See handleReady: a leader's Ready whose messages do not wait for its own durable write. */
  private canSendEarly(rd: Ready): boolean {
    if (rd.messages.length === 0 || rd.snapshot || this.soft.role !== StateRole.Leader) return false;
    const hs = rd.hardState;
    if (hs && (hs.term !== this.hard.term || hs.vote !== this.hard.vote)) return false;
    for (const m of rd.messages) {
      if (m.type !== MessageType.App && m.type !== MessageType.Heartbeat) return false;
    }
    return true;
  }

  private unknownOutcome(message: string): TidemarkError {
    const leaderHint = this.leaderHint();
    return outcomeUnknown(message, leaderHint === undefined ? {} : { leaderHint });
  }

  private leaderHint(): NodeId | undefined {
    const lead = this.soft.lead;
    return lead && lead !== this.id ? lead : undefined;
  }

  private send(messages: Message[]): void {
    let out = messages;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      if (m.to === this.id) {
        // A message to self (some cores emit these): loop it back through the inbox.
        if (out === messages) out = messages.slice(0, i);
        this.inbox.push(m);
        continue;
      }
      if (m.type === MessageType.Snap && m.snapshot && m.snapshot.data.length === 0) {
        // The core may send metadata only; the state-machine image lives in the log storage.
        const held = this.storage.snapshot();
        if (held.meta.index === m.snapshot.meta.index) {
          const filled = { ...m, snapshot: held };
          if (out === messages) out = messages.slice(0, i);
          out.push(filled);
          continue;
        }
      }
      if (out !== messages) out.push(m);
    }
    if (out.length > 0) this.transport.send(out);
  }

  private async applyEntry(core: RaftCore, e: Entry): Promise<void> {
    if (e.index <= this.applied) return;
    const p = this.byIndex.get(e.index);
    if (p) this.byIndex.delete(e.index);
    const mine = p !== undefined && p.term === e.term;
    const t0 = this.timing === undefined ? 0 : this.timers.now();
    // A proposal's deadline is its propose() time + proposalTimeoutMs: no extra field per proposal.
    if (mine && this.timing !== undefined)
      this.timing('commit', t0 - p.deadline + this.opts.proposalTimeoutMs);
    if (e.type === EntryType.ConfChange) {
      this.setConf(e.index, core.applyConfChange(decodeConfChange(e.data)));
      if (e.index > this.applied) this.applied = e.index;
      this.stats.appliedEntries++;
      if (p) this.finish(p, mine ? this.conf : undefined, mine ? undefined : this.replacedError());
      return;
    }
    let result: unknown;
    if (e.data.length > 0) {
      // Empty normal entries are the no-ops new leaders append: nothing to apply.
      try {
        result = await this.sm.apply(e);
        this.timing?.('apply', this.timers.now() - t0);
      } catch (err) {
        // A state machine that cannot apply a committed entry cannot continue: the log says it happened.
        if (p) this.finish(p, undefined, err);
        throw err;
      }
    }
    if (e.index > this.applied) this.applied = e.index;
    this.stats.appliedEntries++;
    if (p) this.finish(p, mine ? result : undefined, mine ? undefined : this.replacedError());
  }

  private replacedError(): TidemarkError {
    return notLeader(this.leaderHint(), 'proposal was overwritten by another leader');
  }

  private finish(p: Pending, value: unknown, err: unknown): void {
    if (p.done) return;
    p.done = true;
    this.pendingCount--;
    if (err !== undefined) {
      p.reject(err);
    } else {
      this.stats.proposalsResolved++;
      p.resolve(value);
    }
  }

  private rejectUnansweredReads(): void {
    for (const [key, r] of this.reads) {
      if (r.index >= 0) continue;
      this.reads.delete(key);
      r.reject(notLeader(this.leaderHint(), 'leader changed before the read was confirmed'));
    }
    this.readQueue = this.readQueue.filter((r) => this.reads.has(r.key));
  }

  private serveReads(): void {
    if (this.reads.size === 0) return;
    for (const [key, r] of this.reads) {
      if (r.index >= 0 && r.index <= this.applied) {
        this.reads.delete(key);
        r.resolve(r.index);
      }
    }
  }

  private setConf(index: number, conf: ConfState): void {
    this.conf = conf;
    this.confLog.push({ index, conf });
  }

  /** Membership as of log index `at` (at >= the last compaction point). */
  private confAt(at: number): ConfState {
    let i = this.confLog.length - 1;
    while (i > 0 && this.confLog[i].index > at) i--;
    const found = this.confLog[i];
    this.confLog = this.confLog.slice(i);
    return found.conf;
  }

  private async maybeCompact(): Promise<void> {
    const threshold = this.opts.compactThreshold;
    if (threshold <= 0) return;
    // The image is taken at the state machine's applied index (which may trail ours: no-ops and conf
    // changes do not reach it), so that is the compaction point.
    if (Math.min(this.sm.appliedIndex(), this.applied) - this.storage.firstIndex() < threshold) {
      // Durability that lags the applies (a store that checkpoints) would hold the log back: ask for a
      // checkpoint, once at a time; a later cycle (the next heartbeat at the latest) compacts.
      // Only for entries applied since the last request: entries the state machine never sees (no-ops, conf
      // changes) can keep its index below the threshold, and asking again would only repeat the checkpoint.
      if (
        this.sm.persist &&
        !this.persisting &&
        this.applied > this.persistAsked &&
        this.applied - this.storage.firstIndex() >= threshold
      ) {
        this.persisting = true;
        this.persistAsked = this.applied;
        void this.sm
          .persist()
          .catch(() => {
            // A failed checkpoint poisons the state machine: the next apply fails the driver.
          })
          .finally(() => {
            this.persisting = false;
            this.compactDue = true;
            this.schedule();
          });
      }
      return;
    }
    // The image is taken with no apply running.
    if (this.applying !== undefined) await this.applying;
    if (this.stopped) return;
    const at = Math.min(this.sm.appliedIndex(), this.applied);
    const data = await this.sm.snapshot();
    await this.storage.compact(at, this.confAt(at), data);
    this.stats.compactions++;
  }

  private rejectAll(err: unknown): void {
    for (const q of [this.proposalQueue, this.confQueue]) {
      for (const p of q) this.finish(p, undefined, err);
    }
    this.proposalQueue = [];
    this.confQueue = [];
    for (const p of this.byIndex.values()) this.finish(p, undefined, err);
    this.byIndex.clear();
    for (const r of this.reads.values()) r.reject(err);
    this.reads.clear();
    this.readQueue = [];
  }

  private fail(err: unknown): void {
    if (this.fatal !== undefined) return;
    this.fatal = err;
    this.stopped = true;
    if (this.tickHandle !== undefined) this.timers.clearInterval(this.tickHandle);
    this.rejectAll(this.stoppedError());
    void this.transport.close();
    this.onFatal?.(err);
  }
}
