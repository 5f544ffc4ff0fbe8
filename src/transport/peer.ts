/**
 * Multi-Raft peer transport: one gRPC server and one connection per peer node, shared by every shard's
 * Raft group on this node.
 *
 *  - Outgoing: per destination node one bidi `PeerService.Raft` stream, opened lazily on the first
 *    message and reopened after a failure with capped exponential backoff plus jitter (injected random
 *    source). Messages of all shards for that node go into one bounded queue and leave as frames,
 *    flushed once per event-loop turn: heartbeats of every shard coalesce into the same frame. When the
 *    queue is full the oldest droppable message (anything but an election message) makes room, else the
 *    new message is dropped; Raft tolerates loss and every drop is counted.
 *  - While a peer's stream is backing off, messages to it are dropped and each sending shard hears
 *    `unreachable` (as it does when the stream fails).
 *  - Snap messages do not travel on the stream: each goes as one `PeerService.Snapshot` call, cut into
 *    bounded chunks (chunkSnapshot), reassembled and verified by the receiver (SnapshotAssembler); the
 *    sending shard hears `snapshot ok/failed`.
 *  - Incoming messages are dispatched to the handler registered for their shard.
 *  - `forward()` / `onForward` carry a write batch for one shard to the node holding its leader.
 *
 * `shard(n)` is a per-shard view implementing src/raft/transport.ts's Transport, so a RaftDriver per
 * shard plugs in unchanged.
 */
import type * as grpc from '@grpc/grpc-js';
import { type HelloAnswer, nodeOfMember } from '../cluster/member.js';
import { fromItemError, isTidemarkError, TidemarkError, toItemError } from '../errors/index.js';
import {
  type ForwardResponse,
  type HelloResponse,
  PeerService,
  type RaftRequest,
} from '../gen/tidemark/v1/peer_pb.js';
import { chunkSnapshot, DEFAULT_SNAPSHOT_CHUNK_BYTES, SnapshotAssembler } from '../raft/snapshot-stream.js';
import type { Transport, TransportReport } from '../raft/transport.js';
import { type Message, MessageType, type NodeId } from '../raft/types.js';
import {
  addService,
  asMessage,
  bindServer,
  type CallContext,
  type CallOptions,
  type ClientOptions,
  createClient,
  createServer,
  DEFAULT_MAX_MESSAGE_BYTES,
  PreEncoded,
  type ServiceClient,
  shutdownServer,
} from './grpc-adapter.js';
import { chunkFromPb, chunkToPb, estimateBytes, messageFromPb, toNumber } from './raft-codec.js';
import { decodeRaftRequest, encodeRaftRequest, type FrameItem } from './raft-frame.js';

export interface ForwardRequestInfo {
  shard: number;
  /** An encoded WriteBatch. */
  batch: Uint8Array;
  /** Absolute deadline (ms since the epoch), if any. */
  deadline: number | undefined;
  /** Aborted when the forwarding node gives up. */
  signal: AbortSignal;
}

export interface ForwardResult {
  accepted: number;
  rejected: Array<{ seriesIndex: number; sampleIndex: number; reason: string }>;
}

/** Handles a batch forwarded by another node (throw TidemarkError, e.g. NOT_LEADER with a hint). */
export type ForwardHandler = (request: ForwardRequestInfo) => Promise<ForwardResult>;

export interface PeerTransportOptions {
  /** This node's id. */
  id: NodeId;
  /** Peer node id → peer API address (host:port). Updatable with setPeers/setPeer. */
  peers?: Record<NodeId, string> | Map<NodeId, string>;
  /** Address to bind the peer API on when no `server` is given (default 127.0.0.1:0). */
  listen?: string;
  /** Serve on this (caller-owned, caller-bound) gRPC server instead of creating one. */
  server?: grpc.Server;
  /** Uniform [0, 1) source for backoff jitter (default Math.random). */
  random?: () => number;
  /** Messages queued per peer before dropping (default 8192). */
  maxQueue?: number;
  /** A frame is split once its estimated size passes this (default 4 MiB, at most maxMessageBytes / 2). */
  maxFrameBytes?: number;
  /** gRPC message size limit, both directions (default 16 MiB). */
  maxMessageBytes?: number;
  /** Snapshot chunk size (default 1 MiB; kept below maxMessageBytes). */
  snapshotChunkBytes?: number;
  /** Largest snapshot image accepted (default 1 GiB). */
  maxSnapshotBytes?: number;
  /** Deadline of one snapshot transfer (default 5 minutes). */
  snapshotTimeoutMs?: number;
  /** Reconnect backoff: first delay, cap (defaults 50 ms, 2 s); each delay is jittered to [50%, 100%]. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Serves PeerService.Forward; without it forwarded writes fail with FAILED_PRECONDITION. */
  onForward?: ForwardHandler;
  /** Serves PeerService.Hello (membership: docs/cluster.md); without it the node answers "not started". */
  onHello?: () => HelloAnswer;
  /** Serves PeerService.Join: adds a member to a shard this node leads; resolves whether it is a member now. */
  onJoin?: (shard: number, member: string) => Promise<boolean>;
  /** Channel credentials for outgoing connections / server credentials (default insecure). */
  channelCredentials?: grpc.ChannelCredentials;
  serverCredentials?: grpc.ServerCredentials;
}

