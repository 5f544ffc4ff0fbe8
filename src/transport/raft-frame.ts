/**
 * A hand-written codec for `tidemark.v1.RaftRequest`, the frames of the peer Raft stream (every append,
 * heartbeat and read barrier of every shard). protobuf-es spent a BigInt per uint64 field and reflection
 * per field; this writes the same proto3 bytes in two passes and reads them straight into Raft messages.
 *
 * Byte for byte what protobuf-es writes for the same frame (./raft-codec.ts messageToPb), and decoded into
 * what fromBinary + messageFromPb give, errors included (test/transport/raft-frame.test.ts). A frame that is
 * not valid protobuf is DATA_CORRUPTION `frame_malformed`; a message inside a valid frame that is not a valid
 * Raft message (unknown type, integer beyond 2^53 - 1, …) is reported per message, as messageFromPb does,
 * so the receiver drops just that one.
 */
import { TidemarkError } from '../errors/index.js';
import { type Entry, EntryType, type Message, MessageType, type SnapshotMeta } from '../raft/types.js';
import {
  fieldSize,
  int64Size,
  LEN,
  lenField,
  malformed,
  readInt64,
  readKey,
  readString,
  skipUnknown,
  VARINT,
  WireFormatError,
  writeInt64,
  writeVarint,
} from './wire.js';

/** One message of a frame and the shard (Raft group) it belongs to. */
export interface FrameItem {
  shard: number;
  m: Message;
}

export interface DecodedFrame {
  from: string;
  to: string;
  /** In frame order; `m` is the error for a message that is not a valid Raft message. */
  messages: { shard: number; m: Message | TidemarkError }[];
}

// RaftMessageType / RaftEntryType numbers (proto/tidemark/v1/raft.proto).
const TYPE_NUMBER: Record<MessageType, number> = {
  [MessageType.Vote]: 1,
  [MessageType.VoteResp]: 2,
  [MessageType.PreVote]: 3,
  [MessageType.PreVoteResp]: 4,
  [MessageType.App]: 5,
  [MessageType.AppResp]: 6,
  [MessageType.Heartbeat]: 7,
  [MessageType.HeartbeatResp]: 8,
  [MessageType.Snap]: 9,
  [MessageType.TimeoutNow]: 10,
  [MessageType.ReadIndex]: 11,
  [MessageType.ReadIndexResp]: 12,
};
const TYPE_OF_NUMBER: (MessageType | undefined)[] = [];
for (const [t, n] of Object.entries(TYPE_NUMBER)) TYPE_OF_NUMBER[n] = t as MessageType;
const ENTRY_NORMAL = 1;
const ENTRY_CONF_CHANGE = 2;

const utf8Length = (s: string) => Buffer.byteLength(s);
const keyOf = (field: number, wire: number) => (field << 3) | wire;

// ---------------------------------------------------------------------------------------------------------
// Encoding

function u64Field(v: number): number {
  return v === 0 ? 0 : 1 + int64Size(v);
}

function strField(s: string): number {
  return s.length === 0 ? 0 : fieldSize(utf8Length(s));
}

function entrySize(e: Entry): number {
  return u64Field(e.term) + u64Field(e.index) + 2 + (e.data.length === 0 ? 0 : fieldSize(e.data.length));
}

function metaSize(m: SnapshotMeta): number {
  let conf = 0;
  for (const v of m.conf.voters) conf += fieldSize(utf8Length(v));
  for (const l of m.conf.learners) conf += fieldSize(utf8Length(l));
  return u64Field(m.index) + u64Field(m.term) + fieldSize(conf);
}

