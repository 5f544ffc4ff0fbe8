/**
 * The hand-written Raft frame codec against protobuf-es + src/transport/raft-codec.ts (the generic path it
 * replaces on the peer stream): the encoder writes exactly protobuf-es's bytes; the decoder gives the same
 * messages, and an error exactly where messageFromPb refuses one, on random frames (invalid types and uint64
 * overflows included) and on byte-level mutations of them.
 * Seeded: TIDEMARK_SEED=<n> npx vitest run test/transport/raft-frame.test.ts replays.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { isTidemarkError, type TidemarkError } from '../../src/errors/index.js';
import { RaftRequestSchema } from '../../src/gen/tidemark/v1/peer_pb.js';
import { EntryType, type Message, MessageType } from '../../src/raft/types.js';
import { messageFromPb, messageToPb } from '../../src/transport/raft-codec.js';
import { decodeRaftRequest, encodeRaftRequest, type FrameItem } from '../../src/transport/raft-frame.js';
import { Rng } from '../../src/util/random.js';
import { mutateBytes, randomBytes } from '../fuzz/harness.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 20261122);
const TYPES = Object.values(MessageType);
const NAMES = ['a', 'b', 'node~0badc0de', '', 'ünï'];

function num(r: Rng): number {
  return r.pick([0, 1, r.int(0, 1000), r.int(0, 2 ** 31), Number.MAX_SAFE_INTEGER, 2 ** 32 + r.int(0, 9)]);
}

function message(r: Rng): Message {
  const m: Message = {
    type: r.pick(TYPES),
    from: r.pick(NAMES),
    to: r.pick(NAMES),
    term: num(r),
    index: num(r),
    logTerm: num(r),
    entries: Array.from({ length: r.int(0, 4) }, () => ({
      term: num(r),
      index: num(r),
      type: r.chance(0.9) ? EntryType.Normal : EntryType.ConfChange,
      data: randomBytes(r, r.chance(0.3) ? 0 : r.int(1, 200)),
    })),
    commit: num(r),
    reject: r.chance(0.2),
    rejectHint: num(r),
  };
  if (r.chance(0.3)) m.hintTerm = num(r);
  if (r.chance(0.3)) m.context = randomBytes(r, r.int(0, 12));
  if (r.chance(0.1)) {
    m.snapshot = {
      meta: {
        index: num(r),
        term: num(r),
        conf: { voters: NAMES.slice(0, r.int(0, 4)), learners: r.chance(0.5) ? ['', 'l'] : [] },
      },
      data: randomBytes(r, r.int(0, 30)),
    };
  }
  return m;
}

function frame(r: Rng): FrameItem[] {
  return Array.from({ length: r.int(0, 6) }, () => ({
    shard: r.chance(0.2) ? 0 : r.int(0, 64),
    m: message(r),
  }));
}

function viaProtobufEs(from: string, to: string, items: FrameItem[]): Uint8Array {
  return toBinary(
    RaftRequestSchema,
    create(RaftRequestSchema, {
      frame: { from, to, messages: items.map((i) => ({ shard: i.shard, message: messageToPb(i.m) })) },
    }),
  );
}

/** The generic path: fromBinary, then messageFromPb per message (the receiver drops a message it refuses). */
function reference(bytes: Uint8Array) {
  const f = fromBinary(RaftRequestSchema, bytes).frame;
  return {
    from: f?.from ?? '',
    to: f?.to ?? '',
    messages: (f?.messages ?? []).map((sm) => {
      try {
        return { shard: sm.shard, m: messageFromPb(sm.message) as Message | TidemarkError };
      } catch (err) {
        return { shard: sm.shard, m: err as TidemarkError };
      }
    }),
  };
}

function plain(d: { from: string; to: string; messages: { shard: number; m: Message | TidemarkError }[] }) {
  return {
    from: d.from,
    to: d.to,
    messages: d.messages.map(({ shard, m }) => ({
      shard,
      m: isTidemarkError(m)
        ? { error: m.code }
        : JSON.parse(JSON.stringify(m, (_, v) => (v instanceof Uint8Array ? [...v] : v))),
    })),
  };
}

describe('Raft frame codec', () => {
  it('encodes what protobuf-es encodes, and decodes it back to the messages', () => {
    for (let i = 0; i < 2000; i++) {
      const r = new Rng(SEED + i);
      const where = `seed ${SEED + i} (replay: TIDEMARK_SEED=${SEED + i} npx vitest run test/transport/raft-frame.test.ts)`;
      const items = frame(r);
      const from = r.pick(NAMES);
      const to = r.pick(NAMES);
      const bytes = encodeRaftRequest(from, to, items);
      expect(Buffer.from(bytes).equals(Buffer.from(viaProtobufEs(from, to, items))), where).toBe(true);
      // As the adapter hands them over: a plain Uint8Array view.
      const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      expect(plain(decodeRaftRequest(view)), where).toEqual(plain({ from, to, messages: items }));
    }
  });

  it('decodes what fromBinary + messageFromPb decode, refusing the same messages', () => {
    let refused = 0;
    for (let i = 0; i < 2000; i++) {
      const r = new Rng(SEED + 5e5 + i);
      const where = `seed ${SEED + 5e5 + i}`;
      const items = frame(r);
      // Values the encoder never writes: unknown types, uint64 past 2^53 - 1, a missing message.
      const pb = items.map((it) => {
        const m = messageToPb(it.m) as Record<string, unknown>;
        if (r.chance(0.05)) m.type = r.int(13, 40);
        if (r.chance(0.05)) m.commit = 2n ** 53n + BigInt(r.int(0, 9));
        if (r.chance(0.05)) m.term = 2n ** 64n - 1n;
        const entries = m.entries as { type: number }[];
        if (entries.length > 0 && r.chance(0.1)) entries[0]!.type = r.pick([0, 3, 9]);
        return r.chance(0.03) ? { shard: it.shard } : { shard: it.shard, message: m };
      });
      const bytes = toBinary(
        RaftRequestSchema,
        create(RaftRequestSchema, { frame: { from: 'a', to: 'b', messages: pb as never } }),
      );
      const want = plain(reference(bytes));
      expect(plain(decodeRaftRequest(bytes)), where).toEqual(want);
      refused += want.messages.filter((m) => 'error' in m.m).length;
    }
    expect(refused).toBeGreaterThan(100);
  });

  it('on mutated frames: a typed error or the same messages as the generic path, never a crash', () => {
    for (let i = 0; i < 5000; i++) {
      const r = new Rng(SEED + 1e6 + i);
      const where = `seed ${SEED + 1e6 + i}`;
      const bytes = mutateBytes(r, encodeRaftRequest('a', 'b', frame(r)));
      let got: ReturnType<typeof decodeRaftRequest> | undefined;
      try {
        got = decodeRaftRequest(bytes);
      } catch (err) {
        expect(isTidemarkError(err) && err.reason === 'frame_malformed', `${where}: ${String(err)}`).toBe(
          true,
        );
      }
      let want: ReturnType<typeof reference> | undefined;
      try {
        want = reference(bytes);
      } catch {
        // protobuf-es refused the frame: ours may only have refused it too or read it more strictly.
      }
      if (got === undefined || want === undefined) continue;
      // Both read the frame: every message both accept is the same message.
      const g = plain(got);
      const w = plain(want);
      expect(g.messages.length, where).toBe(w.messages.length);
      g.messages.forEach((m, j) => {
        if (!('error' in m.m) && !('error' in w.messages[j]!.m)) expect(m, where).toEqual(w.messages[j]);
      });
    }
  });
});