export interface PeerTransportStats {
  framesSent: number;
  messagesSent: number;
  /** Messages dropped: queue full, peer unknown or backing off, stream failed with them queued, oversized. */
  messagesDropped: number;
  framesReceived: number;
  messagesReceived: number;
  /** Received messages for a shard with no registered handler (or undecodable). */
  messagesDiscarded: number;
  streamsOpened: number;
  streamFailures: number;
  snapshotsSent: number;
  snapshotsFailed: number;
  snapshotsReceived: number;
  snapshotsRejected: number;
  /** Forward calls sent: one per forward sent alone, one per ForwardBatch. */
  forwardCalls: number;
  /** Forwards sent inside a ForwardBatch. */
  forwardsBatched: number;
}

interface ShardHandler {
  onMessage?: (message: Message) => void;
  onReport?: (report: TransportReport) => void;
}

interface Queued {
  shard: number;
  m: Message;
}

type PeerClient = ServiceClient<typeof PeerService>;
type RaftStream = ReturnType<PeerClient['raft']>;

interface Peer {
  id: NodeId;
  address: string;
  client: PeerClient | undefined;
  /** Forwards made in this event-loop turn, sent together a microtask later (see forward()). */
  forwards: PendingForward[] | undefined;
  /** The peer answered ForwardBatch with UNIMPLEMENTED (an older version): forwards go one call each. */
  noForwardBatch: boolean;
  stream: RaftStream | undefined;
  state: 'idle' | 'open' | 'backoff';
  /** Waiting for the stream's write buffer to drain. */
  blocked: boolean;
  attempts: number;
  timer: NodeJS.Timeout | undefined;
  queue: Queued[];
  /** Shards that sent on the current stream: told `unreachable` when it fails. */
  shards: Set<number>;
}

function forwardResult(res: ForwardResponse | undefined): ForwardResult {
  return {
    accepted: toNumber(res?.accepted ?? 0n),
    rejected: (res?.rejected ?? []).map((r) => ({
      seriesIndex: r.seriesIndex,
      sampleIndex: r.sampleIndex,
      reason: r.reason,
    })),
  };
}

interface PendingForward {
  shard: number;
  batch: Uint8Array;
  deadline: number | undefined;
  resolve: (r: ForwardResult) => void;
  reject: (err: unknown) => void;
}

/** Most forwards in one ForwardBatch (proto/tidemark/v1/peer.proto); a larger turn sends several. */
export const MAX_FORWARD_BATCH = 4096;

/** Messages whose loss costs an election round rather than a retry: kept when the queue overflows. */
function essential(t: MessageType): boolean {
  return (
    t === MessageType.Vote ||
    t === MessageType.VoteResp ||
    t === MessageType.PreVote ||
    t === MessageType.PreVoteResp ||
    t === MessageType.TimeoutNow
  );
}

function toMap(peers: Record<NodeId, string> | Map<NodeId, string> | undefined): Map<NodeId, string> {
  if (peers === undefined) return new Map();
  return peers instanceof Map ? new Map(peers) : new Map(Object.entries(peers));
}

/** An async iterable that yields nothing and ends when `done` settles (a stream with no responses). */
function silent(done: Promise<void>): AsyncIterable<never> {
  return {
    [Symbol.asyncIterator]: () => ({
      next: () => done.then(() => ({ done: true as const, value: undefined as never })),
    }),
  };
}