function messageSize(m: Message, entrySizes: number[]): number {
  let n = 2 + strField(m.from) + strField(m.to) + u64Field(m.term) + u64Field(m.index) + u64Field(m.logTerm);
  for (const e of m.entries) {
    const s = entrySize(e);
    entrySizes.push(s);
    n += fieldSize(s);
  }
  n += u64Field(m.commit) + (m.reject ? 2 : 0) + u64Field(m.rejectHint);
  if (m.hintTerm !== undefined) n += 1 + int64Size(m.hintTerm);
  if (m.snapshot !== undefined) {
    const meta = metaSize(m.snapshot.meta);
    n += fieldSize(fieldSize(meta) + (m.snapshot.data.length === 0 ? 0 : fieldSize(m.snapshot.data.length)));
  }
  if (m.context !== undefined) n += fieldSize(m.context.length);
  return n;
}

function putU64(out: Buffer, pos: number, key: number, v: number): number {
  if (v === 0) return pos;
  out[pos++] = key;
  return writeInt64(out, pos, v);
}

function putStr(out: Buffer, pos: number, key: number, s: string): number {
  if (s.length === 0) return pos;
  const n = utf8Length(s);
  out[pos++] = key;
  pos = writeVarint(out, pos, n);
  return pos + out.write(s, pos, n, 'utf8');
}

function putBytes(out: Buffer, pos: number, key: number, b: Uint8Array): number {
  out[pos++] = key;
  pos = writeVarint(out, pos, b.length);
  out.set(b, pos);
  return pos + b.length;
}

/** Encodes `RaftRequest { frame: { from, to, messages: [{ shard, message }] } }`. */
export function encodeRaftRequest(from: string, to: string, items: readonly FrameItem[]): Uint8Array {
  const sizes = new Array<number>(items.length);
  const entrySizes: number[] = [];
  let frame = strField(from) + strField(to);
  for (let i = 0; i < items.length; i++) {
    const { shard, m } = items[i]!;
    const ms = messageSize(m, entrySizes);
    sizes[i] = ms;
    frame += fieldSize(u64Field(shard) + fieldSize(ms));
  }
  const out = Buffer.allocUnsafe(fieldSize(frame));
  let pos = 0;
  out[pos++] = keyOf(1, LEN);
  pos = writeVarint(out, pos, frame);
  pos = putStr(out, pos, keyOf(1, LEN), from);
  pos = putStr(out, pos, keyOf(2, LEN), to);
  let e = 0;
  for (let i = 0; i < items.length; i++) {
    const { shard, m } = items[i]!;
    out[pos++] = keyOf(3, LEN);
    pos = writeVarint(out, pos, u64Field(shard) + fieldSize(sizes[i]!));
    pos = putU64(out, pos, keyOf(1, VARINT), shard);
    out[pos++] = keyOf(2, LEN);
    pos = writeVarint(out, pos, sizes[i]!);
    out[pos++] = keyOf(1, VARINT);
    out[pos++] = TYPE_NUMBER[m.type];
    pos = putStr(out, pos, keyOf(2, LEN), m.from);
    pos = putStr(out, pos, keyOf(3, LEN), m.to);
    pos = putU64(out, pos, keyOf(4, VARINT), m.term);
    pos = putU64(out, pos, keyOf(5, VARINT), m.index);
    pos = putU64(out, pos, keyOf(6, VARINT), m.logTerm);
    for (const entry of m.entries) {
      out[pos++] = keyOf(7, LEN);
      pos = writeVarint(out, pos, entrySizes[e++]!);
      pos = putU64(out, pos, keyOf(1, VARINT), entry.term);
      pos = putU64(out, pos, keyOf(2, VARINT), entry.index);
      out[pos++] = keyOf(3, VARINT);
      out[pos++] = entry.type === EntryType.ConfChange ? ENTRY_CONF_CHANGE : ENTRY_NORMAL;
      if (entry.data.length > 0) pos = putBytes(out, pos, keyOf(4, LEN), entry.data);
    }
    pos = putU64(out, pos, keyOf(8, VARINT), m.commit);
    if (m.reject) {
      out[pos++] = keyOf(9, VARINT);
      out[pos++] = 1;
    }
    pos = putU64(out, pos, keyOf(10, VARINT), m.rejectHint);
    if (m.hintTerm !== undefined) {
      out[pos++] = keyOf(11, VARINT);
      pos = writeInt64(out, pos, m.hintTerm);
    }
    if (m.snapshot !== undefined) {
      const { meta, data } = m.snapshot;
      const ms = metaSize(meta);
      out[pos++] = keyOf(12, LEN);
      pos = writeVarint(out, pos, fieldSize(ms) + (data.length === 0 ? 0 : fieldSize(data.length)));
      out[pos++] = keyOf(1, LEN);
      pos = writeVarint(out, pos, ms);
      pos = putU64(out, pos, keyOf(1, VARINT), meta.index);
      pos = putU64(out, pos, keyOf(2, VARINT), meta.term);
      let conf = 0;
      for (const v of meta.conf.voters) conf += fieldSize(utf8Length(v));
      for (const l of meta.conf.learners) conf += fieldSize(utf8Length(l));
      out[pos++] = keyOf(3, LEN);
      pos = writeVarint(out, pos, conf);
      // Repeated strings are written even when empty.
      for (const v of meta.conf.voters) pos = putBytes(out, pos, keyOf(1, LEN), Buffer.from(v, 'utf8'));
      for (const l of meta.conf.learners) pos = putBytes(out, pos, keyOf(2, LEN), Buffer.from(l, 'utf8'));
      if (data.length > 0) pos = putBytes(out, pos, keyOf(2, LEN), data);
    }
    if (m.context !== undefined) pos = putBytes(out, pos, keyOf(13, LEN), m.context);
  }
  if (pos !== out.length) throw new Error(`raft frame codec: wrote ${pos} of ${out.length} bytes`);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Decoding

function corrupt(reason: string, message: string): TidemarkError {
  return new TidemarkError('DATA_CORRUPTION', reason, message);
}

/** A uint64 field as a safe JS integer, or the overflow error (what raft-codec's toNumber refuses). */
function readU64(b: Uint8Array, pos: number, end: number, bad: { err?: TidemarkError }): [number, number] {
  const [v, p] = readInt64(b, pos, end);
  if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER)) {
    bad.err ??= corrupt('integer_overflow', `a uint64 value exceeds 2^53 - 1`);
    return [0, p];
  }
  return [v, p];
}

