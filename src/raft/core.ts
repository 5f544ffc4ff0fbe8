/**
 * The pure, deterministic Raft core (modeled on etcd-io/raft: raft.go, rawnode.go). No timers, sockets,
 * clock, randomness or disk: time is `tick()`, randomness is the injected `Config.random`, input is
 * `step(message)` and the local calls below, output is `ready()`.
 *
 * ## The Ready / advance cycle and the persistence order
 *
 * The driver loops:
 *
 *     if (node.hasReady()) {
 *       const rd = node.ready();
 *       // 1. persist rd.snapshot (if any), then rd.entries + rd.hardState atomically and durably
 *       // 2. send rd.messages
 *       // 3. apply rd.committedEntries (calling applyConfChange for ConfChange entries), install rd.snapshot
 *       //    into the state machine, serve rd.readStates once applied >= their index
 *       // 4. node.advance()
 *     }
 *
 * Rule: **persist, then send.** Every message in a Ready may depend on the entries and hard state of the
 * same Ready (a vote promises the persisted `vote`; an append acknowledgement promises persisted entries;
 * a leader's append to a follower carries entries that must not be lost by the leader if the follower
 * counts toward a quorum for them). So nothing in `messages` may leave the process before step 1 is durable.
 *
 * etcd lets a leader send appends to followers in parallel with writing the same entries to its own disk,
 * which is safe only because the leader counts its *own* acknowledgement toward commitment once its local
 * write is done. This core keeps that accounting: the leader's own match index advances only in
 * `advance()`, to the last index that is durable (`RaftLog.persistedLastIndex`), so a leader never counts
 * an entry it has not persisted itself. But a Ready does not separate those appends from messages that do
 * depend on its hard state (e.g. vote requests of the campaign that made this node leader, whose
 * self-vote must be durable), so drivers must simply keep "persist, then send" for every Ready.
 *
 * `step()` and the other inputs may be called between `ready()` and `advance()`: the messages and entries
 * they produce are held for the next Ready. `advance()` acknowledges every Ready handed out since the last
 * `advance()`. Committed entries are handed out once (tracked by `RaftLog.applying`).
 *
 * ## Membership changes
 *
 * One server at a time (Raft dissertation §4.1), applied on commit, with etcd's "pending conf index" guard:
 * a leader accepts a conf change only when every earlier conf change in its log has been applied
 * (`pendingConfIndex <= applied`); a new leader sets `pendingConfIndex` to its no-op's index, so it cannot
 * propose a change before it has committed (and applied) an entry of its own term. That last rule is the
 * fix for the known single-server-change bug (Ongaro, raft-dev 2015): two changes from different terms
 * whose quorums do not overlap. Applying on commit (rather than on append) means a configuration never has
 * to be rolled back when an uncommitted suffix is truncated, and the log itself needs no config lookups.
 * Since any two majorities of configurations differing by one server overlap, one change at a time is safe
 * without joint consensus. A leader that applies its own removal hands leadership to the most caught-up
 * voter (TimeoutNow) before stepping down (see handOff). See docs/raft.md.
 */
import { invalidArgument, notLeader, resourceExhausted, TidemarkError } from '../errors/errors.js';
import { bootstrapState, decodeConfChange, encodeConfChange } from './conf-change.js';
import { type Progress, ProgressState, ProgressTracker } from './progress.js';
import { VoteResult } from './quorum.js';
import { RaftLog, raftInternal } from './raft-log.js';
import { Lease, ReadOnly, type ReadRequest } from './read-only.js';
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type LogReader,
  type Message,
  MessageType,
  type NodeId,
  type ReadState,
  type Ready,
  type Snapshot,
  type SoftState,
  StateRole,
} from './types.js';

export interface Config {
  /** This node's id; must be non-empty. */
  id: NodeId;
  /** Ticks a follower waits without hearing from a leader before campaigning: randomized in [et, 2et). */
  electionTick: number;
  /** Ticks between leader heartbeats; must be < electionTick. */
  heartbeatTick: number;
  /** Durable log as of startup; `initialState().conf` must be the configuration as of `applied`. */
  storage: LogReader;
  /** Last index applied to the state machine (resume point). Default: the storage's snapshot index. */
  applied?: number;
  /** Run a pre-vote round before bumping the term (prevents disruption by partitioned nodes). */
  preVote?: boolean;
  /** Leader steps down without a quorum of recent contact; followers in a leader lease ignore votes. */
  checkQuorum?: boolean;
  /**
   * How a leader confirms a read index (etcd ReadOnlySafe / ReadOnlyLeaseBased). `index` (default): a
   * heartbeat round per batch of reads. `lease`: answered at once while the leader's lease holds (a quorum
   * acknowledged a heartbeat sent at most electionTick - LEASE_GUARD_TICKS ticks ago; see read-only.ts for
   * the clock assumption); requires checkQuorum.
   */
  readMode?: 'index' | 'lease';
  /** Byte limit of entries in one append (at least one entry is always sent). Default 1 MiB. */
  maxSizePerMsg?: number;
  /** Append messages in flight per follower in Replicate state. Default 256. */
  maxInflightMsgs?: number;
  /** Bytes in flight per follower (0 = no limit). Default 0. */
  maxInflightBytes?: number;
  /** Payload bytes the leader accepts beyond what has been applied. Default 64 MiB. */
  maxUncommittedEntriesSize?: number;
  /** Byte limit of committedEntries in one Ready. Default 16 MiB. */
  maxCommittedSizePerReady?: number;
  /** Uniform [0, 1) source for election timeout jitter (inject a seeded PRNG for determinism). */
  random: () => number;
}

