import type * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { isTidemarkError, notLeader, type TidemarkError } from '../../src/errors/index.js';
import { type ForwardRequest, PeerService } from '../../src/gen/tidemark/v1/peer_pb.js';
import { chunkSnapshot } from '../../src/raft/snapshot-stream.js';
import { EntryType, type Message, MessageType } from '../../src/raft/types.js';
import {
  bindServer,
  createClient,
  createServer,
  serviceDefinition,
  shutdownServer,
} from '../../src/transport/grpc-adapter.js';
import { MAX_FORWARD_BATCH, PeerTransport } from '../../src/transport/peer.js';
import { chunkToPb } from '../../src/transport/raft-codec.js';
import { freePort, heartbeat, Inbox, msg, startMesh, waitFor } from './helpers.js';

let open: PeerTransport[] = [];
afterEach(async () => {
  await Promise.all(open.map((t) => t.close()));
  open = [];
});

async function mesh(ids: string[], options: Parameters<typeof startMesh>[1] = {}): Promise<PeerTransport[]> {
  const ts = await startMesh(ids, options);
  open.push(...ts);
  return ts;
}

function snapMessage(from: string, to: string, bytes: number): Message {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 31 + 7) & 0xff;
  return msg(MessageType.Snap, from, to, {
    term: 4,
    snapshot: { meta: { index: 100, term: 3, conf: { voters: ['n1', 'n2', 'n3'], learners: ['n4'] } }, data },
  });
}

