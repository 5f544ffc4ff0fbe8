/**
 * Raft types (src/raft/types.ts) to and from their protobuf mirrors (proto/tidemark/v1/raft.proto).
 * uint64 fields decode to JS numbers; a value beyond 2^53 - 1 is refused (no real log gets there).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { TidemarkError } from '../errors/index.js';
import {
  type SnapshotChunk as PbSnapshotChunk,
  type SnapshotMeta as PbSnapshotMeta,
  type RaftEntry,
  type RaftEntrySchema,
  RaftEntryType,
  type RaftMessage,
  type RaftMessageSchema,
  RaftMessageType,
  type SnapshotChunkSchema,
} from '../gen/tidemark/v1/raft_pb.js';
import type { SnapshotChunk } from '../raft/snapshot-stream.js';
import { type Entry, EntryType, type Message, MessageType, type SnapshotMeta } from '../raft/types.js';

const TO_PB: Record<MessageType, RaftMessageType> = {
  [MessageType.Vote]: RaftMessageType.VOTE,
  [MessageType.VoteResp]: RaftMessageType.VOTE_RESP,
  [MessageType.PreVote]: RaftMessageType.PRE_VOTE,
  [MessageType.PreVoteResp]: RaftMessageType.PRE_VOTE_RESP,
  [MessageType.App]: RaftMessageType.APP,
  [MessageType.AppResp]: RaftMessageType.APP_RESP,
  [MessageType.Heartbeat]: RaftMessageType.HEARTBEAT,
  [MessageType.HeartbeatResp]: RaftMessageType.HEARTBEAT_RESP,
  [MessageType.Snap]: RaftMessageType.SNAP,
  [MessageType.TimeoutNow]: RaftMessageType.TIMEOUT_NOW,
  [MessageType.ReadIndex]: RaftMessageType.READ_INDEX,
  [MessageType.ReadIndexResp]: RaftMessageType.READ_INDEX_RESP,
};

const FROM_PB = new Map<RaftMessageType, MessageType>(
  Object.entries(TO_PB).map(([k, v]) => [v, k as MessageType]),
);

function corrupt(reason: string, message: string): TidemarkError {
  return new TidemarkError('DATA_CORRUPTION', reason, message);
}

/** uint64 → safe JS integer. */
export function toNumber(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt('integer_overflow', `value ${v} exceeds 2^53 - 1`);
  return Number(v);
}

function entryToPb(e: Entry): MessageInitShape<typeof RaftEntrySchema> {
  return {
    term: BigInt(e.term),
    index: BigInt(e.index),
    type: e.type === EntryType.ConfChange ? RaftEntryType.CONF_CHANGE : RaftEntryType.NORMAL,
    data: e.data,
  };
}

function entryFromPb(e: RaftEntry): Entry {
  let type: EntryType;
  if (e.type === RaftEntryType.NORMAL) type = EntryType.Normal;
  else if (e.type === RaftEntryType.CONF_CHANGE) type = EntryType.ConfChange;
  else throw corrupt('bad_entry_type', `unknown raft entry type ${e.type}`);
  return { term: toNumber(e.term), index: toNumber(e.index), type, data: e.data };
}

export function metaToPb(m: SnapshotMeta): MessageInitShape<typeof SnapshotChunkSchema>['meta'] {
  return {
    index: BigInt(m.index),
    term: BigInt(m.term),
    conf: { voters: m.conf.voters, learners: m.conf.learners },
  };
}

export function metaFromPb(m: PbSnapshotMeta | undefined): SnapshotMeta {
  if (m === undefined) throw corrupt('missing_snapshot_meta', 'snapshot metadata missing');
  return {
    index: toNumber(m.index),
    term: toNumber(m.term),
    conf: { voters: [...(m.conf?.voters ?? [])], learners: [...(m.conf?.learners ?? [])] },
  };
}

/** A Raft message as a protobuf init object (serialized by the adapter). */
export function messageToPb(m: Omit<Message, 'snapshot'> & { snapshot?: Message['snapshot'] }) {
  const out: MessageInitShape<typeof RaftMessageSchema> = {
    type: TO_PB[m.type],
    from: m.from,
    to: m.to,
    term: BigInt(m.term),
    index: BigInt(m.index),
    logTerm: BigInt(m.logTerm),
    entries: m.entries.map(entryToPb),
    commit: BigInt(m.commit),
    reject: m.reject,
    rejectHint: BigInt(m.rejectHint),
  };
  if (m.hintTerm !== undefined) out.hintTerm = BigInt(m.hintTerm);
  if (m.context !== undefined) out.context = m.context;
  if (m.snapshot !== undefined) out.snapshot = { meta: metaToPb(m.snapshot.meta), data: m.snapshot.data };
  return out;
}

export function messageFromPb(p: RaftMessage | undefined): Message {
  if (p === undefined) throw corrupt('missing_message', 'raft message missing');
  const type = FROM_PB.get(p.type);
  if (type === undefined) throw corrupt('bad_message_type', `unknown raft message type ${p.type}`);
  const m: Message = {
    type,
    from: p.from,
    to: p.to,
    term: toNumber(p.term),
    index: toNumber(p.index),
    logTerm: toNumber(p.logTerm),
    entries: p.entries.map(entryFromPb),
    commit: toNumber(p.commit),
    reject: p.reject,
    rejectHint: toNumber(p.rejectHint),
  };
  if (p.hintTerm !== undefined) m.hintTerm = toNumber(p.hintTerm);
  if (p.context !== undefined) m.context = p.context;
  if (p.snapshot !== undefined) m.snapshot = { meta: metaFromPb(p.snapshot.meta), data: p.snapshot.data };
  return m;
}

export function chunkToPb(shard: number, c: SnapshotChunk): MessageInitShape<typeof SnapshotChunkSchema> {
  const out: MessageInitShape<typeof SnapshotChunkSchema> = {
    shard,
    header: messageToPb({ ...c.header, entries: [] }),
    meta: metaToPb(c.meta),
    offset: BigInt(c.offset),
    total: BigInt(c.total),
    data: c.data,
  };
  if (c.checksum !== undefined) out.checksum = c.checksum;
  return out;
}

export function chunkFromPb(p: PbSnapshotChunk | undefined): { shard: number; chunk: SnapshotChunk } {
  if (p === undefined) throw corrupt('missing_chunk', 'snapshot chunk missing');
  const { snapshot: _, ...header } = messageFromPb(p.header);
  const chunk: SnapshotChunk = {
    header,
    meta: metaFromPb(p.meta),
    offset: toNumber(p.offset),
    total: toNumber(p.total),
    data: p.data,
  };
  if (p.checksum !== undefined) chunk.checksum = p.checksum;
  return { shard: p.shard, chunk };
}

/** Rough wire size of a message (for frame splitting): entry payloads plus a fixed overhead. */
export function estimateBytes(m: Message): number {
  let n = 64 + m.from.length + m.to.length + (m.context?.length ?? 0);
  for (const e of m.entries) n += 24 + e.data.length;
  return n;
}
