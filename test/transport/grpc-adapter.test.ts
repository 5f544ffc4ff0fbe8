import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  invalidArgument,
  isTidemarkError,
  notLeader,
  resourceExhausted,
  type TidemarkError,
} from '../../src/errors/index.js';
import {
  type QueryResponse,
  TidemarkService,
  WriteRequestSchema,
  WriteResponseSchema,
} from '../../src/gen/tidemark/v1/client_pb.js';
import { PeerService } from '../../src/gen/tidemark/v1/peer_pb.js';
import {
  addService,
  bindServer,
  type CallContext,
  createClient,
  createServer,
  methodPath,
  type ServiceClient,
  serviceDefinition,
  shutdownServer,
} from '../../src/transport/grpc-adapter.js';
import { poll } from '../helpers/wait.js';

const LIMIT = 1024 * 1024;

let server: grpc.Server;
let address: string;
let client: ServiceClient<typeof TidemarkService>;
let peerClient: ServiceClient<typeof PeerService>;
/** What the slow handler saw of its call. */
const seen: {
  deadline?: number | undefined;
  aborted?: boolean;
  queryAborted?: boolean;
  answeredSignal?: AbortSignal;
} = {};

async function rejection(p: Promise<unknown>): Promise<TidemarkError> {
  try {
    await p;
  } catch (err) {
    expect(isTidemarkError(err), String(err)).toBe(true);
    return err as TidemarkError;
  }
  throw new Error('expected a rejection');
}

async function waitFor(fn: () => boolean, ms = 5000): Promise<void> {
  await poll(() => fn() || undefined, 'condition', { timeoutMs: ms });
}