describe('PeerTransport', () => {
  it('carries messages of several shards between three nodes, field for field', async () => {
    const [n1, n2, n3] = await mesh(['n1', 'n2', 'n3']);
    const shards = [0, 1, 2, 7];
    const in2 = new Inbox().attach(n2!, shards);
    const in3 = new Inbox().attach(n3!, shards);
    const in1 = new Inbox().attach(n1!, shards);
    const app = msg(MessageType.App, 'n1', 'n2', {
      term: 5,
      index: 10,
      logTerm: 4,
      commit: 9,
      entries: [
        { term: 5, index: 11, type: EntryType.Normal, data: new Uint8Array([1, 2, 3]) },
        { term: 5, index: 12, type: EntryType.ConfChange, data: new Uint8Array([9]) },
        { term: 5, index: 13, type: EntryType.Normal, data: new Uint8Array() },
      ],
    });
    const resp = msg(MessageType.AppResp, 'n1', 'n3', {
      reject: true,
      rejectHint: 8,
      hintTerm: 2,
      context: new Uint8Array([42]),
    });
    for (const s of shards) n1!.send(s, [app, resp, heartbeat('n1', 'n2', s), heartbeat('n1', 'n3', s)]);
    n2!.send(7, [msg(MessageType.VoteResp, 'n2', 'n1', { term: 6 })]);
    await waitFor(() => in2.count() === 8 && in3.count() === 8 && in1.count() === 1, 5000, 'delivery');
    for (const s of shards) {
      expect(in2.messages.get(s)).toEqual([app, heartbeat('n1', 'n2', s)]);
      expect(in3.messages.get(s)).toEqual([resp, heartbeat('n1', 'n3', s)]);
    }
    expect(in1.messages.get(7)![0]).toEqual(msg(MessageType.VoteResp, 'n2', 'n1', { term: 6 }));
  });

  it('batches all shards of one turn into one frame per peer', async () => {
    const [n1, n2, n3] = await mesh(['n1', 'n2', 'n3']);
    const shards = Array.from({ length: 16 }, (_, i) => i);
    const in2 = new Inbox().attach(n2!, shards);
    const in3 = new Inbox().attach(n3!, shards);
    // Warm the streams so this turn's frames are not split by connection setup.
    n1!.send(0, [heartbeat('n1', 'n2'), heartbeat('n1', 'n3')]);
    await waitFor(() => in2.count() === 1 && in3.count() === 1, 5000, 'warm-up');
    const before = { ...n1!.stats };
    const r2 = n2!.stats.framesReceived;
    for (const s of shards) n1!.send(s, [heartbeat('n1', 'n2', 1), heartbeat('n1', 'n3', 1)]);
    await waitFor(() => in2.count() === 17 && in3.count() === 17, 5000, 'heartbeats');
    const frames = n1!.stats.framesSent - before.framesSent;
    const messages = n1!.stats.messagesSent - before.messagesSent;
    expect(messages).toBe(32);
    expect(frames).toBe(2); // one per peer, heartbeats of 16 shards coalesced
    expect(n2!.stats.framesReceived - r2).toBe(1);
    expect(n1!.stats.messagesDropped).toBe(0);
  });

  it('delivers messages addressed to itself locally', async () => {
    const [n1] = await mesh(['n1']);
    const in1 = new Inbox().attach(n1!, [3]);
    n1!.send(3, [heartbeat('n1', 'n1')]);
    await waitFor(() => in1.count() === 1, 2000, 'local delivery');
  });

  it('reports unreachable for a down peer, then recovers once it starts', async () => {
    const port = await freePort();
    const [n1] = await mesh(['n1'], { backoffInitialMs: 20, backoffMaxMs: 200 });
    const in1 = new Inbox().attach(n1!, [0, 1]);
    n1!.setPeer('n2', `127.0.0.1:${port}`);
    n1!.send(0, [heartbeat('n1', 'n2')]);
    n1!.send(1, [heartbeat('n1', 'n2')]);
    await waitFor(
      () =>
        in1.reports.get(0)!.some((r) => r.kind === 'unreachable' && r.to === 'n2') &&
        in1.reports.get(1)!.some((r) => r.kind === 'unreachable' && r.to === 'n2'),
      10_000,
      'unreachable reports',
    );
    expect(n1!.stats.streamFailures).toBeGreaterThanOrEqual(1);
    // While backing off, sends are dropped (and reported), never thrown.
    n1!.send(0, [heartbeat('n1', 'n2')]);
    // Now n2 comes up on that port; a sender that keeps sending (as Raft does) gets through.
    const n2 = await PeerTransport.start({ id: 'n2', listen: `127.0.0.1:${port}` });
    open.push(n2);
    const in2 = new Inbox().attach(n2, [0]);
    await waitFor(
      () => {
        n1!.send(0, [heartbeat('n1', 'n2', 5)]);
        return in2.count() > 0;
      },
      15_000,
      'delivery after recovery',
    );
    expect(in2.messages.get(0)![0]!.commit).toBe(5);
    expect(n1!.stats.messagesDropped).toBeGreaterThan(0);
  });

  it('reports unreachable when a connected peer goes away', async () => {
    const [n1, n2] = await mesh(['n1', 'n2'], { backoffInitialMs: 20, backoffMaxMs: 100 });
    const in1 = new Inbox().attach(n1!, [0]);
    const in2 = new Inbox().attach(n2!, [0]);
    n1!.send(0, [heartbeat('n1', 'n2')]);
    await waitFor(() => in2.count() === 1, 5000, 'first delivery');
    await n2!.close();
    await waitFor(
      () => {
        n1!.send(0, [heartbeat('n1', 'n2')]);
        return in1.reports.get(0)!.some((r) => r.kind === 'unreachable');
      },
      10_000,
      'unreachable after the peer closed',
    );
  });

  it('bounds the per-peer queue and counts drops', async () => {
    const port = await freePort();
    const [n1] = await mesh(['n1'], { maxQueue: 10 });
    n1!.setPeer('n2', `127.0.0.1:${port}`);
    const batch = Array.from({ length: 25 }, () => heartbeat('n1', 'n2'));
    batch.push(msg(MessageType.Vote, 'n1', 'n2'));
    n1!.send(0, batch);
    // 26 messages in one turn into a 10-message queue: 16 dropped (heartbeats first, the vote kept).
    expect(n1!.stats.messagesDropped).toBe(16);
  });

  it('splits a frame only past maxFrameBytes', async () => {
    const [n1, n2] = await mesh(['n1', 'n2'], { maxFrameBytes: 2000 });
    const in2 = new Inbox().attach(n2!, [0, 1]);
    const entry = (i: number) => ({ term: 1, index: i, type: EntryType.Normal, data: new Uint8Array(600) });
    for (const s of [0, 1]) {
      n1!.send(
        s,
        Array.from({ length: 5 }, (_, i) =>
          msg(MessageType.App, 'n1', 'n2', { index: i, entries: [entry(i + 1)] }),
        ),
      );
    }
    await waitFor(() => in2.count() === 10, 5000, 'delivery');
    // ~700 bytes each, 2000-byte frames: 2 messages per frame.
    expect(n1!.stats.framesSent).toBe(5);
    expect(in2.messages.get(1)!.map((m) => m.index)).toEqual([0, 1, 2, 3, 4]);
  });

  it('reports an unknown peer unreachable, and follows an address change', async () => {
    const [n1, n2] = await mesh(['n1', 'n2'], { backoffInitialMs: 20, backoffMaxMs: 100 });
    const in1 = new Inbox().attach(n1!, [0]);
    n1!.send(0, [heartbeat('n1', 'n9')]);
    await waitFor(() => in1.reports.get(0)!.length > 0, 5000, 'a report');
    expect(in1.reports.get(0)).toEqual([{ kind: 'unreachable', to: 'n9' }]);
    // n2 moves: a new process (transport) on another port.
    await n2!.close();
    const moved = await PeerTransport.start({ id: 'n2' });
    open.push(moved);
    const in2 = new Inbox().attach(moved, [0]);
    n1!.setPeers({ n2: `127.0.0.1:${moved.port}` });
    expect(n1!.peerAddresses().get('n2')).toBe(`127.0.0.1:${moved.port}`);
    await waitFor(
      () => {
        n1!.send(0, [heartbeat('n1', 'n2', 3)]);
        return in2.count() > 0;
      },
      10_000,
      'delivery at the new address',
    );
  });

  it('streams a multi-chunk snapshot and delivers it whole', async () => {
    const [n1, n2] = await mesh(['n1', 'n2'], { snapshotChunkBytes: 1000 });
    const in1 = new Inbox().attach(n1!, [5]);
    const in2 = new Inbox().attach(n2!, [5]);
    const snap = snapMessage('n1', 'n2', 10_500);
    n1!.send(5, [snap]);
    await waitFor(() => in2.count() === 1, 5000, 'snapshot delivery');
    const got = in2.messages.get(5)![0]!;
    expect(got.type).toBe(MessageType.Snap);
    expect(got.term).toBe(4);
    expect(got.snapshot!.meta).toEqual(snap.snapshot!.meta);
    expect(Buffer.from(got.snapshot!.data).equals(Buffer.from(snap.snapshot!.data))).toBe(true);
    await waitFor(() => in1.reports.get(5)!.length > 0, 5000, 'snapshot report');
    expect(in1.reports.get(5)).toEqual([{ kind: 'snapshot', to: 'n2', ok: true }]);
    expect(n1!.stats.snapshotsSent).toBe(1);
    expect(n2!.stats.snapshotsReceived).toBe(1);
  });

  it('rejects an oversized snapshot and reports the failure to the sender', async () => {
    const [n1, n2] = await mesh(['n1', 'n2'], { snapshotChunkBytes: 1000, maxSnapshotBytes: 4000 });
    const in1 = new Inbox().attach(n1!, [1]);
    const in2 = new Inbox().attach(n2!, [1]);
    n1!.send(1, [snapMessage('n1', 'n2', 5000)]);
    await waitFor(() => in1.reports.get(1)!.length > 0, 5000, 'snapshot report');
    expect(in1.reports.get(1)).toEqual([{ kind: 'snapshot', to: 'n2', ok: false }]);
    expect(in2.count()).toBe(0);
    expect(n2!.stats.snapshotsRejected).toBe(1);
    // Seen from a raw client: DATA_CORRUPTION / snapshot_too_large.
    const c = createClient(PeerService, `127.0.0.1:${n2!.port}`);
    const call = c.snapshot();
    for (const ch of chunkSnapshot(snapMessage('n1', 'n2', 5000), 1000))
      call.write({ chunk: chunkToPb(1, ch) });
    const err = (await call.end().catch((e) => e)) as TidemarkError;
    c.close();
    expect(isTidemarkError(err, 'DATA_CORRUPTION')).toBe(true);
    expect(err.reason).toBe('snapshot_too_large');
  });

  it('rejects a corrupted snapshot (checksum, gap)', async () => {
    const [n2] = await mesh(['n2']);
    const in2 = new Inbox().attach(n2!, [1]);
    const c = createClient(PeerService, `127.0.0.1:${n2!.port}`);
    try {
      const chunks = chunkSnapshot(snapMessage('n1', 'n2', 3000), 1000);
      // Flip a byte in the middle chunk.
      const bad = chunks.map((ch, i) =>
        i === 1 ? { ...ch, data: ch.data.map((b, j) => (j === 5 ? b ^ 1 : b)) } : ch,
      );
      let call = c.snapshot();
      for (const ch of bad) call.write({ chunk: chunkToPb(1, ch) });
      let err = (await call.end().catch((e) => e)) as TidemarkError;
      expect(isTidemarkError(err, 'DATA_CORRUPTION')).toBe(true);
      expect(err.reason).toBe('snapshot_checksum_mismatch');
      // A missing chunk.
      call = c.snapshot();
      for (const ch of [chunks[0]!, chunks[2]!]) call.write({ chunk: chunkToPb(1, ch) });
      err = (await call.end().catch((e) => e)) as TidemarkError;
      expect(err.reason).toBe('snapshot_chunk_out_of_order');
      // A stream that stops early.
      call = c.snapshot();
      call.write({ chunk: chunkToPb(1, chunks[0]!) });
      err = (await call.end().catch((e) => e)) as TidemarkError;
      expect(err.reason).toBe('snapshot_incomplete');
      expect(in2.count()).toBe(0);
      // The intact stream is accepted.
      call = c.snapshot();
      for (const ch of chunks) call.write({ chunk: chunkToPb(1, ch) });
      const ok = await call.end();
      expect(ok.bytes).toBe(3000n);
      expect(in2.count()).toBe(1);
    } finally {
      c.close();
    }
  });

  it('forwards a write batch to another node, errors included', async () => {
    const [n1, n2] = await mesh(['n1', 'n2'], {
      onForward: async ({ shard, batch, deadline }) => {
        if (shard === 9) throw notLeader('n3');
        expect(deadline).toBeGreaterThan(Date.now());
        return { accepted: batch.length, rejected: [{ seriesIndex: 0, sampleIndex: 1, reason: 'nan' }] };
      },
    });
    expect(n2).toBeDefined();
    const r = await n1!.forward('n2', 3, new Uint8Array(17), { timeoutMs: 5000 });
    expect(r).toEqual({ accepted: 17, rejected: [{ seriesIndex: 0, sampleIndex: 1, reason: 'nan' }] });
    const err = (await n1!
      .forward('n2', 9, new Uint8Array(1), { timeoutMs: 5000 })
      .catch((e) => e)) as TidemarkError;
    expect(isTidemarkError(err, 'NOT_LEADER')).toBe(true);
    expect(err.details.leaderHint).toBe('n3');
    const unknown = (await n1!.forward('n9', 1, new Uint8Array(1)).catch((e) => e)) as TidemarkError;
    expect(unknown.reason).toBe('unknown_peer');
  });

  it('sends the forwards of one turn to a node as one ForwardBatch, each answered on its own', async () => {
    const seen: { shard: number; deadline: number | undefined }[] = [];
    const [n1] = await mesh(['n1', 'n2'], {
      onForward: async ({ shard, batch, deadline }) => {
        seen.push({ shard, deadline });
        if (shard === 9) throw notLeader('n3');
        if (shard === 7) throw new Error('boom');
        return { accepted: batch.length, rejected: [] };
      },
    });
    const t = Date.now();
    const calls0 = n1!.stats.forwardCalls;
    const answers = await Promise.all(
      [3, 9, 5, 7].map((shard) =>
        n1!
          .forward('n2', shard, new Uint8Array(shard), { deadline: t + 1000 * shard })
          .catch((e: TidemarkError) => e),
      ),
    );
    expect(n1!.stats.forwardCalls - calls0).toBe(1);
    expect(n1!.stats.forwardsBatched).toBe(4);
    expect(answers[0]).toEqual({ accepted: 3, rejected: [] });
    expect(answers[2]).toEqual({ accepted: 5, rejected: [] });
    const notLeaderErr = answers[1] as TidemarkError;
    expect(isTidemarkError(notLeaderErr, 'NOT_LEADER')).toBe(true);
    expect(notLeaderErr.details.leaderHint).toBe('n3');
    expect(isTidemarkError(answers[3], 'INTERNAL')).toBe(true);
    // Each forward kept its own deadline.
    expect(seen.map((x) => [x.shard, x.deadline])).toEqual([3, 9, 5, 7].map((s) => [s, t + 1000 * s]));
    // A forward in a later turn is a call of its own.
    expect(await n1!.forward('n2', 1, new Uint8Array(2))).toEqual({ accepted: 2, rejected: [] });
    expect(n1!.stats.forwardCalls - calls0).toBe(2);
    expect(n1!.stats.forwardsBatched).toBe(4);
  });

  it('refuses a ForwardBatch of more than MAX_FORWARD_BATCH forwards, running none of them', async () => {
    let ran = 0;
    const [n2] = await mesh(['n2'], {
      onForward: async ({ batch }) => {
        ran++;
        return { accepted: batch.length, rejected: [] };
      },
    });
    const c = createClient(PeerService, `127.0.0.1:${n2!.port}`);
    try {
      const forwards = Array.from({ length: MAX_FORWARD_BATCH + 1 }, (_, i) => ({
        shard: i % 16,
        batch: new Uint8Array(1),
      }));
      const err = (await c.forwardBatch({ forwards }).catch((e) => e)) as TidemarkError;
      expect(isTidemarkError(err, 'INVALID_ARGUMENT')).toBe(true);
      expect(err.reason).toBe('forward_batch_too_large');
      expect(err.details.field).toBe('forwards');
      expect(ran).toBe(0);
      // At the limit it is served.
      const ok = await c.forwardBatch({ forwards: forwards.slice(0, MAX_FORWARD_BATCH) });
      expect(ok.results).toHaveLength(MAX_FORWARD_BATCH);
      expect(ran).toBe(MAX_FORWARD_BATCH);
    } finally {
      c.close();
    }
  });

  it('falls back to one Forward per batch when the peer has no ForwardBatch (an older version)', async () => {
    // A bare gRPC server with PeerService as it was before ForwardBatch (grpc-js answers UNIMPLEMENTED for it).
    const server = createServer();
    let forwards = 0;
    const { forwardBatch: _added, ...before } = serviceDefinition(PeerService);
    server.addService(before, {
      forward: (call: grpc.ServerUnaryCall<ForwardRequest, unknown>, done: grpc.sendUnaryData<unknown>) => {
        forwards++;
        done(null, { accepted: BigInt(call.request.batch.length), rejected: [] });
      },
    });
    const port = await bindServer(server, '127.0.0.1:0');
    const n1 = await PeerTransport.start({ id: 'n1', peers: { old: `127.0.0.1:${port}` } });
    try {
      const first = await Promise.all([1, 2].map((s) => n1.forward('old', s, new Uint8Array(s))));
      expect(first.map((r) => r.accepted)).toEqual([1, 2]);
      expect(forwards).toBe(2);
      // Remembered: the next turn's forwards go one call each, without trying ForwardBatch again.
      const calls = n1.stats.forwardCalls;
      await Promise.all([3, 4].map((s) => n1.forward('old', s, new Uint8Array(s))));
      expect(n1.stats.forwardCalls - calls).toBe(2);
      expect(forwards).toBe(4);
    } finally {
      await n1.close();
      await shutdownServer(server);
    }
  });

  it('refuses a stream addressed to another node', async () => {
    const [n2] = await mesh(['n2']);
    const c = createClient(PeerService, `127.0.0.1:${n2!.port}`);
    const call = c.raft();
    call.write({ frame: { from: 'n1', to: 'n7', messages: [] } });
    const err = await call.closed;
    c.close();
    expect(err?.code).toBe('FAILED_PRECONDITION');
    expect(err?.reason).toBe('wrong_node');
  });
});
