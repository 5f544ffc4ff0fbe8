/**
 * In-process transport for tests and benchmarks: a MemoryNetwork connects MemoryTransports by node id.
 * Messages are delivered asynchronously (batched on a setImmediate turn, or after `delayMs`), never
 * re-entrantly from `send`. Tests can partition nodes, isolate one, drop a fraction of messages and heal.
 * Messages are passed by reference: Raft treats them (and their entries) as immutable. Snapshots travel
 * as a stream of chunks (snapshot-stream.ts), each hop subject to loss and partitions like any message,
 * as they will over gRPC.
 */
import { chunkSnapshot, SnapshotAssembler, type SnapshotChunk } from './snapshot-stream.js';
import type { Transport, TransportReport } from './transport.js';
import { type Message, MessageType, type NodeId } from './types.js';

export interface MemoryNetworkOptions {
  /** Delivery delay in ms (0: next setImmediate turn). */
  delayMs?: number;
  /** Probability in [0, 1) of dropping any one message. */
  dropRate?: number;
  /** Random source for drops (default Math.random). */
  random?: () => number;
  /** Snapshot images are streamed in chunks of at most this many bytes (default 64 KiB). */
  snapshotChunkBytes?: number;
  /** A receiver refuses snapshot images larger than this (default 1 GiB). */
  maxSnapshotBytes?: number;
}

type Frame = { kind: 'message'; m: Message } | { kind: 'chunk'; c: SnapshotChunk };

export class MemoryNetwork {
  private readonly nodes = new Map<NodeId, MemoryTransport>();
  /** Blocked directed links "from->to". */
  private readonly blocked = new Set<string>();
  private queue: Frame[] = [];
  private flushScheduled = false;
  delayMs: number;
  dropRate: number;
  private readonly random: () => number;
  readonly snapshotChunkBytes: number;
  readonly maxSnapshotBytes: number;
  /** Counters for tests and benchmarks. */
  readonly stats = { sent: 0, delivered: 0, dropped: 0, snapshotChunks: 0, snapshotsAssembled: 0 };

  constructor(options: MemoryNetworkOptions = {}) {
    this.delayMs = options.delayMs ?? 0;
    this.dropRate = options.dropRate ?? 0;
    this.random = options.random ?? Math.random;
    this.snapshotChunkBytes = options.snapshotChunkBytes ?? 64 * 1024;
    this.maxSnapshotBytes = options.maxSnapshotBytes ?? 1 << 30;
  }

  /** The transport of node `id` (created on first use; a closed one is replaced). */
  transport(id: NodeId): MemoryTransport {
    let t = this.nodes.get(id);
    if (!t || t.closed) {
      t = new MemoryTransport(id, this);
      this.nodes.set(id, t);
    }
    return t;
  }

  /** Cuts the links between `a` and `b` in both directions. */
  partition(a: NodeId, b: NodeId): void {
    this.blocked.add(`${a}->${b}`);
    this.blocked.add(`${b}->${a}`);
  }

  /** Cuts every link of `id`. */
  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.partition(id, other);
  }

  /** Restores all links. */
  heal(): void {
    this.blocked.clear();
  }

  /** Whether `to` is registered, open and reachable from `from`. */
  reachable(from: NodeId, to: NodeId): boolean {
    const t = this.nodes.get(to);
    return t !== undefined && !t.closed && !this.blocked.has(`${from}->${to}`);
  }

  /** @internal */
  enqueue(from: MemoryTransport, messages: Message[]): void {
    for (const m of messages) {
      this.stats.sent++;
      if (!this.reachable(from.id, m.to)) {
        this.stats.dropped++;
        from.report({ kind: 'unreachable', to: m.to });
        if (m.type === MessageType.Snap) from.report({ kind: 'snapshot', to: m.to, ok: false });
        continue;
      }
      if (m.type === MessageType.Snap && m.snapshot !== undefined) {
        let lost = false;
        for (const c of chunkSnapshot(m, this.snapshotChunkBytes)) {
          this.stats.snapshotChunks++;
          if (this.dropRate > 0 && this.random() < this.dropRate) {
            this.stats.dropped++;
            lost = true;
            continue;
          }
          this.push({ kind: 'chunk', c });
        }
        from.report({ kind: 'snapshot', to: m.to, ok: !lost });
        continue;
      }
      if (this.dropRate > 0 && this.random() < this.dropRate) {
        this.stats.dropped++;
        continue;
      }
      this.push({ kind: 'message', m });
    }
    if (this.queue.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private push(f: Frame): void {
    if (this.delayMs > 0) setTimeout(() => this.deliver(f), this.delayMs);
    else this.queue.push(f);
  }

  private flush(): void {
    this.flushScheduled = false;
    const q = this.queue;
    this.queue = [];
    for (const m of q) this.deliver(m);
  }

  private deliver(f: Frame): void {
    const h = f.kind === 'message' ? f.m : f.c.header;
    // Links may have been cut (or the node stopped) while the message was in flight.
    if (!this.reachable(h.from, h.to)) {
      this.stats.dropped++;
      return;
    }
    const node = this.nodes.get(h.to)!;
    if (f.kind === 'message') {
      this.stats.delivered++;
      node.receive(f.m);
      return;
    }
    const r = node.assembler.add(f.c);
    if (r.kind === 'complete') {
      this.stats.delivered++;
      this.stats.snapshotsAssembled++;
      node.receive(r.message);
    } else if (r.kind === 'discarded') {
      this.stats.dropped++;
    }
  }

  /** @internal */
  detach(t: MemoryTransport): void {
    if (this.nodes.get(t.id) === t) this.nodes.delete(t.id);
  }
}

export class MemoryTransport implements Transport {
  closed = false;
  /** @internal */
  readonly assembler: SnapshotAssembler;
  private handler: ((m: Message) => void) | undefined;
  private reporter: ((r: TransportReport) => void) | undefined;

  constructor(
    readonly id: NodeId,
    private readonly network: MemoryNetwork,
  ) {
    this.assembler = new SnapshotAssembler(network.maxSnapshotBytes);
  }

  send(messages: Message[]): void {
    if (this.closed || messages.length === 0) return;
    this.network.enqueue(this, messages);
  }

  onMessage(handler: (message: Message) => void): void {
    this.handler = handler;
  }

  onReport(handler: (report: TransportReport) => void): void {
    this.reporter = handler;
  }

  /** @internal */
  receive(m: Message): void {
    if (!this.closed) this.handler?.(m);
  }

  /** @internal */
  report(r: TransportReport): void {
    if (!this.closed) this.reporter?.(r);
  }

  close(): Promise<void> {
    this.closed = true;
    this.handler = undefined;
    this.reporter = undefined;
    this.network.detach(this);
    return Promise.resolve();
  }
}