function waitAbort(ctx: CallContext, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    ctx.signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

beforeAll(async () => {
  server = createServer({ maxMessageBytes: LIMIT });
  addService(server, TidemarkService, {
    async write(req) {
      const metric = req.batch?.series[0]?.series?.metric ?? '';
      if (metric === '')
        throw invalidArgument('metric_empty', 'batch.series[0].series.metric', 'empty metric');
      if (metric === 'elsewhere') throw notLeader('n2');
      if (metric === 'busy') throw resourceExhausted('queue_full', 'too many writes in flight', 250);
      if (metric === 'boom') throw new Error('kaboom');
      let accepted = 0n;
      const rejected = [];
      for (const [si, s] of (req.batch?.series ?? []).entries()) {
        for (const [ti, t] of s.timestamps.entries()) {
          if (t < 0n) rejected.push({ seriesIndex: si, sampleIndex: ti, reason: 'timestamp_negative' });
          else accepted++;
        }
      }
      return { accepted, rejected };
    },
    async *query(req, ctx) {
      const n = Number(req.endMs - req.startMs);
      if (req.metric === 'endless') {
        try {
          for (let i = 0; ; i++)
            yield { series: [{ series: { metric: 'endless' }, timestamps: [BigInt(i)] }] };
        } finally {
          seen.queryAborted = ctx.signal.aborted;
        }
      }
      for (let i = 0; i < n; i++) {
        if (req.metric === 'fail-midway' && i === 2) throw notLeader('n3', 'lost leadership');
        yield {
          series: [{ series: { metric: req.metric, tags: { i: String(i) } }, timestamps: [BigInt(i)] }],
        };
      }
    },
    transferLeader: async (_req, ctx) => {
      seen.answeredSignal = ctx.signal;
      return { leader: 'n1', term: 1n };
    },
    setRetention: async () => ({ shards: [0, 1] }),
    shardMap: () => ({
      shardCount: 2,
      shards: [
        { shard: 0, replicas: ['n1', 'n2', 'n3'], leader: 'n1', term: 3n },
        { shard: 1, replicas: ['n2', 'n3', 'n1'], leader: '', term: 0n },
      ],
    }),
    async status(_req, ctx) {
      seen.deadline = ctx.deadline;
      await waitAbort(ctx, 5000);
      seen.aborted = ctx.signal.aborted;
      return { nodeId: 'n1' };
    },
  });
  addService(server, PeerService, {
    // Echo: one response per request, same frame.
    async *raft(requests) {
      for await (const r of requests) yield { frame: r.frame };
    },
    async snapshot(requests) {
      let bytes = 0n;
      let shard = 0;
      for await (const r of requests) {
        bytes += BigInt(r.chunk?.data.length ?? 0);
        shard = r.chunk?.shard ?? 0;
      }
      return { shard, bytes };
    },
    forward: (req) => ({ accepted: BigInt(req.batch.length) }),
    forwardBatch: (req) => ({
      results: req.forwards.map((f) => ({ shard: f.shard, response: { accepted: BigInt(f.batch.length) } })),
    }),
    hello: (req) => ({ node: req.from, started: false, progressedShards: [] }),
    join: () => ({ member: false }),
  });
  const port = await bindServer(server, '127.0.0.1:0');
  address = `127.0.0.1:${port}`;
  client = createClient(TidemarkService, address, { maxMessageBytes: 8 * LIMIT });
  peerClient = createClient(PeerService, address);
});

afterAll(async () => {
  client?.close();
  peerClient?.close();
  if (server) await shutdownServer(server);
});

describe('serviceDefinition', () => {
  it('derives paths and streaming flags from the descriptor', () => {
    const def = serviceDefinition(TidemarkService);
    expect(Object.keys(def).sort()).toEqual([
      'query',
      'setRetention',
      'shardMap',
      'status',
      'transferLeader',
      'write',
    ]);
    expect(def.write.path).toBe('/tidemark.v1.TidemarkService/Write');
    expect(def.shardMap.path).toBe('/tidemark.v1.TidemarkService/ShardMap');
    expect([def.write.requestStream, def.write.responseStream]).toEqual([false, false]);
    expect([def.query.requestStream, def.query.responseStream]).toEqual([false, true]);
    const peer = serviceDefinition(PeerService);
    expect([peer.raft.requestStream, peer.raft.responseStream]).toEqual([true, true]);
    expect([peer.snapshot.requestStream, peer.snapshot.responseStream]).toEqual([true, false]);
    expect(methodPath(PeerService, PeerService.method.forward)).toBe('/tidemark.v1.PeerService/Forward');
    // Serialization is protobuf binary, identical to toBinary.
    const msg = create(WriteResponseSchema, { accepted: 7n });
    const buf = def.write.responseSerialize(msg);
    expect((def.write.responseDeserialize(buf) as { accepted: bigint }).accepted).toBe(7n);
  });
});

describe('grpc adapter over a real server', () => {
  it('unary: round-trips a write (init objects and created messages alike)', async () => {
    const res = await client.write({
      batch: {
        series: [
          { series: { metric: 'cpu', tags: { host: 'a' } }, timestamps: [1n, -5n, 3n], values: [1, 2, 3] },
          { series: { metric: 'cpu', tags: { host: 'b' } }, timestamps: [4n], values: [4] },
        ],
      },
    });
    expect(res.accepted).toBe(3n);
    expect(res.rejected.map((r) => [r.seriesIndex, r.sampleIndex, r.reason])).toEqual([
      [0, 1, 'timestamp_negative'],
    ]);
    const again = await client.write(
      create(WriteRequestSchema, {
        batch: { series: [{ series: { metric: 'm' }, timestamps: [1n], values: [1] }] },
      }),
    );
    expect(again.accepted).toBe(1n);
    const map = await client.shardMap({});
    expect(map.shardCount).toBe(2);
    expect(map.shards[0]).toMatchObject({ shard: 0, replicas: ['n1', 'n2', 'n3'], leader: 'n1', term: 3n });
  });

  it('server-streaming: responses arrive as an async iterable', async () => {
    const got: QueryResponse[] = [];
    for await (const r of client.query({ metric: 'cpu', startMs: 10n, endMs: 15n })) got.push(r);
    expect(got.map((r) => r.series[0]!.series!.tags.i)).toEqual(['0', '1', '2', '3', '4']);
  });

  it('server-streaming: an error after some responses reaches the iterator as a TidemarkError', async () => {
    const got: QueryResponse[] = [];
    const err = await rejection(
      (async () => {
        for await (const r of client.query({ metric: 'fail-midway', startMs: 0n, endMs: 10n })) got.push(r);
      })(),
    );
    expect(got.length).toBe(2);
    expect(err.code).toBe('NOT_LEADER');
    expect(err.details.leaderHint).toBe('n3');
    expect(err.message).toBe('lost leadership');
  });

  it('server-streaming: leaving the loop early cancels the call on the server', async () => {
    let n = 0;
    for await (const _ of client.query({ metric: 'endless' })) if (++n === 3) break;
    await waitFor(() => seen.queryAborted !== undefined);
    expect(seen.queryAborted).toBe(true);
  });

  it('bidi: a duplex call writes requests and iterates responses', async () => {
    const call = peerClient.raft();
    const froms = ['a', 'b', 'c'];
    for (const from of froms) call.write({ frame: { from, to: 'x', messages: [{ shard: 1 }] } });
    call.end();
    const back: string[] = [];
    for await (const r of call) back.push(r.frame!.from);
    expect(back).toEqual(froms);
    expect(await call.opened).toBe(true);
    expect(await call.closed).toBeUndefined();
  });

  it('client-streaming: writes chunks, end() resolves with the response', async () => {
    const call = peerClient.snapshot();
    for (let i = 0; i < 4; i++) call.write({ chunk: { shard: 9, data: new Uint8Array(1000) } });
    const res = await call.end();
    expect(res.bytes).toBe(4000n);
    expect(res.shard).toBe(9);
    const fwd = await peerClient.forward({ shard: 1, batch: new Uint8Array(12) });
    expect(fwd.accepted).toBe(12n);
  });
});

describe('error mapping', () => {
  it('INVALID_ARGUMENT keeps reason and field; the gRPC status is INVALID_ARGUMENT', async () => {
    const err = await rejection(client.write({ batch: { series: [{ series: { metric: '' } }] } }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.reason).toBe('metric_empty');
    expect(err.field).toBe('batch.series[0].series.metric');
    expect(err.message).toBe('empty metric');
    // A plain grpc-js client sees the mapped status code and the trailer.
    const raw = new grpc.Client(address, grpc.credentials.createInsecure());
    const def = serviceDefinition(TidemarkService).write;
    const se = await new Promise<grpc.ServiceError>((resolve) => {
      raw.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        { batch: { series: [{ series: { metric: '' } }] } },
        (e) => resolve(e!),
      );
    });
    raw.close();
    expect(se.code).toBe(grpc.status.INVALID_ARGUMENT);
    const trailer = JSON.parse((se.metadata.get('tidemark-error-bin')[0] as Buffer).toString('utf8'));
    expect(trailer).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'metric_empty' });
  });

  it('NOT_LEADER carries leaderHint', async () => {
    const err = await rejection(client.write({ batch: { series: [{ series: { metric: 'elsewhere' } }] } }));
    expect(err.code).toBe('NOT_LEADER');
    expect(err.reason).toBe('not_leader');
    expect(err.details.leaderHint).toBe('n2');
  });

  it('RESOURCE_EXHAUSTED carries retryAfterMs', async () => {
    const err = await rejection(client.write({ batch: { series: [{ series: { metric: 'busy' } }] } }));
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.reason).toBe('queue_full');
    expect(err.retryAfterMs).toBe(250);
  });

  it('an unknown error becomes INTERNAL', async () => {
    const err = await rejection(client.write({ batch: { series: [{ series: { metric: 'boom' } }] } }));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe('kaboom');
  });

  it('an unreachable server becomes UNAVAILABLE', async () => {
    const s = createServer();
    const port = await bindServer(s, '127.0.0.1:0');
    await shutdownServer(s);
    const c = createClient(TidemarkService, `127.0.0.1:${port}`);
    const err = await rejection(c.shardMap({}, { timeoutMs: 5000 }));
    c.close();
    expect(err.code).toBe('UNAVAILABLE');
  });
});