export interface ProgressStatus {
  match: number;
  next: number;
  state: ProgressState;
  recentActive: boolean;
  paused: boolean;
  isLearner: boolean;
}

export interface Status {
  id: NodeId;
  term: number;
  vote: NodeId | '';
  commit: number;
  applied: number;
  lastIndex: number;
  lead: NodeId | '';
  role: StateRole;
  leadTransferee: NodeId | '';
  conf: ConfState;
  /** Leader only: replication progress per member (including itself). */
  progress?: Map<NodeId, ProgressStatus>;
}

/** Index and term of the last entry a proposal appended. */
export interface Proposed {
  index: number;
  term: number;
}

/** Vote context marking a campaign started by leader transfer (bypasses leader leases). */
export const CAMPAIGN_TRANSFER: Uint8Array = new TextEncoder().encode('CampaignTransfer');

const MiB = 1024 * 1024;

function isTransferContext(ctx: Uint8Array | undefined): boolean {
  if (!ctx || ctx.length !== CAMPAIGN_TRANSFER.length) return false;
  for (let i = 0; i < ctx.length; i++) if (ctx[i] !== CAMPAIGN_TRANSFER[i]) return false;
  return true;
}

function payloadSize(ents: readonly Entry[]): number {
  let s = 0;
  for (const e of ents) s += e.data.byteLength;
  return s;
}

function proposalDropped(reason: string, message: string): TidemarkError {
  return new TidemarkError('UNAVAILABLE', reason, message, { retryAfterMs: 100 });
}

type CampaignKind = 'pre' | 'election' | 'transfer';

export class RawNode {
  readonly id: NodeId;
  term = 0;
  vote: NodeId | '' = '';
  lead: NodeId | '' = '';
  role: StateRole = StateRole.Follower;
  /** The log (read-only introspection for tests and the driver; do not mutate). */
  readonly log: RaftLog;
  private readonly trk: ProgressTracker;
  private isLearner = false;

  private msgs: Message[] = [];
  private readStates: ReadState[] = [];

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private readonly electionTimeout: number;
  private readonly heartbeatTimeout: number;
  private randomizedElectionTimeout = 0;
  private readonly random: () => number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly maxMsgSize: number;
  private readonly maxUncommittedSize: number;
  private uncommittedSize = 0;

  private pendingConfIndex = 0;
  private leadTransferee: NodeId | '' = '';
  private readOnly = new ReadOnly();
  private pendingReadIndexMessages: ReadRequest[] = [];
  private readonly lease: Lease | undefined;

  // Ready bookkeeping.
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  private acceptedStable: Array<[number, number]> = [];
  private acceptedSnapIndex = 0;
  private acceptedApplied = 0;
  private acceptedAppliedBytes = 0;

  constructor(config: Config) {
    if (!config.id) throw invalidArgument('raft_config', 'id', 'raft node id must be non-empty');
    if (!(config.heartbeatTick > 0)) {
      throw invalidArgument('raft_config', 'heartbeatTick', 'heartbeatTick must be > 0');
    }
    if (!(config.electionTick > config.heartbeatTick)) {
      throw invalidArgument('raft_config', 'electionTick', 'electionTick must be > heartbeatTick');
    }
    this.id = config.id;
    this.electionTimeout = config.electionTick;
    this.heartbeatTimeout = config.heartbeatTick;
    this.random = config.random;
    this.preVote = config.preVote ?? false;
    this.checkQuorum = config.checkQuorum ?? false;
    if (config.readMode === 'lease') {
      // The lease is only as good as the followers' promise not to elect anyone else meanwhile, which
      // they keep only with checkQuorum (the in-lease vote rejection in step()).
      if (!this.checkQuorum) {
        throw invalidArgument('raft_config', 'readMode', 'readMode lease requires checkQuorum');
      }
      this.lease = new Lease(config.electionTick);
    }
    this.maxMsgSize = config.maxSizePerMsg ?? MiB;
    this.maxUncommittedSize = config.maxUncommittedEntriesSize ?? 64 * MiB;
    this.trk = new ProgressTracker(config.maxInflightMsgs ?? 256, config.maxInflightBytes ?? 0);
    this.log = new RaftLog(config.storage, config.maxCommittedSizePerReady ?? 16 * MiB);

    const { hardState, conf } = config.storage.initialState();
    if (hardState.commit > this.log.lastIndex()) {
      throw raftInternal(`hard state commit ${hardState.commit} beyond last index ${this.log.lastIndex()}`);
    }
    this.log.commitTo(hardState.commit);
    if (config.applied !== undefined && config.applied > 0) {
      if (config.applied > this.log.committed) {
        throw invalidArgument(
          'raft_config',
          'applied',
          `applied ${config.applied} > commit ${this.log.committed}`,
        );
      }
      this.log.appliedTo(config.applied);
    }
    this.trk.reset(conf, this.log.lastIndex() + 1);
    this.isLearner = this.trk.learners.has(this.id);
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.becomeFollower(this.term, '');
    this.prevSoftState = this.softState();
    this.prevHardState = this.hardState();
  }