export class PeerTransport {
  readonly id: NodeId;
  /** Bound port (0 when serving on a caller's server). */
  readonly port: number;
  readonly stats: PeerTransportStats = {
    framesSent: 0,
    messagesSent: 0,
    messagesDropped: 0,
    framesReceived: 0,
    messagesReceived: 0,
    messagesDiscarded: 0,
    streamsOpened: 0,
    streamFailures: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
    snapshotsReceived: 0,
    snapshotsRejected: 0,
    forwardCalls: 0,
    forwardsBatched: 0,
  };

  private readonly server: grpc.Server;
  private readonly ownServer: boolean;
  private readonly peers = new Map<NodeId, Peer>();
  private readonly handlers = new Map<number, ShardHandler>();
  private readonly random: () => number;
  private readonly maxQueue: number;
  private readonly maxFrameBytes: number;
  private readonly maxMessageBytes: number;
  private readonly chunkBytes: number;
  private readonly maxSnapshotBytes: number;
  private readonly snapshotTimeoutMs: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;
  private readonly onForward: ForwardHandler | undefined;
  private readonly onHello: (() => HelloAnswer) | undefined;
  private readonly onJoin: ((shard: number, member: string) => Promise<boolean>) | undefined;
  private readonly clientOptions: ClientOptions;
  private readonly snapshotsInFlight = new Set<string>();
  private reports: Array<{ shard: number; report: TransportReport }> = [];
  private readonly reportKeys = new Set<string>();
  private local: Queued[] = [];
  private flushScheduled = false;
  private closed = false;

  private constructor(options: PeerTransportOptions, server: grpc.Server, ownServer: boolean, port: number) {
    this.id = options.id;
    this.server = server;
    this.ownServer = ownServer;
    this.port = port;
    this.random = options.random ?? Math.random;
    this.maxQueue = options.maxQueue ?? 8192;
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.maxFrameBytes = Math.min(options.maxFrameBytes ?? 4 * 1024 * 1024, this.maxMessageBytes / 2);
    this.chunkBytes = Math.min(
      options.snapshotChunkBytes ?? DEFAULT_SNAPSHOT_CHUNK_BYTES,
      Math.floor(this.maxMessageBytes / 2),
    );
    this.maxSnapshotBytes = options.maxSnapshotBytes ?? 1 << 30;
    this.snapshotTimeoutMs = options.snapshotTimeoutMs ?? 5 * 60_000;
    this.backoffInitialMs = options.backoffInitialMs ?? 50;
    this.backoffMaxMs = options.backoffMaxMs ?? 2000;
    this.onForward = options.onForward;
    this.onHello = options.onHello;
    this.onJoin = options.onJoin;
    this.clientOptions = {
      maxMessageBytes: this.maxMessageBytes,
      reconnectInitialMs: this.backoffInitialMs,
      reconnectMaxMs: this.backoffMaxMs,
    };
    if (options.channelCredentials !== undefined) this.clientOptions.credentials = options.channelCredentials;
    for (const [id, address] of toMap(options.peers)) this.addPeer(id, address);
  }

  /**
   * Creates the transport and registers PeerService: on `options.server` if given (the caller binds and
   * shuts it down), else on a new server bound to `options.listen`.
   */
  static async start(options: PeerTransportOptions): Promise<PeerTransport> {
    const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const own = options.server === undefined;
    const server = options.server ?? createServer({ maxMessageBytes });
    const t = new PeerTransport(options, server, own, 0);
    t.serve();
    if (own) {
      try {
        const port = await bindServer(server, options.listen ?? '127.0.0.1:0', options.serverCredentials);
        (t as { port: number }).port = port;
      } catch (err) {
        server.forceShutdown();
        throw err;
      }
    }
    return t;
  }

  // -------------------------------------------------------------------------------------------------------
  // Registration and the per-shard view

  /** Sets the handlers for messages (and delivery reports) of `shard`; replaces earlier ones. */
  register(
    shard: number,
    onMessage: (message: Message) => void,
    onReport?: (r: TransportReport) => void,
  ): void {
    const h = this.handlers.get(shard) ?? {};
    h.onMessage = onMessage;
    if (onReport !== undefined) h.onReport = onReport;
    this.handlers.set(shard, h);
  }