function checkWire(key: number, want: number): void {
  if ((key & 7) !== want) throw malformed(`field ${key >>> 3} has wire type ${key & 7}`);
}

/**
 * One RaftMessage from all its occurrences (proto merges repeated occurrences of a message field: scalars
 * last wins, repeated fields append). Wire errors throw; a bad value is returned as the message's error.
 */
function readMessage(b: Uint8Array, ranges: number[]): Message | TidemarkError {
  const bad: { err?: TidemarkError } = {};
  let type = 0;
  const m: Message = {
    type: MessageType.App,
    from: '',
    to: '',
    term: 0,
    index: 0,
    logTerm: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
  };
  let snapshotRanges: number[] | undefined;
  for (let r = 0; r < ranges.length; r += 2) {
    let pos = ranges[r]!;
    const end = ranges[r + 1]!;
    while (pos < end) {
      const [key, p] = readKey(b, pos, end);
      pos = p;
      const field = key >>> 3;
      if (field > 13) {
        pos = skipUnknown(b, pos, end, key, 13);
        continue;
      }
      switch (field) {
        case 1: {
          checkWire(key, VARINT);
          [type, pos] = readInt64(b, pos, end);
          break;
        }
        case 2:
        case 3: {
          checkWire(key, LEN);
          const [a, z] = lenField(b, pos, end);
          if (field === 2) m.from = readString(b, a, z);
          else m.to = readString(b, a, z);
          pos = z;
          break;
        }
        case 4:
          checkWire(key, VARINT);
          [m.term, pos] = readU64(b, pos, end, bad);
          break;
        case 5:
          checkWire(key, VARINT);
          [m.index, pos] = readU64(b, pos, end, bad);
          break;
        case 6:
          checkWire(key, VARINT);
          [m.logTerm, pos] = readU64(b, pos, end, bad);
          break;
        case 7: {
          checkWire(key, LEN);
          const [a, z] = lenField(b, pos, end);
          m.entries.push(readEntry(b, a, z, bad));
          pos = z;
          break;
        }
        case 8:
          checkWire(key, VARINT);
          [m.commit, pos] = readU64(b, pos, end, bad);
          break;
        case 9: {
          checkWire(key, VARINT);
          let v: number;
          [v, pos] = readInt64(b, pos, end);
          m.reject = v !== 0;
          break;
        }
        case 10:
          checkWire(key, VARINT);
          [m.rejectHint, pos] = readU64(b, pos, end, bad);
          break;
        case 11: {
          checkWire(key, VARINT);
          let v: number;
          [v, pos] = readU64(b, pos, end, bad);
          m.hintTerm = v;
          break;
        }
        case 12: {
          checkWire(key, LEN);
          const [a, z] = lenField(b, pos, end);
          if (snapshotRanges === undefined) snapshotRanges = [];
          snapshotRanges.push(a, z);
          pos = z;
          break;
        }
        case 13: {
          checkWire(key, LEN);
          const [a, z] = lenField(b, pos, end);
          m.context = b.subarray(a, z);
          pos = z;
          break;
        }
        default:
          throw malformed('field number 0');
      }
    }
  }
  if (snapshotRanges !== undefined) m.snapshot = readSnapshot(b, snapshotRanges, bad);
  const t = TYPE_OF_NUMBER[type];
  if (t === undefined) return corrupt('bad_message_type', `unknown raft message type ${type}`);
  if (bad.err !== undefined) return bad.err;
  m.type = t;
  return m;
}