describe('deadlines and limits', () => {
  it('a deadline reaches the handler and expires as DEADLINE_EXCEEDED', async () => {
    const before = Date.now();
    const err = await rejection(client.status({}, { timeoutMs: 150 }));
    expect(err.code).toBe('DEADLINE_EXCEEDED');
    expect(seen.deadline).toBeGreaterThanOrEqual(before + 100);
    expect(seen.deadline).toBeLessThanOrEqual(Date.now() + 1000);
    // The handler's signal fires when the deadline passes.
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.aborted).toBe(true);
  });

  it('a call that has answered is not aborted when grpc-js reports its stream closed', async () => {
    await client.transferLeader({ shard: 0, to: 'n1' });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.answeredSignal).toBeDefined();
    expect(seen.answeredSignal!.aborted).toBe(false);
  });

  it('an AbortSignal cancels the call', async () => {
    const ac = new AbortController();
    const p = client.status({}, { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    const err = await rejection(p);
    expect(err.code).toBe('CLOSED');
    expect(err.reason).toBe('cancelled');
  });

  it('a message over the server limit fails with RESOURCE_EXHAUSTED / message_too_large', async () => {
    const big = { batch: { series: [{ series: { metric: 'x', tags: { pad: 'p'.repeat(2 * LIMIT) } } }] } };
    const err = await rejection(client.write(big));
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.reason).toBe('message_too_large');
    expect(err.message).toMatch(/larger than/);
  });

  it('a message over the client limit fails before it is sent', async () => {
    const small = createClient(TidemarkService, address, { maxMessageBytes: 1000 });
    const err = await rejection(
      small.write({ batch: { series: [{ series: { metric: 'x', tags: { pad: 'p'.repeat(5000) } } }] } }),
    );
    small.close();
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.reason).toBe('message_too_large');
    // And the server keeps serving.
    expect((await client.shardMap({})).shardCount).toBe(2);
  });
});