  unregister(shard: number): void {
    this.handlers.delete(shard);
  }

  /** The Transport a shard's RaftDriver uses. */
  /**
   * The transport of one local shard replica. With `member`, messages addressed to another member id of this
   * node (an earlier incarnation, removed from the group) are dropped instead of confusing the replica.
   */
  shard(shard: number, member?: string): Transport {
    return new ShardTransport(this, shard, member);
  }

  /** @internal Makes `h` the handler of `shard` (a view's own object, so its close removes only itself). */
  install(shard: number, h: ShardHandler): void {
    this.handlers.set(shard, h);
  }

  /** @internal Removes `h` if it is still the handler of `shard`. */
  uninstall(shard: number, h: ShardHandler): void {
    if (this.handlers.get(shard) === h) this.handlers.delete(shard);
  }

  // -------------------------------------------------------------------------------------------------------
  // Peers

  /** Replaces the peer address map (streams to changed or removed peers are closed). */
  setPeers(peers: Record<NodeId, string> | Map<NodeId, string>): void {
    const next = toMap(peers);
    for (const id of [...this.peers.keys()]) if (!next.has(id)) this.removePeer(id);
    for (const [id, address] of next) this.setPeer(id, address);
  }

  /** Adds a peer or changes its address. */
  setPeer(id: NodeId, address: string): void {
    const p = this.peers.get(id);
    if (p === undefined) {
      this.addPeer(id, address);
      return;
    }
    if (p.address === address) return;
    this.disconnect(p);
    p.address = address;
    p.attempts = 0;
  }

  removePeer(id: NodeId): void {
    const p = this.peers.get(id);
    if (p === undefined) return;
    this.disconnect(p);
    this.stats.messagesDropped += p.queue.length;
    p.queue = [];
    this.peers.delete(id);
  }

  /** Peer ids and addresses. */
  peerAddresses(): Map<NodeId, string> {
    return new Map([...this.peers.values()].map((p) => [p.id, p.address]));
  }

  private addPeer(id: NodeId, address: string): void {
    this.peers.set(id, {
      id,
      address,
      client: undefined,
      forwards: undefined,
      noForwardBatch: false,
      stream: undefined,
      state: 'idle',
      blocked: false,
      attempts: 0,
      timer: undefined,
      queue: [],
      shards: new Set(),
    });
  }

  private disconnect(p: Peer): void {
    const s = p.stream;
    p.stream = undefined;
    s?.cancel();
    p.client?.close();
    p.client = undefined;
    if (p.timer !== undefined) clearTimeout(p.timer);
    p.timer = undefined;
    p.state = 'idle';
    p.blocked = false;
  }

  private clientOf(p: Peer): PeerClient {
    p.client ??= createClient(PeerService, p.address, this.clientOptions);
    return p.client;
  }

  // -------------------------------------------------------------------------------------------------------
  // Sending