  // ---------------------------------------------------------------- inputs

  /** Advances logical time by one tick. */
  tick(): void {
    this.lease?.tick();
    if (this.role === StateRole.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  /** Starts an election now (a pre-vote round first when preVote is on). No-op on a leader or learner. */
  campaign(): void {
    this.hup(false);
  }

  /**
   * Appends `data` (one entry per element) to the log. Leader only: followers throw NOT_LEADER with the
   * known leader as hint (forwarding is the caller's business). Throws UNAVAILABLE during a leader transfer
   * or after the leader removed itself, RESOURCE_EXHAUSTED past maxUncommittedEntriesSize.
   * Returns the index and term of the last appended entry (entries are at index-n+1 .. index).
   */
  propose(data: Uint8Array | Uint8Array[]): Proposed {
    const list = Array.isArray(data) ? data : [data];
    if (list.length === 0) throw invalidArgument('raft_empty_proposal', 'data', 'empty proposal');
    return this.proposeEntries(list.map((d) => ({ term: 0, index: 0, type: EntryType.Normal, data: d })));
  }

  /**
   * Proposes a single-server membership change. Rejected (FAILED_PRECONDITION) while an earlier conf change
   * is not yet applied, and (INVALID_ARGUMENT) when it would remove the last voter.
   */
  proposeConfChange(cc: ConfChange): Proposed {
    this.checkCanPropose();
    if (this.pendingConfIndex > this.log.applied) {
      throw new TidemarkError(
        'FAILED_PRECONDITION',
        'raft_conf_change_pending',
        `a configuration change at index ${this.pendingConfIndex} is not applied yet (applied ${this.log.applied})`,
        { retryAfterMs: 100 },
      );
    }
    if (cc.type === ConfChangeType.RemoveNode && this.trk.voters.has(cc.node) && this.trk.voters.size === 1) {
      throw invalidArgument('raft_remove_last_voter', 'node', 'cannot remove the last voter');
    }
    const res = this.proposeEntries([
      { term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(cc) },
    ]);
    this.pendingConfIndex = res.index;
    return res;
  }

  /** Feeds a message from the network. Messages not addressed to this node are ignored. */
  step(m: Message): void {
    if (m.to !== this.id) return;
    if (m.term === 0) {
      // Term-less: only a ReadIndex forwarded by a follower (treated as a local request).
      if (m.type !== MessageType.ReadIndex) return;
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = isTransferContext(m.context);
        const inLease = this.checkQuorum && this.lead !== '' && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) return; // leader lease: ignore disruptive candidates
      }
      if (m.type === MessageType.PreVote) {
        // Never change the term for a pre-vote.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // A granted pre-vote carries the future term; the term bumps if the pre-vote wins.
      } else if (
        m.type === MessageType.App ||
        m.type === MessageType.Heartbeat ||
        m.type === MessageType.Snap
      ) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, '');
      }
    } else if (m.term < this.term) {
      if (
        (this.checkQuorum || this.preVote) &&
        (m.type === MessageType.Heartbeat || m.type === MessageType.App)
      ) {
        // A stale leader (e.g. back from a partition) learns the new term and steps down; without this,
        // with pre-vote or check-quorum on, it could keep nodes from ever electing a new leader.
        this.send(this.newMsg(MessageType.AppResp, m.from));
      } else if (m.type === MessageType.PreVote) {
        this.send({ ...this.newMsg(MessageType.PreVoteResp, m.from), reject: true });
      } else if (m.type === MessageType.Vote) {
        // Reject with our term (as the paper's RequestVote does; etcd stays silent): a candidate that never
        // hears from us otherwise (e.g. it counts us as a voter, we do not count it) would keep campaigning
        // in terms we have already passed.
        this.send({ ...this.newMsg(MessageType.VoteResp, m.from), reject: true });
      }
      return;
    }

    switch (m.type) {
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVote(m);
        return;
      default:
        break;
    }
    switch (this.role) {
      case StateRole.Leader:
        this.stepLeader(m);
        return;
      case StateRole.Candidate:
      case StateRole.PreCandidate:
        this.stepCandidate(m);
        return;
      default:
        this.stepFollower(m);
    }
  }

  /** Starts a leader transfer to `to` (leader only). Aborted after an election timeout. */
  transferLeader(to: NodeId): void {
    if (this.role !== StateRole.Leader) throw notLeader(this.lead || undefined);
    const pr = this.trk.progress.get(to);
    if (!pr) throw invalidArgument('raft_transfer_target', 'to', `${to} is not a member`);
    if (pr.isLearner) throw invalidArgument('raft_transfer_target', 'to', `${to} is a learner`);
    if (this.leadTransferee !== '') {
      if (this.leadTransferee === to) return;
      this.abortLeaderTransfer();
    }
    if (to === this.id) return;
    // The target campaigns past the followers' lease (force): no lease reads for the rest of this term.
    this.lease?.revoke();
    this.electionElapsed = 0;
    this.leadTransferee = to;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to);
  }

  /**
   * Requests a linearizable read point; the answer is a ReadState with the same `context` in a later Ready
   * (serve the read once applied >= its index). Contexts must be unique among pending requests. Requests
   * can be lost (leader change, dropped messages): callers retry on timeout. Followers forward to the
   * leader; with no known leader this throws NOT_LEADER.
   */
  readIndex(context: Uint8Array): void {
    if (this.role === StateRole.Leader) {
      this.leaderReadIndex({ from: this.id, context });
      return;
    }
    if (this.lead === '') throw notLeader(undefined, 'no known leader to serve the read');
    this.send({ ...this.newMsg(MessageType.ReadIndex, this.lead), term: 0, context });
  }

  /** The transport could not reach `id`: stop optimistic replication to it. */
  reportUnreachable(id: NodeId): void {
    if (this.role !== StateRole.Leader) return;
    const pr = this.trk.progress.get(id);
    if (pr && pr.state === ProgressState.Replicate) pr.becomeProbe();
  }

  /** Outcome of sending a snapshot to `id`: on failure the leader probes again (and resends as needed). */
  reportSnapshot(id: NodeId, ok: boolean): void {
    if (this.role !== StateRole.Leader) return;
    const pr = this.trk.progress.get(id);
    if (!pr || pr.state !== ProgressState.Snapshot) return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for a heartbeat response before probing (the follower may still be applying the snapshot).
    pr.msgAppFlowPaused = true;
  }

  /**
   * Applies a committed ConfChange entry (call while applying committedEntries, in log order). Returns the
   * new configuration (store it with the state machine; it is `initialState().conf` after a restart).
   */
  applyConfChange(cc: ConfChange): ConfState {
    const next = this.log.lastIndex() + 1;
    switch (cc.type) {
      case ConfChangeType.AddVoter: {
        if (this.trk.voters.has(cc.node)) break;
        const pr = this.trk.progress.get(cc.node);
        this.trk.voters.add(cc.node);
        if (this.trk.learners.delete(cc.node) && pr) pr.isLearner = false;
        else this.trk.progress.set(cc.node, this.trk.newProgress(next, false));
        break;
      }
      case ConfChangeType.AddLearner:
        if (this.trk.voters.has(cc.node) || this.trk.learners.has(cc.node)) break; // no demotions
        this.trk.learners.add(cc.node);
        this.trk.progress.set(cc.node, this.trk.newProgress(next, true));
        break;
      case ConfChangeType.RemoveNode:
        this.trk.voters.delete(cc.node);
        this.trk.learners.delete(cc.node);
        this.trk.progress.delete(cc.node);
        break;
    }
    return this.switchToConfig();
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    if (this.msgs.length > 0 || this.readStates.length > 0) return true;
    if (this.log.unstable.nextEntries().length > 0 || this.log.unstable.nextSnapshot()) return true;
    if (this.log.hasNextCommittedEnts()) return true;
    if (!softStateEqual(this.softState(), this.prevSoftState)) return true;
    return !hardStateEqual(this.hardState(), this.prevHardState);
  }

  /** What to persist, send and apply now (see the order at the top of this file). */
  ready(): Ready {
    const entries = this.log.unstable.nextEntries();
    const snapshot = this.log.unstable.nextSnapshot();
    const committedEntries = this.log.nextCommittedEnts();
    const rd: Ready = { entries, messages: this.msgs, committedEntries, readStates: this.readStates };
    const ss = this.softState();
    if (!softStateEqual(ss, this.prevSoftState)) {
      rd.softState = ss;
      this.prevSoftState = ss;
    }
    const hs = this.hardState();
    if (!hardStateEqual(hs, this.prevHardState)) {
      rd.hardState = hs;
      this.prevHardState = hs;
    }
    if (snapshot) {
      rd.snapshot = snapshot;
      this.acceptedSnapIndex = snapshot.meta.index;
    }
    this.msgs = [];
    this.readStates = [];
    this.log.unstable.acceptInProgress();
    if (entries.length > 0) {
      const last = entries[entries.length - 1];
      this.acceptedStable.push([last.index, last.term]);
    }
    if (committedEntries.length > 0) {
      const last = committedEntries[committedEntries.length - 1].index;
      this.log.applying = last;
      this.acceptedApplied = last;
      this.acceptedAppliedBytes += payloadSize(committedEntries);
    }
    return rd;
  }

  /** Acknowledges every Ready handed out since the last advance: persisted, sent and applied. */
  advance(): void {
    for (const [i, t] of this.acceptedStable) this.log.unstable.stableTo(i, t);
    this.acceptedStable = [];
    if (this.acceptedSnapIndex > 0) {
      this.log.unstable.stableSnapTo(this.acceptedSnapIndex);
      this.log.appliedTo(this.acceptedSnapIndex);
      this.acceptedSnapIndex = 0;
    }
    if (this.acceptedApplied > 0) {
      this.log.appliedTo(this.acceptedApplied);
      this.acceptedApplied = 0;
    }
    if (this.role === StateRole.Leader) {
      this.uncommittedSize = Math.max(0, this.uncommittedSize - this.acceptedAppliedBytes);
      // The leader's own acknowledgement: only what is durable now.
      const self = this.trk.progress.get(this.id);
      if (self?.maybeUpdate(this.log.persistedLastIndex()) && this.maybeCommit()) {
        this.releasePendingReadIndexMessages();
        this.bcastAppend();
      }
    }
    this.acceptedAppliedBytes = 0;
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  status(): Status {
    const st: Status = {
      id: this.id,
      term: this.term,
      vote: this.vote,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      lead: this.lead,
      role: this.role,
      leadTransferee: this.leadTransferee,
      conf: this.trk.confState(),
    };
    if (this.role === StateRole.Leader) {
      st.progress = new Map();
      for (const [id, pr] of this.trk.progress) {
        st.progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
          paused: pr.isPaused(),
          isLearner: pr.isLearner,
        });
      }
    }
    return st;
  }

  /** Whether this node may campaign: a voter in its configuration with no snapshot restore pending. */
  promotable(): boolean {
    return this.trk.voters.has(this.id) && !this.log.unstable.snapshot;
  }

  // ---------------------------------------------------------------- state transitions

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = '';
    }
    this.lead = '';
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.random() * this.electionTimeout);
    if (this.randomizedElectionTimeout >= 2 * this.electionTimeout) {
      this.randomizedElectionTimeout = 2 * this.electionTimeout - 1;
    }
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const next = this.log.lastIndex() + 1;
    for (const [id, pr] of this.trk.progress) {
      const fresh = this.trk.newProgress(next, pr.isLearner);
      fresh.recentActive = false;
      if (id === this.id) {
        fresh.match = this.log.persistedLastIndex();
        fresh.recentActive = true;
      }
      this.trk.progress.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndexMessages = [];
    this.lease?.reset();
  }

  private becomeFollower(term: number, lead: NodeId | ''): void {
    this.reset(term);
    this.lead = lead;
    this.role = StateRole.Follower;
  }

  private becomeCandidate(): void {
    if (this.role === StateRole.Leader) throw raftInternal('invalid transition leader -> candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = StateRole.Candidate;
  }

  private becomePreCandidate(): void {
    if (this.role === StateRole.Leader) throw raftInternal('invalid transition leader -> pre-candidate');
    this.trk.resetVotes();
    this.lead = '';
    this.role = StateRole.PreCandidate;
  }

  private becomeLeader(): void {
    if (this.role === StateRole.Follower) throw raftInternal('invalid transition follower -> leader');
    this.reset(this.term);
    this.lead = this.id;
    this.role = StateRole.Leader;
    this.trk.progress.get(this.id)?.becomeReplicate();
    // The empty entry of the new term: committing it commits everything before it (Figure 8).
    this.appendEntries([{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }]);
    // Conf changes in the uncommitted tail may not be applied yet, and a new leader must commit an entry
    // of its own term before changing the configuration: forbid conf changes until the no-op is applied
    // (etcd uses the index before the no-op; this is one entry stricter).
    this.pendingConfIndex = this.log.lastIndex();
  }

  private hup(transfer: boolean): void {
    if (this.role === StateRole.Leader) return;
    if (!this.promotable()) return;
    if (this.hasUnappliedConfChanges()) return;
    if (transfer) this.campaign0('transfer');
    else if (this.preVote) this.campaign0('pre');
    else this.campaign0('election');
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const ents = this.log.slice(this.log.applied + 1, this.log.committed + 1) ?? [];
    return ents.some((e) => e.type === EntryType.ConfChange);
  }

  private campaign0(kind: CampaignKind): void {
    let voteType: MessageType;
    let term: number;
    if (kind === 'pre') {
      this.becomePreCandidate();
      voteType = MessageType.PreVote;
      term = this.term + 1; // the term we would campaign in; not adopted yet
    } else {
      this.becomeCandidate();
      voteType = MessageType.Vote;
      term = this.term;
    }
    if (this.poll(this.id, true) === VoteResult.Won) {
      // Single-voter configuration.
      if (kind === 'pre') this.campaign0('election');
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.trk.voters) {
      if (id === this.id) continue;
      const m: Message = { ...this.newMsg(voteType, id), term, index: lastIndex, logTerm: lastTerm };
      if (kind === 'transfer') m.context = CAMPAIGN_TRANSFER;
      this.send(m);
    }
  }

  private poll(id: NodeId, granted: boolean): VoteResult {
    this.trk.recordVote(id, granted);
    return this.trk.tallyVotes();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        if (!this.trk.quorumActive(this.id)) {
          this.becomeFollower(this.term, '');
          return;
        }
        for (const [id, pr] of this.trk.progress) if (id !== this.id) pr.recentActive = false;
      }
      // A transfer that has not finished within an election timeout is abandoned.
      if (this.leadTransferee !== '') this.abortLeaderTransfer();
      // A leader that removed itself tries again (possibly with another target).
      if (this.isLameDuck()) {
        this.handOff();
        if (this.role !== StateRole.Leader) return;
      }
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat();
    }
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = '';
  }

  // ---------------------------------------------------------------- message handling

  private handleVote(m: Message): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === '' && this.lead === '') ||
      (m.type === MessageType.PreVote && m.term > this.term);
    const respType = m.type === MessageType.Vote ? MessageType.VoteResp : MessageType.PreVoteResp;
    // A learner is never asked for its vote by a candidate that knows it is a learner; one that is asked
    // answers (as in etcd): the candidate's configuration may already have promoted it, and refusing
    // could leave that configuration without a quorum.
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // Answer with the candidate's term: a pre-vote grant must not look stale to the pre-candidate.
      this.send({ ...this.newMsg(respType, m.from), term: m.term });
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ ...this.newMsg(respType, m.from), reject: true });
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.App:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.TimeoutNow:
        // Leader transfer: campaign now, skipping pre-vote and leases.
        this.hup(true);
        return;
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, context: m.context ?? new Uint8Array(0) });
        return;
      default:
        return; // forwarded ReadIndex to a non-leader, stale responses: dropped
    }
  }

  private stepCandidate(m: Message): void {
    const myRespType = this.role === StateRole.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
    switch (m.type) {
      case MessageType.App:
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      default:
        break;
    }
    if (m.type !== myRespType) return;
    const res = this.poll(m.from, !m.reject);
    if (res === VoteResult.Won) {
      if (this.role === StateRole.PreCandidate) {
        this.campaign0('election');
      } else {
        this.becomeLeader();
        this.bcastAppend();
      }
    } else if (res === VoteResult.Lost) {
      this.becomeFollower(this.term, '');
    }
  }

  private stepLeader(m: Message): void {
    if (m.type === MessageType.ReadIndex) {
      this.leaderReadIndex({ from: m.from, context: m.context ?? new Uint8Array(0) });
      return;
    }
    const pr = this.trk.progress.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case MessageType.AppResp:
        pr.recentActive = true;
        this.handleAppResp(m, pr);
        return;
      case MessageType.HeartbeatResp:
        pr.recentActive = true;
        this.handleHeartbeatResp(m, pr);
        return;
      default:
        return;
    }
  }

  private handleAppResp(m: Message, pr: Progress): void {
    if (m.reject) {
      let nextProbeIdx = m.rejectHint;
      if ((m.hintTerm ?? 0) > 0) {
        // Skip every entry of the follower's conflicting term at once (etcd findConflictByTerm).
        nextProbeIdx = this.log.findConflictByTerm(m.rejectHint, m.hintTerm ?? 0)[0];
      }
      if (pr.maybeDecrTo(m.index, nextProbeIdx)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const oldPaused = pr.isPaused();
    if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === ProgressState.Probe)) {
      if (pr.state === ProgressState.Probe) {
        pr.becomeReplicate();
      } else if (pr.state === ProgressState.Snapshot && pr.match + 1 >= this.log.firstIndex()) {
        // The follower caught up (via the snapshot or otherwise): resume appending after match.
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.state === ProgressState.Replicate) {
        pr.inflights.freeLE(m.index);
      }
      if (this.maybeCommit()) {
        this.releasePendingReadIndexMessages();
        this.bcastAppend();
      } else if (oldPaused) {
        this.sendAppend(m.from);
      }
      // Fill the in-flight window.
      while (this.maybeSendAppend(m.from, false)) {
        /* keep sending */
      }
      if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
        this.sendTimeoutNow(m.from);
        if (this.isLameDuck()) this.becomeFollower(this.term, '');
      }
    }
  }

  private handleHeartbeatResp(m: Message, pr: Progress): void {
    pr.msgAppFlowPaused = false;
    if (pr.match < this.log.lastIndex() || pr.state === ProgressState.Probe) this.sendAppend(m.from);
    if (!m.context || m.context.length === 0) return;
    if (this.lease?.recvAck(m.from, m.context, this.trk)) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (!acks || !this.trk.hasQuorum(acks)) return;
    for (const rs of this.readOnly.advance(m.context)) this.respondReadIndex(rs.req, rs.index);
  }

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send({ ...this.newMsg(MessageType.AppResp, m.from), index: this.log.committed });
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send({ ...this.newMsg(MessageType.AppResp, m.from), index: lastNew });
      return;
    }
    // Mismatch at m.index: hint the largest index whose term is <= m.logTerm, so the leader can skip a
    // whole conflicting term per round trip instead of one entry.
    const hintIndex = Math.min(m.index, this.log.lastIndex());
    const [idx, term] = this.log.findConflictByTerm(hintIndex, m.logTerm);
    this.send({
      ...this.newMsg(MessageType.AppResp, m.from),
      index: m.index,
      reject: true,
      rejectHint: idx,
      hintTerm: term,
    });
  }

  private handleHeartbeat(m: Message): void {
    // m.commit <= the leader's match for us, which we have durably acknowledged: beyond our last index
    // would mean lost durable state (commitTo throws).
    this.log.commitTo(m.commit);
    const resp = this.newMsg(MessageType.HeartbeatResp, m.from);
    if (m.context) resp.context = m.context;
    this.send(resp);
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (s && this.restore(s)) {
      this.send({ ...this.newMsg(MessageType.AppResp, m.from), index: this.log.lastIndex() });
    } else {
      this.send({ ...this.newMsg(MessageType.AppResp, m.from), index: this.log.committed });
    }
  }

  /** Installs a snapshot from the leader; false if it is stale or already covered by the log. */
  private restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.role !== StateRole.Follower) {
      this.becomeFollower(this.term + 1, '');
      return false;
    }
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // The log already has the snapshot's last entry: just fast-forward the commit index.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.trk.reset(s.meta.conf, this.log.lastIndex() + 1);
    this.isLearner = this.trk.learners.has(this.id);
    return true;
  }

  // ---------------------------------------------------------------- leader internals

  private checkCanPropose(): void {
    if (this.role !== StateRole.Leader) throw notLeader(this.lead || undefined);
    if (!this.trk.progress.has(this.id)) {
      throw proposalDropped('raft_proposal_dropped', 'this leader is being removed from the cluster');
    }
    if (this.leadTransferee !== '') {
      throw proposalDropped(
        'raft_leader_transfer',
        `leadership is being transferred to ${this.leadTransferee}`,
      );
    }
  }

  private proposeEntries(ents: Entry[]): Proposed {
    this.checkCanPropose();
    if (!this.appendEntries(ents)) {
      throw resourceExhausted(
        'raft_uncommitted_size',
        'too many uncommitted entries on the leader; retry later',
        100,
      );
    }
    this.bcastAppend();
    return { index: this.log.lastIndex(), term: this.term };
  }

  private appendEntries(es: Entry[]): boolean {
    const li = this.log.lastIndex();
    const ents = es.map((e, i) => ({ term: this.term, index: li + 1 + i, type: e.type, data: e.data }));
    const s = payloadSize(ents);
    if (this.uncommittedSize > 0 && s > 0 && this.uncommittedSize + s > this.maxUncommittedSize) return false;
    this.uncommittedSize += s;
    this.log.append(ents);
    return true;
  }

  private maybeCommit(): boolean {
    // Only entries of the current term are committed by counting replicas (Raft §5.4.2, Figure 8).
    return this.log.maybeCommit(this.trk.committed(), this.term);
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.zeroTermOnOutOfBounds(this.log.committed) === this.term;
  }

  private switchToConfig(): ConfState {
    const cs = this.trk.confState();
    this.isLearner = this.trk.learners.has(this.id);
    if (this.isLameDuck()) {
      // Removed leader: hand leadership over rather than just stepping down (see handOff).
      this.handOff();
      return cs;
    }
    if (this.role !== StateRole.Leader || this.trk.voters.size === 0) return cs;
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    } else {
      for (const id of this.trk.progress.keys()) {
        if (id !== this.id) this.maybeSendAppend(id, false);
      }
    }
    if (this.leadTransferee !== '' && !this.trk.voters.has(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  /** A leader that is no longer a voter (it applied its own removal). */
  private isLameDuck(): boolean {
    return this.role === StateRole.Leader && !this.trk.voters.has(this.id);
  }

  /**
   * A removed leader keeps leading (replicating, not counting itself, refusing proposals) until the most
   * caught-up remaining voter has its whole log, then sends it TimeoutNow and steps down. Just stepping
   * down can deadlock: a remaining voter that has not learned that the removal committed still needs the
   * removed node's vote, which that node refuses while its own log is longer (and it cannot campaign).
   */
  private handOff(): void {
    let target: NodeId | '' = '';
    let best = -1;
    for (const id of this.trk.voters) {
      const m = this.trk.progress.get(id)?.match ?? 0;
      if (m > best) {
        best = m;
        target = id;
      }
    }
    if (target === '') {
      this.becomeFollower(this.term, '');
      return;
    }
    this.electionElapsed = 0;
    this.leadTransferee = target;
    if (best === this.log.lastIndex()) {
      this.sendTimeoutNow(target);
      this.becomeFollower(this.term, '');
    } else {
      this.sendAppend(target);
    }
  }

  private sendAppend(to: NodeId): boolean {
    return this.maybeSendAppend(to, true);
  }

  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const ents = prevTerm === undefined ? undefined : this.log.entries(pr.next, this.maxMsgSize);
    if (prevTerm === undefined || ents === undefined) return this.maybeSendSnapshot(to, pr);
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({
      ...this.newMsg(MessageType.App, to),
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents,
      commit: this.log.committed,
    });
    let bytes = 0;
    for (const e of ents) bytes += e.data.byteLength;
    pr.sentEntries(ents.length, bytes);
    return true;
  }

  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false;
    const snap = this.log.snapshot();
    // No snapshot, or one older than the compaction point (it would leave a gap): try again later.
    if (!snap || snap.meta.index === 0 || snap.meta.index < this.log.firstIndex() - 1) return false;
    pr.becomeSnapshot(snap.meta.index);
    this.send({ ...this.newMsg(MessageType.Snap, to), snapshot: snap });
    return true;
  }

  private bcastAppend(): void {
    for (const id of this.trk.progress.keys()) if (id !== this.id) this.sendAppend(id);
  }

  private bcastHeartbeat(): void {
    // With reads pending, the round confirms them; otherwise (lease mode) it renews the lease.
    this.bcastHeartbeatWithCtx(this.readOnly.lastPendingRequestCtx() ?? this.lease?.newRound(this.id));
  }

  private bcastHeartbeatWithCtx(ctx: Uint8Array | undefined): void {
    for (const [id, pr] of this.trk.progress) {
      if (id === this.id) continue;
      const m: Message = {
        ...this.newMsg(MessageType.Heartbeat, id),
        commit: Math.min(pr.match, this.log.committed),
      };
      if (ctx) m.context = ctx;
      this.send(m);
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(this.newMsg(MessageType.TimeoutNow, to));
  }

  private leaderReadIndex(req: ReadRequest): void {
    // A new leader does not know the commit index of the previous term until it commits an entry of its
    // own: hold reads until then.
    if (!this.committedEntryInCurrentTerm()) {
      this.pendingReadIndexMessages.push(req);
      return;
    }
    if (this.lease?.holds(this.trk) === true && this.leadTransferee === '') {
      // Lease: no other leader can exist yet, so the commit index is current (ReadOnlyLeaseBased).
      this.respondReadIndex(req, this.log.committed);
      return;
    }
    this.sendReadIndexResponse(req);
  }

  private sendReadIndexResponse(req: ReadRequest): void {
    if (this.trk.isSingleton() && this.trk.voters.has(this.id)) {
      this.respondReadIndex(req, this.log.committed);
      return;
    }
    this.readOnly.addRequest(this.log.committed, req);
    this.readOnly.recvAck(this.id, req.context);
    this.bcastHeartbeatWithCtx(req.context);
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const reqs = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const r of reqs) this.sendReadIndexResponse(r);
  }

  private respondReadIndex(req: ReadRequest, index: number): void {
    if (req.from === this.id) {
      this.readStates.push({ index, context: req.context });
    } else {
      this.send({ ...this.newMsg(MessageType.ReadIndexResp, req.from), index, context: req.context });
    }
  }

  // ---------------------------------------------------------------- messages

  private newMsg(type: MessageType, to: NodeId): Message {
    return {
      type,
      from: this.id,
      to,
      term: this.term,
      index: 0,
      logTerm: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
    };
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }
}

function softStateEqual(a: SoftState, b: SoftState): boolean {
  return a.lead === b.lead && a.role === b.role;
}

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** Decodes the ConfChange carried by a ConfChange entry (for drivers applying committed entries). */
export { bootstrapState, decodeConfChange, encodeConfChange };
