/**
 * A synchronous in-test network of RawNodes (etcd raft_test.go's `network`): messages are delivered in FIFO
 * order until none are left; links can be cut, nodes isolated, message types ignored.
 */
import { decodeConfChange, RawNode } from '../../../src/raft/core.js';
import type { ConfState, Entry, Message, MessageType, NodeId, ReadState } from '../../../src/raft/types.js';
import { Rng } from '../../../src/util/random.js';
import { bootstrappedStorage, cloneConf, MemStorage } from './memory-storage.js';

const EntryConfChange = 1;

export interface NetNodeOptions {
  preVote?: boolean;
  checkQuorum?: boolean;
  electionTick?: number;
  heartbeatTick?: number;
  maxSizePerMsg?: number;
  maxInflightMsgs?: number;
  applied?: number;
  /** Found the cluster with AddVoter entries in the log (needed when adding members later). */
  bootstrap?: boolean;
}

export interface NetNode {
  id: NodeId;
  node: RawNode;
  storage: MemStorage;
  /** Non-empty normal entries applied, in order. */
  applied: Entry[];
  readStates: ReadState[];
  conf: ConfState;
}

export class Network {
  readonly nodes = new Map<NodeId, NetNode>();
  private readonly cut = new Set<string>();
  private readonly ignored = new Set<MessageType>();
  /** Every message delivered (for assertions). */
  readonly delivered: Message[] = [];
  private queue: Message[] = [];
  private readonly rng: Rng;
  /** Extra message filter: return true to drop. */
  drop: ((m: Message) => boolean) | undefined;
  /** Extra message rewrite, applied before delivery (e.g. to strip entries). */
  mutate: ((m: Message) => Message) | undefined;

  constructor(
    ids: NodeId[],
    readonly opts: NetNodeOptions = {},
    seed = 1,
  ) {
    this.rng = new Rng(seed);
    for (const id of ids) {
      this.add(id, opts.bootstrap ? bootstrappedStorage(ids) : new MemStorage({ voters: ids, learners: [] }));
    }
  }

  /** Adds (or replaces, e.g. to restart) a node over `storage`. */
  add(id: NodeId, storage: MemStorage, opts: NetNodeOptions = {}): NetNode {
    const o = { ...this.opts, ...opts };
    const node = new RawNode({
      id,
      storage,
      electionTick: o.electionTick ?? 10,
      heartbeatTick: o.heartbeatTick ?? 1,
      preVote: o.preVote,
      checkQuorum: o.checkQuorum,
      maxSizePerMsg: o.maxSizePerMsg,
      maxInflightMsgs: o.maxInflightMsgs,
      applied: o.applied,
      random: this.rng.fork().fn(),
    });
    const nn: NetNode = { id, node, storage, applied: [], readStates: [], conf: storage.initialState().conf };
    this.nodes.set(id, nn);
    return nn;
  }

  get(id: NodeId): RawNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n.node;
  }

  leader(): NetNode | undefined {
    for (const n of this.nodes.values()) if (n.node.role === 'leader') return n;
    return undefined;
  }

  cutLink(a: NodeId, b: NodeId): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cutLink(id, other);
  }

  ignore(t: MessageType): void {
    this.ignored.add(t);
  }

  recover(): void {
    this.cut.clear();
    this.ignored.clear();
    this.drop = undefined;
    this.mutate = undefined;
  }

  /** Handles every pending Ready (persist, collect messages, apply, advance). */
  private handleReady(nn: NetNode): void {
    while (nn.node.hasReady()) {
      const rd = nn.node.ready();
      if (rd.snapshot) nn.storage.applySnapshot(rd.snapshot);
      nn.storage.save(rd.hardState, rd.entries);
      this.queue.push(...rd.messages);
      if (rd.snapshot) {
        nn.conf = cloneConf(rd.snapshot.meta.conf);
        nn.applied = [];
      }
      for (const e of rd.committedEntries) {
        if (e.type === EntryConfChange) nn.conf = nn.node.applyConfChange(decodeConfChange(e.data));
        else if (e.data.length > 0) nn.applied.push(e);
      }
      nn.readStates.push(...rd.readStates);
      nn.node.advance();
    }
  }

  /** Delivers messages (and Ready output) until the network is quiet. */
  flush(maxSteps = 100_000): void {
    for (let i = 0; i < maxSteps; i++) {
      for (const nn of this.nodes.values()) this.handleReady(nn);
      let m = this.queue.shift();
      if (!m) return;
      if (this.mutate) m = this.mutate(m);
      if (this.cut.has(`${m.from}>${m.to}`) || this.ignored.has(m.type) || this.drop?.(m)) continue;
      const to = this.nodes.get(m.to);
      if (!to) continue;
      this.delivered.push(m);
      to.node.step(m);
    }
    throw new Error('network did not quiesce');
  }

  /** Sends messages as if from the network, then flushes. */
  send(...msgs: Message[]): void {
    this.queue.push(...msgs);
    this.flush();
  }

  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) {
      this.get(id).tick();
      this.flush();
    }
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const nn of this.nodes.values()) nn.node.tick();
      this.flush();
    }
  }

  campaign(id: NodeId): void {
    this.flush(); // apply what is committed first (a node with unapplied conf changes does not campaign)
    this.get(id).campaign();
    this.flush();
  }

  propose(id: NodeId, data: string): void {
    this.get(id).propose(new TextEncoder().encode(data));
    this.flush();
  }
}

export function str(e: Entry): string {
  return new TextDecoder().decode(e.data);
}

/** A message with defaults (for injecting messages in tests). */
export function msg(m: Partial<Message> & Pick<Message, 'type' | 'from' | 'to'>): Message {
  return { term: 0, index: 0, logTerm: 0, entries: [], commit: 0, reject: false, rejectHint: 0, ...m };
}

export function ids(n: number): NodeId[] {
  return Array.from({ length: n }, (_, i) => `n${i + 1}`);
}