  /** Queues messages of `shard` for delivery; never blocks or throws for an unreachable peer. */
  send(shard: number, messages: Message[]): void {
    if (this.closed) return;
    for (const m of messages) {
      // Messages name Raft members; a member lives on the node its id starts with (../cluster/member.ts).
      const to = nodeOfMember(m.to);
      if (to === this.id) {
        this.local.push({ shard, m });
        continue;
      }
      if (m.type === MessageType.Snap && m.snapshot !== undefined) {
        void this.sendSnapshot(shard, m);
        continue;
      }
      const p = this.peers.get(to);
      if (p === undefined || p.state === 'backoff') {
        this.stats.messagesDropped++;
        this.report(shard, { kind: 'unreachable', to: m.to });
        continue;
      }
      if (estimateBytes(m) > this.maxMessageBytes - 4096) {
        this.stats.messagesDropped++;
        continue;
      }
      if (p.queue.length >= this.maxQueue) {
        // Make room by dropping the oldest droppable message; if all are election messages, drop this one.
        this.stats.messagesDropped++;
        const i = p.queue.findIndex((q) => !essential(q.m.type));
        if (i < 0) continue;
        p.queue.splice(i, 1);
      }
      p.queue.push({ shard, m });
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Once per turn: one frame (split only past maxFrameBytes) per peer with everything queued for it. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    for (const p of this.peers.values()) {
      if (p.queue.length === 0 || p.blocked) continue;
      if (p.state === 'idle') this.open(p);
      const stream = p.stream;
      if (p.state !== 'open' || stream === undefined) continue;
      const queue = p.queue;
      p.queue = [];
      let frame: FrameItem[] = [];
      let bytes = 0;
      const write = () => {
        this.stats.framesSent++;
        this.stats.messagesSent += frame.length;
        // Encoded by hand (./raft-frame.ts): the same bytes as protobuf-es, without a BigInt per field.
        const ok = stream.write(asMessage<RaftRequest>(encodeRaftRequest(this.id, p.id, frame)));
        frame = [];
        bytes = 0;
        return ok;
      };
      let ok = true;
      for (const q of queue) {
        const size = estimateBytes(q.m);
        if (frame.length > 0 && bytes + size > this.maxFrameBytes) ok = write() && ok;
        frame.push({ shard: q.shard, m: q.m });
        p.shards.add(q.shard);
        bytes += size;
      }
      if (frame.length > 0) ok = write() && ok;
      if (!ok) {
        p.blocked = true;
        void stream.drained().then(() => {
          if (p.stream !== stream) return;
          p.blocked = false;
          if (p.queue.length > 0) this.schedule();
        });
      }
    }
    const local = this.local;
    this.local = [];
    for (const q of local) this.dispatch(q.shard, q.m);
    this.deliverReports();
  }

  private open(p: Peer): void {
    const stream = this.clientOf(p).raft();
    p.stream = stream;
    p.state = 'open';
    p.blocked = false;
    p.shards = new Set();
    this.stats.streamsOpened++;
    void stream.opened.then((up) => {
      if (up && p.stream === stream) p.attempts = 0;
    });
    // Keep the (empty in v1) response side flowing.
    void (async () => {
      try {
        for await (const _ of stream) {
          // RaftResponse frames are reserved.
        }
      } catch {
        // Reported through `closed`.
      }
    })();
    void stream.closed.then(() => this.streamClosed(p, stream));
  }

  private streamClosed(p: Peer, stream: RaftStream): void {
    if (p.stream !== stream || this.closed) return;
    p.stream = undefined;
    p.blocked = false;
    this.stats.streamFailures++;
    this.stats.messagesDropped += p.queue.length;
    for (const q of p.queue) p.shards.add(q.shard);
    p.queue = [];
    for (const shard of p.shards) this.report(shard, { kind: 'unreachable', to: p.id });
    p.shards = new Set();
    const cap = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** Math.min(p.attempts, 30));
    const delay = cap * (0.5 + 0.5 * this.random());
    p.attempts++;
    p.state = 'backoff';
    p.timer = setTimeout(() => {
      p.timer = undefined;
      if (p.state === 'backoff') p.state = 'idle';
    }, delay);
    p.timer.unref();
    this.deliverReports();
  }

  private report(shard: number, report: TransportReport): void {
    const key = `${shard}/${report.kind}/${report.to}/${report.kind === 'snapshot' ? report.ok : ''}`;
    if (report.kind === 'unreachable' && this.reportKeys.has(key)) return;
    this.reportKeys.add(key);
    this.reports.push({ shard, report });
    this.schedule();
  }

  private deliverReports(): void {
    const reports = this.reports;
    this.reports = [];
    this.reportKeys.clear();
    for (const { shard, report } of reports) {
      try {
        this.handlers.get(shard)?.onReport?.(report);
      } catch {
        // A handler's failure is its own.
      }
    }
  }