function readEntry(b: Uint8Array, pos: number, end: number, bad: { err?: TidemarkError }): Entry {
  let term = 0;
  let index = 0;
  let type = 0;
  let data: Uint8Array = new Uint8Array(0);
  while (pos < end) {
    const [key, p] = readKey(b, pos, end);
    pos = p;
    switch (key >>> 3) {
      case 1:
        checkWire(key, VARINT);
        [term, pos] = readU64(b, pos, end, bad);
        break;
      case 2:
        checkWire(key, VARINT);
        [index, pos] = readU64(b, pos, end, bad);
        break;
      case 3:
        checkWire(key, VARINT);
        [type, pos] = readInt64(b, pos, end);
        break;
      case 4: {
        checkWire(key, LEN);
        const [a, z] = lenField(b, pos, end);
        data = b.subarray(a, z);
        pos = z;
        break;
      }
      default:
        pos = skipUnknown(b, pos, end, key, 4);
    }
  }
  let t: EntryType;
  if (type === ENTRY_NORMAL) t = EntryType.Normal;
  else if (type === ENTRY_CONF_CHANGE) t = EntryType.ConfChange;
  else {
    bad.err ??= corrupt('bad_entry_type', `unknown raft entry type ${type}`);
    t = EntryType.Normal;
  }
  return { term, index, type: t, data };
}

