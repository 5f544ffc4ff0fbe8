import { describe, expect, it } from 'vitest';
import { chunkSnapshot, SnapshotAssembler, type SnapshotChunk } from '../../src/raft/snapshot-stream.js';
import { type Message, MessageType } from '../../src/raft/types.js';
import { Rng } from '../../src/util/random.js';

function snapMessage(from: string, data: Uint8Array, index = 100, term = 3): Message {
  return {
    type: MessageType.Snap,
    from,
    to: 'b',
    term,
    index: 0,
    logTerm: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    snapshot: { meta: { index, term, conf: { voters: ['a', 'b', 'c'], learners: [] } }, data },
  };
}

function bytes(n: number, seed: number): Uint8Array {
  const rng = new Rng(seed);
  return Uint8Array.from({ length: n }, () => rng.int(0, 256));
}

function feed(asm: SnapshotAssembler, chunks: SnapshotChunk[]) {
  return chunks.map((c) => asm.add(c));
}

describe('snapshot streaming', () => {
  for (const [size, chunk] of [
    [0, 16],
    [1, 16],
    [64, 16],
    [65, 16],
    [1000, 1],
    [100_000, 4096],
  ] as const) {
    it(`round-trips a ${size}-byte image in ${chunk}-byte chunks`, () => {
      const data = bytes(size, size + chunk);
      const chunks = chunkSnapshot(snapMessage('a', data), chunk);
      expect(chunks).toHaveLength(Math.max(1, Math.ceil(size / chunk)));
      for (const c of chunks) expect(c.data.length).toBeLessThanOrEqual(chunk);
      const results = feed(new SnapshotAssembler(1 << 20), chunks);
      for (const r of results.slice(0, -1)) expect(r.kind).toBe('partial');
      const last = results.at(-1)!;
      if (last.kind !== 'complete') throw new Error(`expected complete, got ${last.kind}`);
      expect(last.message.snapshot!.data).toEqual(data);
      expect(last.message.snapshot!.meta.index).toBe(100);
      expect(last.message.from).toBe('a');
      expect(last.message.type).toBe(MessageType.Snap);
    });
  }

  it('discards a stream with a missing chunk and accepts the resend', () => {
    const data = bytes(1000, 1);
    const chunks = chunkSnapshot(snapMessage('a', data), 100);
    const asm = new SnapshotAssembler(1 << 20);
    const gap = feed(asm, [...chunks.slice(0, 3), ...chunks.slice(4)]);
    const discarded = gap.find((r) => r.kind === 'discarded');
    expect(discarded && discarded.kind === 'discarded' && discarded.error.reason).toBe(
      'snapshot_chunk_out_of_order',
    );
    expect(gap.some((r) => r.kind === 'complete')).toBe(false);
    expect(feed(asm, chunks).at(-1)!.kind).toBe('complete');
  });

  it('rejects a corrupted image by checksum', () => {
    const data = bytes(500, 2);
    const chunks = chunkSnapshot(snapMessage('a', data), 100);
    chunks[2] = { ...chunks[2]!, data: chunks[2]!.data.map((b, i) => (i === 7 ? b ^ 1 : b)) };
    const last = feed(new SnapshotAssembler(1 << 20), chunks).at(-1)!;
    expect(last.kind === 'discarded' && last.error.reason).toBe('snapshot_checksum_mismatch');
  });

  it('refuses an image over the size limit before buffering it', () => {
    const asm = new SnapshotAssembler(1000);
    const r = asm.add(chunkSnapshot(snapMessage('a', bytes(1001, 3)), 100)[0]!);
    expect(r.kind === 'discarded' && r.error.reason).toBe('snapshot_too_large');
    expect(asm.bufferedBytes()).toBe(0);
  });

  it('keeps streams from different senders apart, and a new stream replaces an old one', () => {
    const a = chunkSnapshot(snapMessage('a', bytes(300, 4)), 100);
    const c = chunkSnapshot(snapMessage('c', bytes(300, 5)), 100);
    const asm = new SnapshotAssembler(1 << 20);
    const out = [
      asm.add(a[0]!),
      asm.add(c[0]!),
      asm.add(a[1]!),
      asm.add(c[1]!),
      asm.add(a[2]!),
      asm.add(c[2]!),
    ];
    expect(out.filter((r) => r.kind === 'complete')).toHaveLength(2);
    // Sender a starts a newer snapshot mid-stream: the old one is dropped, the new one completes.
    const old = chunkSnapshot(snapMessage('a', bytes(300, 6), 100), 100);
    const newer = chunkSnapshot(snapMessage('a', bytes(200, 7), 200), 100);
    expect(asm.add(old[0]!).kind).toBe('partial');
    const res = feed(asm, newer).at(-1)!;
    expect(res.kind === 'complete' && res.message.snapshot!.meta.index).toBe(200);
    expect(asm.add(old[1]!).kind).toBe('discarded');
  });
});