  private dispatch(shard: number, m: Message): void {
    const h = this.handlers.get(shard)?.onMessage;
    if (h === undefined) {
      this.stats.messagesDiscarded++;
      return;
    }
    this.stats.messagesReceived++;
    try {
      h(m);
    } catch {
      // A handler's failure is its own.
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Snapshots

  private async sendSnapshot(shard: number, m: Message): Promise<void> {
    const key = `${m.to}/${shard}`;
    const p = this.peers.get(nodeOfMember(m.to));
    if (p === undefined || this.snapshotsInFlight.has(key)) {
      this.stats.snapshotsFailed++;
      if (p === undefined) this.report(shard, { kind: 'unreachable', to: m.to });
      this.report(shard, { kind: 'snapshot', to: m.to, ok: false });
      return;
    }
    this.snapshotsInFlight.add(key);
    let ok = false;
    try {
      const call = this.clientOf(p).snapshot({ timeoutMs: this.snapshotTimeoutMs });
      let failed = false;
      call.response.then(
        () => {},
        () => {
          failed = true;
        },
      );
      for (const c of chunkSnapshot(m, this.chunkBytes)) {
        if (failed || this.closed) break;
        if (!call.write({ chunk: chunkToPb(shard, c) })) await call.drained();
      }
      if (this.closed) call.cancel();
      await call.end();
      ok = true;
    } catch {
      ok = false;
    } finally {
      this.snapshotsInFlight.delete(key);
    }
    if (ok) this.stats.snapshotsSent++;
    else this.stats.snapshotsFailed++;
    this.report(shard, { kind: 'snapshot', to: m.to, ok });
  }

  // -------------------------------------------------------------------------------------------------------
  // Membership

  /** Asks node `to` whether its shard groups made progress (PeerService.Hello). Rejects with TidemarkError. */
  async hello(to: NodeId, timeoutMs: number): Promise<HelloAnswer> {
    const p = this.peerOrThrow(to);
    const res: HelloResponse = await this.clientOf(p).hello({ from: this.id }, { timeoutMs });
    return {
      node: res.node,
      started: res.started,
      progressedShards: [...res.progressedShards],
      clientAddress: res.clientAddress,
    };
  }

  /** Asks node `to` (if it leads `shard`) to add `member`; resolves whether it is a member now. */
  async join(to: NodeId, shard: number, member: string, timeoutMs: number): Promise<boolean> {
    const p = this.peerOrThrow(to);
    return (await this.clientOf(p).join({ shard, member }, { timeoutMs })).member;
  }

  private peerOrThrow(to: NodeId): Peer {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'peer transport is closed');
    const p = this.peers.get(to);
    if (p === undefined) throw new TidemarkError('UNAVAILABLE', 'unknown_peer', `no address for node ${to}`);
    return p;
  }

  // -------------------------------------------------------------------------------------------------------
  // Forwarding

  /**
   * Forwards an encoded WriteBatch for `shard` to node `to` (the shard's leader there); rejects with
   * TidemarkError. Forwards to the same node made before the next microtask checkpoint (a coordinator's parts
   * of one request, started together) leave together as one ForwardBatch call, each answered on its own: one
   * HTTP/2 request and its headers instead of one per shard. A forward with a `signal` goes alone.
   */
  async forward(
    to: NodeId,
    shard: number,
    batch: Uint8Array,
    options: Pick<CallOptions, 'timeoutMs' | 'deadline' | 'signal'> = {},
  ): Promise<ForwardResult> {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'peer transport is closed');
    const p = this.peers.get(to);
    if (p === undefined) throw new TidemarkError('UNAVAILABLE', 'unknown_peer', `no address for node ${to}`);
    let deadline: number | undefined;
    if (options.deadline !== undefined)
      deadline = options.deadline instanceof Date ? options.deadline.getTime() : options.deadline;
    else if (options.timeoutMs !== undefined) deadline = Date.now() + options.timeoutMs;
    if (options.signal !== undefined || p.noForwardBatch) {
      return this.forwardOne(p, shard, batch, deadline, options.signal);
    }
    return new Promise<ForwardResult>((resolve, reject) => {
      if (p.forwards === undefined) {
        const pending: PendingForward[] = [];
        p.forwards = pending;
        queueMicrotask(() => {
          if (p.forwards === pending) p.forwards = undefined;
          this.sendForwards(p, pending);
        });
      }
      p.forwards.push({ shard, batch, deadline, resolve, reject });
    });
  }

  private async forwardOne(
    p: Peer,
    shard: number,
    batch: Uint8Array,
    deadline: number | undefined,
    signal?: AbortSignal,
  ): Promise<ForwardResult> {
    const callOptions: CallOptions = {};
    if (deadline !== undefined) callOptions.deadline = deadline;
    if (signal !== undefined) callOptions.signal = signal;
    this.stats.forwardCalls++;
    const res: ForwardResponse = await this.clientOf(p).forward(
      { shard, batch, deadlineUnixMs: BigInt(deadline ?? 0) },
      callOptions,
    );
    return forwardResult(res);
  }

