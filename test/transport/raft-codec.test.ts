import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/index.js';
import {
  RaftMessageSchema,
  RaftMessageType,
  SnapshotChunkSchema,
} from '../../src/gen/tidemark/v1/raft_pb.js';
import { chunkSnapshot } from '../../src/raft/snapshot-stream.js';
import { EntryType, type Message, MessageType } from '../../src/raft/types.js';
import { chunkFromPb, chunkToPb, messageFromPb, messageToPb } from '../../src/transport/raft-codec.js';
import { msg } from './helpers.js';

function roundTrip(m: Message): Message {
  const bytes = toBinary(RaftMessageSchema, create(RaftMessageSchema, messageToPb(m)));
  return messageFromPb(fromBinary(RaftMessageSchema, bytes));
}

describe('raft codec', () => {
  it('round-trips every message type and optional field', () => {
    for (const type of Object.values(MessageType)) {
      const m = msg(type, 'a', 'b', {
        term: 2 ** 40,
        index: 2 ** 53 - 1,
        logTerm: 3,
        commit: 4,
        rejectHint: 5,
      });
      expect(roundTrip(m)).toEqual(m);
    }
    const full = msg(MessageType.App, 'node-1', 'node-2', {
      entries: [
        { term: 1, index: 2, type: EntryType.Normal, data: new Uint8Array([1]) },
        { term: 1, index: 3, type: EntryType.ConfChange, data: new Uint8Array() },
      ],
      reject: true,
      hintTerm: 0,
      context: new Uint8Array(),
    });
    const back = roundTrip(full);
    expect(back).toEqual(full);
    // Present-but-zero optionals stay present; absent ones stay absent.
    expect(back.hintTerm).toBe(0);
    expect(back.context).toEqual(new Uint8Array());
    expect('hintTerm' in roundTrip(msg(MessageType.App, 'a', 'b'))).toBe(false);
  });

  it('refuses unknown types and integers beyond 2^53 - 1', () => {
    const bad = create(RaftMessageSchema, { type: RaftMessageType.UNSPECIFIED, from: 'a', to: 'b' });
    expect(() => messageFromPb(bad)).toThrow(/unknown raft message type/);
    const huge = create(RaftMessageSchema, { type: RaftMessageType.APP, term: 2n ** 60n });
    try {
      messageFromPb(huge);
      expect.unreachable();
    } catch (err) {
      expect(isTidemarkError(err, 'DATA_CORRUPTION')).toBe(true);
    }
    const entry = create(RaftMessageSchema, { type: RaftMessageType.APP, entries: [{ type: 0 }] });
    expect(() => messageFromPb(entry)).toThrow(/entry type/);
  });

  it('round-trips snapshot chunks', () => {
    const m = msg(MessageType.Snap, 'a', 'b', {
      term: 9,
      snapshot: {
        meta: { index: 10, term: 8, conf: { voters: ['a', 'b'], learners: ['c'] } },
        data: new Uint8Array(2500).fill(3),
      },
    });
    const chunks = chunkSnapshot(m, 1000);
    const back = chunks.map((c) => {
      const pb = fromBinary(
        SnapshotChunkSchema,
        toBinary(SnapshotChunkSchema, create(SnapshotChunkSchema, chunkToPb(4, c))),
      );
      return chunkFromPb(pb);
    });
    expect(back.map((b) => b.shard)).toEqual([4, 4, 4]);
    expect(back.map((b) => b.chunk)).toEqual(chunks);
  });
});
