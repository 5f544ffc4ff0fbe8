/**
 * Leader-side view of each follower's replication (etcd-io/raft tracker/progress.go, inflights.go,
 * tracker.go).
 *
 * A Progress is in one of three states:
 *  - Probe: the leader does not know the follower's match index; it sends one append at a time and waits
 *    for the answer (or a heartbeat response) before sending the next.
 *  - Replicate: the follower is known to match up to `match`; the leader streams appends optimistically,
 *    advancing `next` on send, bounded by the in-flight window.
 *  - Snapshot: the follower needs entries the leader has compacted; a snapshot was sent and the leader
 *    waits for it to be applied (or reported failed) before appending again.
 */
import { committedIndex, majority, type VoteResult, voteResult } from './quorum.js';
import type { ConfState, NodeId } from './types.js';

export enum ProgressState {
  Probe = 'probe',
  Replicate = 'replicate',
  Snapshot = 'snapshot',
}

/** A bounded window of in-flight append messages, identified by their last index. */
export class Inflights {
  private readonly idx: number[] = [];
  private readonly sizes: number[] = [];
  private bytes = 0;

  constructor(
    readonly capacity: number,
    readonly maxBytes: number,
  ) {}

  add(lastIndex: number, bytes: number): void {
    this.idx.push(lastIndex);
    this.sizes.push(bytes);
    this.bytes += bytes;
  }

  /** Frees every in-flight message whose last index is <= `to`. */
  freeLE(to: number): void {
    let n = 0;
    while (n < this.idx.length && this.idx[n] <= to) {
      this.bytes -= this.sizes[n];
      n++;
    }
    if (n > 0) {
      this.idx.splice(0, n);
      this.sizes.splice(0, n);
    }
  }

  full(): boolean {
    return this.idx.length >= this.capacity || (this.maxBytes > 0 && this.bytes >= this.maxBytes);
  }

  count(): number {
    return this.idx.length;
  }

  reset(): void {
    this.idx.length = 0;
    this.sizes.length = 0;
    this.bytes = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** Index of the snapshot being sent, in Snapshot state. */
  pendingSnapshot = 0;
  /** Heard from this peer since the last check-quorum round. */
  recentActive = false;
  /** Probe: an append is outstanding. Replicate: the in-flight window is full. */
  msgAppFlowPaused = false;
  readonly inflights: Inflights;

  constructor(
    next: number,
    public isLearner: boolean,
    maxInflight: number,
    maxInflightBytes: number,
  ) {
    this.next = next;
    this.inflights = new Inflights(maxInflight, maxInflightBytes);
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
  }

  /** Bookkeeping after sending an append with `entries` entries totalling `bytes`. */
  sentEntries(entries: number, bytes: number): void {
    if (this.state === ProgressState.Replicate) {
      if (entries > 0) {
        this.next += entries;
        this.inflights.add(this.next - 1, bytes);
      }
      this.msgAppFlowPaused = this.inflights.full();
    } else if (this.state === ProgressState.Probe) {
      if (entries > 0) this.msgAppFlowPaused = true;
    }
  }

  /** Records an acknowledgement up to `n`; returns whether `match` advanced. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * Handles a rejected append for index `rejected`; `matchHint` is the highest index the follower may
   * match. Returns false for stale rejections.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false; // stale
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false; // stale
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
      case ProgressState.Replicate:
        return this.msgAppFlowPaused;
      default:
        return true;
    }
  }
}

/** Configuration (voters, learners), per-peer progress and election votes. */
export class ProgressTracker {
  voters = new Set<NodeId>();
  learners = new Set<NodeId>();
  progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();

  constructor(
    readonly maxInflight: number,
    readonly maxInflightBytes: number,
  ) {}

  confState(): ConfState {
    return { voters: [...this.voters].sort(), learners: [...this.learners].sort() };
  }

  /** Replaces the configuration; every member gets a fresh progress with next = `next`. */
  reset(conf: ConfState, next: number): void {
    this.voters = new Set(conf.voters);
    this.learners = new Set(conf.learners.filter((l) => !this.voters.has(l)));
    this.progress = new Map();
    for (const id of this.voters) this.progress.set(id, this.newProgress(next, false));
    for (const id of this.learners) this.progress.set(id, this.newProgress(next, true));
  }

  newProgress(next: number, isLearner: boolean): Progress {
    const pr = new Progress(next, isLearner, this.maxInflight, this.maxInflightBytes);
    // A new peer counts as active so check-quorum does not immediately depose the leader.
    pr.recentActive = true;
    return pr;
  }

  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  committed(): number {
    return committedIndex(this.voters, (id) => this.progress.get(id)?.match ?? 0);
  }

  quorumActive(self: NodeId): boolean {
    let active = 0;
    for (const id of this.voters) {
      if (id === self || this.progress.get(id)?.recentActive) active++;
    }
    return active >= majority(this.voters.size);
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): VoteResult {
    return voteResult(this.voters, this.votes);
  }

  /** Whether the voters in `acks` form a quorum. */
  hasQuorum(acks: ReadonlySet<NodeId>): boolean {
    let n = 0;
    for (const id of this.voters) if (acks.has(id)) n++;
    return this.voters.size > 0 && n >= majority(this.voters.size);
  }
}