  private sendForwards(p: Peer, pending: PendingForward[]): void {
    if (pending.length === 1 || p.noForwardBatch) {
      for (const f of pending) this.forwardOne(p, f.shard, f.batch, f.deadline).then(f.resolve, f.reject);
      return;
    }
    for (let from = 0; from < pending.length; from += MAX_FORWARD_BATCH) {
      const part = pending.slice(from, from + MAX_FORWARD_BATCH);
      // The call lives as long as its longest-lived forward; each carries its own deadline, which the
      // receiving node applies to that forward alone.
      let deadline: number | undefined = 0;
      for (const f of part)
        deadline =
          f.deadline === undefined || deadline === undefined ? undefined : Math.max(deadline, f.deadline);
      void this.sendForwardBatch(p, part, deadline);
    }
  }

  private async sendForwardBatch(
    p: Peer,
    part: PendingForward[],
    deadline: number | undefined,
  ): Promise<void> {
    try {
      this.stats.forwardCalls++;
      this.stats.forwardsBatched += part.length;
      const res = await this.clientOf(p).forwardBatch(
        {
          forwards: part.map((f) => ({
            shard: f.shard,
            batch: f.batch,
            deadlineUnixMs: BigInt(f.deadline ?? 0),
          })),
        },
        deadline === undefined ? {} : { deadline },
      );
      part.forEach((f, i) => {
        const r = res.results[i];
        if (r === undefined || r.shard !== f.shard) {
          f.reject(
            new TidemarkError(
              'INTERNAL',
              'batch_answer_invalid',
              `node ${p.id} answered shard ${r?.shard ?? 'none'} in place of shard ${f.shard}`,
            ),
          );
        } else if (r.errorCode !== '') f.reject(fromItemError(r));
        else f.resolve(forwardResult(r.response));
      });
    } catch (err) {
      if (isTidemarkError(err) && err.reason === 'unimplemented') {
        // A peer of an older version: one call per forward from now on.
        p.noForwardBatch = true;
        for (const f of part) this.forwardOne(p, f.shard, f.batch, f.deadline).then(f.resolve, f.reject);
        return;
      }
      for (const f of part) f.reject(err);
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Serving

  private serve(): void {
    addService(
      this.server,
      PeerService,
      {
        raft: (requests, ctx) => silent(this.serveRaft(requests, ctx)),
        snapshot: async (requests) => {
          const asm = new SnapshotAssembler(this.maxSnapshotBytes);
          let shard: number | undefined;
          try {
            for await (const req of requests) {
              this.ensureOpen();
              const { shard: s, chunk } = chunkFromPb(req.chunk);
              if (shard === undefined) shard = s;
              else if (s !== shard)
                throw new TidemarkError('DATA_CORRUPTION', 'snapshot_shard_mismatch', 'chunks of two shards');
              if (nodeOfMember(chunk.header.to) !== this.id) throw this.wrongNode(chunk.header.to);
              const r = asm.add(chunk);
              if (r.kind === 'discarded') throw r.error;
              if (r.kind === 'complete') {
                if (this.handlers.get(shard)?.onMessage === undefined)
                  throw new TidemarkError('NOT_FOUND', 'unknown_shard', `shard ${shard} has no replica here`);
                this.stats.snapshotsReceived++;
                this.dispatch(shard, r.message);
                return { shard, bytes: BigInt(chunk.total) };
              }
            }
            throw new TidemarkError('DATA_CORRUPTION', 'snapshot_incomplete', 'snapshot stream ended early');
          } catch (err) {
            this.stats.snapshotsRejected++;
            throw err;
          }
        },
        forward: async (req, ctx) => {
          this.ensureOpen();
          if (this.onForward === undefined)
            throw new TidemarkError(
              'FAILED_PRECONDITION',
              'forward_unsupported',
              'this node takes no forwards',
            );
          const d = toNumber(req.deadlineUnixMs);
          const r = await this.onForward({
            shard: req.shard,
            batch: req.batch,
            deadline: d > 0 ? d : ctx.deadline,
            signal: ctx.signal,
          });
          return { accepted: BigInt(r.accepted), rejected: r.rejected };
        },
        forwardBatch: async (req, ctx) => {
          this.ensureOpen();
          if (req.forwards.length > MAX_FORWARD_BATCH) {
            throw new TidemarkError(
              'INVALID_ARGUMENT',
              'forward_batch_too_large',
              `a ForwardBatch holds at most ${MAX_FORWARD_BATCH} forwards, got ${req.forwards.length}`,
              { field: 'forwards' },
            );
          }
          const handler = this.onForward;
          const results = await Promise.all(
            req.forwards.map(async (f) => {
              try {
                if (handler === undefined)
                  throw new TidemarkError(
                    'FAILED_PRECONDITION',
                    'forward_unsupported',
                    'this node takes no forwards',
                  );
                const d = toNumber(f.deadlineUnixMs);
                const r = await handler({
                  shard: f.shard,
                  batch: f.batch,
                  deadline: d > 0 ? d : ctx.deadline,
                  signal: ctx.signal,
                });
                return { shard: f.shard, response: { accepted: BigInt(r.accepted), rejected: r.rejected } };
              } catch (err) {
                return { shard: f.shard, ...toItemError(err) };
              }
            }),
          );
          return { results };
        },
        hello: async () => {
          this.ensureOpen();
          const a = this.onHello?.() ?? { node: this.id, started: false, progressedShards: [] };
          return {
            node: a.node,
            started: a.started,
            progressedShards: a.progressedShards,
            clientAddress: a.clientAddress ?? '',
          };
        },
        join: async (req) => {
          this.ensureOpen();
          if (this.onJoin === undefined)
            throw new TidemarkError('FAILED_PRECONDITION', 'join_unsupported', 'this node takes no joins');
          return { member: await this.onJoin(req.shard, req.member) };
        },
      },
      { rawRequests: ['raft'] },
    );
  }

  private async serveRaft(requests: AsyncIterable<RaftRequest>, ctx: CallContext): Promise<void> {
    this.ensureOpen();
    ctx.sendHeaders();
    for await (const req of requests) {
      if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'peer transport is closed');
      // Frames arrive as wire bytes (rawRequests in serve()) and are decoded by hand (./raft-frame.ts).
      if (req instanceof PreEncoded) {
        const f = decodeRaftRequest(req.bytes);
        if (f.to !== this.id) throw this.wrongNode(f.to);
        this.stats.framesReceived++;
        for (const { shard, m } of f.messages) {
          if (isTidemarkError(m)) this.stats.messagesDiscarded++;
          else this.dispatch(shard, m);
        }
        continue;
      }
      const f = req.frame;
      if (f === undefined) continue;
      if (f.to !== this.id) throw this.wrongNode(f.to);
      this.stats.framesReceived++;
      for (const sm of f.messages) {
        let m: Message;
        try {
          m = messageFromPb(sm.message);
        } catch {
          this.stats.messagesDiscarded++;
          continue;
        }
        this.dispatch(sm.shard, m);
      }
    }
  }

  private wrongNode(to: string): TidemarkError {
    return new TidemarkError('FAILED_PRECONDITION', 'wrong_node', `addressed to ${to}, this is ${this.id}`, {
      node: this.id,
    });
  }

  private ensureOpen(): void {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'peer transport is closed');
  }

