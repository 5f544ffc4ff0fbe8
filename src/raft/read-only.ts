/**
 * Pending ReadIndex requests on the leader (etcd-io/raft read_only.go, ReadOnlySafe) and the leader lease
 * (ReadOnlyLeaseBased, below).
 *
 * A read request records the commit index at the time it arrived; the leader then sends a heartbeat round
 * carrying the request context. Once a quorum of voters has answered that round, the leader knows it was
 * still the leader when the request arrived, so every read queued up to and including that one may be
 * served once the state machine has applied the recorded index.
 */
import type { NodeId } from './types.js';

export interface ReadRequest {
  /** Who asked: the leader itself (local) or a follower that forwarded the request. */
  from: NodeId;
  context: Uint8Array;
}

export interface ReadIndexStatus {
  req: ReadRequest;
  index: number;
  acks: Set<NodeId>;
}

export function contextKey(ctx: Uint8Array): string {
  let s = '';
  for (let i = 0; i < ctx.length; i++) s += String.fromCharCode(ctx[i]);
  return s;
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  /** Queues a request at commit index `index`. A duplicate context is ignored. */
  addRequest(index: number, req: ReadRequest): void {
    const key = contextKey(req.context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { req, index, acks: new Set() });
    this.queue.push(key);
  }

  /** Records a heartbeat acknowledgement carrying `context`; returns the acks so far (undefined if unknown). */
  recvAck(id: NodeId, context: Uint8Array): Set<NodeId> | undefined {
    const rs = this.pending.get(contextKey(context));
    if (!rs) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Dequeues (and returns) every request up to and including the one with `context`. */
  advance(context: Uint8Array): ReadIndexStatus[] {
    const key = contextKey(context);
    const i = this.queue.indexOf(key);
    if (i < 0) return [];
    const keys = this.queue.slice(0, i + 1);
    this.queue = this.queue.slice(i + 1);
    const out: ReadIndexStatus[] = [];
    for (const k of keys) {
      const rs = this.pending.get(k);
      if (rs) out.push(rs);
      this.pending.delete(k);
    }
    return out;
  }

  lastPendingRequestCtx(): Uint8Array | undefined {
    if (this.queue.length === 0) return undefined;
    return this.pending.get(this.queue[this.queue.length - 1])?.req.context;
  }

  size(): number {
    return this.queue.length;
  }
}

/**
 * Heartbeat rounds closer than this many ticks to the election timeout do not count for the lease: one
 * tick for the quantisation of the leader's clock, one for the follower's (its first tick after a reset
 * may come at once), one for clock drift (10% of the default 10-tick timeout, far above real oscillator
 * drift, so it also absorbs timer jitter).
 */
export const LEASE_GUARD_TICKS = 3;

/** First byte of a lease round's heartbeat context (the driver's read contexts are UTF-8: never 0xff). */
const LEASE_TAG = 0xff;

/** What the lease needs of the progress tracker. */
interface Voters {
  readonly voters: ReadonlySet<NodeId>;
  hasQuorum(acks: ReadonlySet<NodeId>): boolean;
}

const votersKey = (v: ReadonlySet<NodeId>): string => [...v].sort().join('\u0000');

/**
 * A leader lease (etcd ReadOnlyLeaseBased, made sound against slow acknowledgements). Every periodic
 * heartbeat without pending reads is a round tagged with the leader's tick count when it was sent. A
 * follower that receives it resets its election timer, and with checkQuorum it neither votes for another
 * candidate nor campaigns until `electionTick` of its own ticks have passed. So once a quorum acknowledged
 * the round sent at tick T, no other leader can be elected before T + electionTick; the lease holds while
 * `now - T <= electionTick - LEASE_GUARD_TICKS`. The start is the round's send time, not the time the
 * acknowledgement arrived, so a slow acknowledgement only shortens the lease.
 *
 * Assumptions (docs/raft.md): tick rates of leader and followers differ by less than the guard (the
 * driver derives a leader's ticks from the monotonic clock, so a stalled event loop cannot make its
 * lease last longer in real time); a voter that restarts stays down for longer than the lease (its fresh
 * core forgets that it heard from the leader). Leader transfer bypasses the followers' lease, so a leader
 * that started one serves no lease reads for the rest of its term; a configuration change invalidates
 * the lease until a round under the new configuration is acknowledged.
 */
export class Lease {
  private clock = 0;
  private start = Number.NEGATIVE_INFINITY;
  private startVoters = '';
  private revoked = false;
  /** Open rounds by send tick: who acknowledged (the leader counts itself). */
  private readonly rounds = new Map<number, Set<NodeId>>();

  constructor(private readonly electionTick: number) {}

  tick(): void {
    this.clock++;
  }

  /** A new term or role: nothing carries over. */
  reset(): void {
    this.start = Number.NEGATIVE_INFINITY;
    this.startVoters = '';
    this.revoked = false;
    this.rounds.clear();
  }

  /** No lease for the rest of this term (leader transfer started). */
  revoke(): void {
    this.reset();
    this.revoked = true;
  }

  /** The context for a heartbeat round sent now, or undefined when no lease can be had. */
  newRound(self: NodeId): Uint8Array | undefined {
    if (this.revoked || this.electionTick <= LEASE_GUARD_TICKS) return undefined;
    // Rounds too old to give a lease are dropped (Map iterates in insertion = tick order).
    for (const t of this.rounds.keys()) {
      if (t > this.clock - this.electionTick) break;
      this.rounds.delete(t);
    }
    if (!this.rounds.has(this.clock)) this.rounds.set(this.clock, new Set([self]));
    const digits = String(this.clock);
    const ctx = new Uint8Array(1 + digits.length);
    ctx[0] = LEASE_TAG;
    for (let i = 0; i < digits.length; i++) ctx[i + 1] = digits.charCodeAt(i);
    return ctx;
  }

  /** A heartbeat acknowledgement; true when it was for an open lease round (nothing else to do with it). */
  recvAck(from: NodeId, context: Uint8Array, trk: Voters): boolean {
    if (context.length < 2 || context[0] !== LEASE_TAG) return false;
    let t = 0;
    for (let i = 1; i < context.length; i++) {
      const d = context[i]! - 48;
      if (d < 0 || d > 9) return false;
      t = t * 10 + d;
    }
    const acks = this.rounds.get(t);
    if (acks === undefined) return false; // expired, or a read context that merely looks like one
    acks.add(from);
    if (!trk.hasQuorum(acks)) return true;
    if (t > this.start) {
      this.start = t;
      this.startVoters = votersKey(trk.voters);
    }
    for (const k of this.rounds.keys()) {
      if (k > t) break;
      this.rounds.delete(k);
    }
    return true;
  }

  /** Whether a read may be answered from the commit index now, without a heartbeat round. */
  holds(trk: Voters): boolean {
    return (
      !this.revoked &&
      this.clock - this.start <= this.electionTick - LEASE_GUARD_TICKS &&
      this.startVoters === votersKey(trk.voters)
    );
  }
}