describe('HTTP/2 flow-control windows', () => {
  it('a server advertises the wide per-stream window and widens each connection', async () => {
    const { connect } = await import('node:http2');
    const { CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES } = await import(
      '../../src/transport/grpc-adapter.js'
    );
    const session = connect(`http://${address}`);
    try {
      await new Promise<void>((resolve, reject) => {
        session.once('remoteSettings', () => resolve());
        session.once('error', reject);
      });
      // The 64 KiB protocol default would stall concurrent writes behind the server's WINDOW_UPDATEs.
      expect(session.remoteSettings.initialWindowSize).toBe(STREAM_WINDOW_BYTES);
      // The connection window arrives as a WINDOW_UPDATE on stream 0: our send window grows past 64 KiB.
      await waitFor(() => (session.state.remoteWindowSize ?? 0) >= CONNECTION_WINDOW_BYTES);
    } finally {
      session.close();
    }
  });

  it('a client asks for the wide window on its connections', async () => {
    const { createServer: createH2Server } = await import('node:http2');
    const { CONNECTION_WINDOW_BYTES } = await import('../../src/transport/grpc-adapter.js');
    // A bare HTTP/2 server (not a grpc-js one) sees what the client's SETTINGS frame asked for.
    const h2 = createH2Server();
    const settings = new Promise<number | undefined>((resolve) =>
      h2.on('session', (s) => s.once('remoteSettings', (st) => resolve(st.initialWindowSize))),
    );
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
    const port = (h2.address() as { port: number }).port;
    const c = createClient(TidemarkService, `127.0.0.1:${port}`);
    c.status({}, { deadline: Date.now() + 300 }).catch(() => {});
    try {
      expect(await settings).toBe(CONNECTION_WINDOW_BYTES);
    } finally {
      c.close();
      await new Promise<void>((resolve) => h2.close(() => resolve()));
    }
  });
});