  /** Closes every stream and client, and the server if this transport created it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.peers.values()) this.disconnect(p);
    this.handlers.clear();
    this.local = [];
    this.reports = [];
    if (this.ownServer) await shutdownServer(this.server, 200);
  }
}

/** One shard's view of the PeerTransport: what a RaftDriver needs. */
export class ShardTransport implements Transport {
  readonly id: NodeId;
  private readonly handler: ShardHandler = {};
  private closed = false;

  constructor(
    private readonly peer: PeerTransport,
    readonly shardId: number,
    private readonly member?: string,
  ) {
    this.id = member ?? peer.id;
  }

  send(messages: Message[]): void {
    if (!this.closed) this.peer.send(this.shardId, messages);
  }

  onMessage(handler: (message: Message) => void): void {
    if (this.closed) return;
    const member = this.member;
    this.handler.onMessage =
      member === undefined
        ? handler
        : (m) => {
            if (m.to === member) handler(m);
          };
    this.peer.install(this.shardId, this.handler);
  }

  onReport(handler: (report: TransportReport) => void): void {
    if (this.closed) return;
    this.handler.onReport = handler;
    this.peer.install(this.shardId, this.handler);
  }

  /** Stops this view (the shared PeerTransport stays up); a newer view of the shard is left alone. */
  close(): Promise<void> {
    this.closed = true;
    this.peer.uninstall(this.shardId, this.handler);
    return Promise.resolve();
  }
}
