/**
 * Raft data types shared by the pure core (./core), the log storages (./storage-*) and the driver (./driver).
 * Modeled on etcd-io/raft's raftpb. Node ids are strings (cluster node names); indexes and terms are JS
 * numbers (safe integers: 2^53 entries is beyond any real log).
 */

export type NodeId = string;

export enum EntryType {
  Normal = 0,
  ConfChange = 1,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Opaque to Raft. Empty for the no-op a new leader appends. For ConfChange: an encoded ConfChange. */
  data: Uint8Array;
}

/** What must be durable before a vote or an acknowledgement is sent. */
export interface HardState {
  term: number;
  vote: NodeId | ''; // '' = voted for nobody in `term`
  commit: number;
}

export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMeta {
  index: number;
  term: number;
  conf: ConfState;
}

export interface Snapshot {
  meta: SnapshotMeta;
  /** State-machine image; opaque to Raft. The transport streams it in chunks. */
  data: Uint8Array;
}

export enum ConfChangeType {
  AddVoter = 0,
  RemoveNode = 1,
  AddLearner = 2,
}

export interface ConfChange {
  type: ConfChangeType;
  node: NodeId;
}

export enum MessageType {
  Vote = 'Vote',
  VoteResp = 'VoteResp',
  PreVote = 'PreVote',
  PreVoteResp = 'PreVoteResp',
  App = 'App',
  AppResp = 'AppResp',
  Heartbeat = 'Heartbeat',
  HeartbeatResp = 'HeartbeatResp',
  Snap = 'Snap',
  /** Asks the target (an up-to-date follower) to campaign now: the last step of leader transfer. */
  TimeoutNow = 'TimeoutNow',
  /** Follower -> leader: forwarded ReadIndex request. */
  ReadIndex = 'ReadIndex',
  ReadIndexResp = 'ReadIndexResp',
}

export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  /** App: index of the entry before `entries`; AppResp: last index matched or the rejected index. */
  index: number;
  /** App: term of the entry at `index`; Vote/PreVote: candidate's last log term. */
  logTerm: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** AppResp with reject: follower's hint for fast backtracking (its last index / conflicting term's first index). */
  rejectHint: number;
  /** Hint term for fast backtracking. */
  hintTerm?: number;
  snapshot?: Snapshot;
  /** Heartbeat/ReadIndex: opaque request context echoed back. */
  context?: Uint8Array;
}

export interface ReadState {
  /** Commit index the read must wait for (apply >= index) before being served. */
  index: number;
  context: Uint8Array;
}

export enum StateRole {
  Follower = 'follower',
  PreCandidate = 'pre-candidate',
  Candidate = 'candidate',
  Leader = 'leader',
}

export interface SoftState {
  lead: NodeId | '';
  role: StateRole;
}

/**
 * Output of the core. The driver must, in this order:
 *  1. persist `snapshot` (if any), `entries` and `hardState` (if any) durably;
 *  2. send `messages`;
 *  3. apply `committedEntries` (and install `snapshot` into the state machine);
 *  4. call `advance()`.
 * Nothing in `messages` may leave the process before step 1 is durable: a vote or an append
 * acknowledgement promises state that must survive a crash.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
  messages: Message[];
  committedEntries: Entry[];
  readStates: ReadState[];
}

/** Read side of the log storage, as the core sees it (etcd's raft.Storage). */
export interface LogReader {
  initialState(): { hardState: HardState; conf: ConfState };
  /** Entries in [lo, hi), at most maxBytes of data (at least one entry if any). Throws COMPACTED/UNAVAILABLE errors. */
  entries(lo: number, hi: number, maxBytes?: number): Entry[];
  /** Term of entry i; i may be snapshot index. */
  term(i: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshotMeta(): SnapshotMeta;
  /**
   * The latest snapshot (meta + state-machine image), for the leader to send to a follower that needs
   * compacted entries. Optional on a bare reader; `LogStorage` always has it. Without it the core cannot
   * catch up followers behind compaction.
   */
  snapshot?(): Snapshot;
}

/** Durable log storage used by the driver (memory and LMDB implementations share one test suite). */
export interface LogStorage extends LogReader {
  /** Appends (truncating any conflicting suffix) and sets hard state, durably, in one atomic write. */
  save(hardState: HardState | undefined, entries: Entry[]): Promise<void>;
  /** Replaces the log with a snapshot: entries <= meta.index are dropped. Durable on resolve. */
  applySnapshot(snapshot: Snapshot): Promise<void>;
  /** Discards entries up to and including `index` (must be <= applied index), keeping term(index) answerable. */
  compact(index: number, conf: ConfState): Promise<void>;
  /** The latest snapshot data held (for sending to followers behind compaction), if any. */
  snapshot(): Snapshot;
  close(): Promise<void>;
}

/** The replicated state machine the driver applies committed entries to. */
export interface StateMachine {
  /** Applies a committed normal entry. Must be deterministic. `index` is recorded atomically with the effect. */
  apply(entry: Entry): Promise<unknown>;
  /** Index of the last entry whose effects are durable in the state machine. */
  appliedIndex(): number;
  /**
   * Optional, for a state machine whose applies become durable only at its checkpoints (a shard store whose
   * write-ahead log is the Raft log): makes everything applied so far durable, raising appliedIndex(). The
   * driver asks when the log has grown past the compaction threshold beyond appliedIndex().
   */
  persist?(): Promise<void>;
  /** A consistent image of the state machine at appliedIndex(). */
  snapshot(): Promise<Uint8Array>;
  /** Replaces the state machine with the image (taken at `meta.index`). */
  restore(snapshot: Snapshot): Promise<void>;
}