function readSnapshot(
  b: Uint8Array,
  ranges: number[],
  bad: { err?: TidemarkError },
): { meta: SnapshotMeta; data: Uint8Array } {
  let data: Uint8Array = new Uint8Array(0);
  let meta: SnapshotMeta | undefined;
  const voters: string[] = [];
  const learners: string[] = [];
  for (let r = 0; r < ranges.length; r += 2) {
    let pos = ranges[r]!;
    const end = ranges[r + 1]!;
    while (pos < end) {
      const [key, p] = readKey(b, pos, end);
      pos = p;
      if (key >>> 3 === 1) {
        checkWire(key, LEN);
        const [a, z] = lenField(b, pos, end);
        meta ??= { index: 0, term: 0, conf: { voters, learners } };
        let q = a;
        while (q < z) {
          const [k, q1] = readKey(b, q, z);
          q = q1;
          if (k >>> 3 === 1) {
            checkWire(k, VARINT);
            [meta.index, q] = readU64(b, q, z, bad);
          } else if (k >>> 3 === 2) {
            checkWire(k, VARINT);
            [meta.term, q] = readU64(b, q, z, bad);
          } else if (k >>> 3 === 3) {
            checkWire(k, LEN);
            const [ca, cz] = lenField(b, q, z);
            let c = ca;
            while (c < cz) {
              const [ck, c1] = readKey(b, c, cz);
              c = c1;
              if (ck >>> 3 === 1 || ck >>> 3 === 2) {
                checkWire(ck, LEN);
                const [sa, sz] = lenField(b, c, cz);
                (ck >>> 3 === 1 ? voters : learners).push(readString(b, sa, sz));
                c = sz;
              } else {
                c = skipUnknown(b, c, cz, ck, 2);
              }
            }
            q = cz;
          } else {
            q = skipUnknown(b, q, z, k, 3);
          }
        }
        pos = z;
      } else if (key >>> 3 === 2) {
        checkWire(key, LEN);
        const [a, z] = lenField(b, pos, end);
        data = b.subarray(a, z);
        pos = z;
      } else {
        pos = skipUnknown(b, pos, end, key, 2);
      }
    }
  }
  if (meta === undefined) {
    bad.err ??= corrupt('missing_snapshot_meta', 'snapshot metadata missing');
    meta = { index: 0, term: 0, conf: { voters, learners } };
  }
  return { meta, data };
}

/** Decodes a RaftRequest; a frame that is not valid protobuf throws DATA_CORRUPTION `frame_malformed`. */
export function decodeRaftRequest(bytes: Uint8Array): DecodedFrame {
  try {
    return decodeFrame(bytes);
  } catch (err) {
    if (err instanceof WireFormatError) {
      throw corrupt('frame_malformed', `the Raft frame is not valid protobuf: ${err.message}`);
    }
    throw err;
  }
}

function decodeFrame(b: Uint8Array): DecodedFrame {
  const out: DecodedFrame = { from: '', to: '', messages: [] };
  let pos = 0;
  const end = b.length;
  // Every ShardMessage's parts (repeated occurrences of its fields merge).
  const items: { shard: number; ranges: number[] }[] = [];
  while (pos < end) {
    const [key, p] = readKey(b, pos, end);
    pos = p;
    if (key >>> 3 !== 1) {
      pos = skipUnknown(b, pos, end, key, 1);
      continue;
    }
    checkWire(key, LEN);
    const [fa, fz] = lenField(b, pos, end);
    pos = fz;
    let q = fa;
    while (q < fz) {
      const [k, q1] = readKey(b, q, fz);
      q = q1;
      const field = k >>> 3;
      if (field === 1 || field === 2) {
        checkWire(k, LEN);
        const [a, z] = lenField(b, q, fz);
        if (field === 1) out.from = readString(b, a, z);
        else out.to = readString(b, a, z);
        q = z;
      } else if (field === 3) {
        checkWire(k, LEN);
        const [a, z] = lenField(b, q, fz);
        const item = { shard: 0, ranges: [] as number[] };
        let s = a;
        while (s < z) {
          const [sk, s1] = readKey(b, s, z);
          s = s1;
          if (sk >>> 3 === 1) {
            checkWire(sk, VARINT);
            let v: number;
            [v, s] = readInt64(b, s, z);
            // uint32: protobuf-es keeps the low 32 bits.
            item.shard = v >>> 0;
          } else if (sk >>> 3 === 2) {
            checkWire(sk, LEN);
            const [ma, mz] = lenField(b, s, z);
            item.ranges.push(ma, mz);
            s = mz;
          } else {
            s = skipUnknown(b, s, z, sk, 2);
          }
        }
        items.push(item);
        q = z;
      } else {
        q = skipUnknown(b, q, fz, k, 3);
      }
    }
  }
  for (const item of items) {
    out.messages.push({
      shard: item.shard,
      m:
        item.ranges.length === 0
          ? corrupt('missing_message', 'raft message missing')
          : readMessage(b, item.ranges),
    });
  }
  return out;
}
