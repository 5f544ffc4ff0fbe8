/**
 * Pending ReadIndex requests on the leader (etcd-io/raft read_only.go, ReadOnlySafe only).
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
