/**
 * Malformed requests on every entry point of a real node (gRPC client API, peer Forward, HTTP writes): each
 * gets a clear error and changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApi, type HttpApi } from '../../src/api/http.js';
import type { TidemarkError } from '../../src/errors/index.js';
import { MatchType, TidemarkService } from '../../src/gen/tidemark/v1/client_pb.js';
import { encodeBatch } from '../../src/ingest/batch-codec.js';
import { type Series, seriesId, shardOf } from '../../src/model/index.js';
import { asMessage, createClient, type ServiceClient } from '../../src/transport/grpc-adapter.js';
import { encodeWriteRequest } from '../../src/transport/write-codec.js';
import { NodeCluster, waitFor } from './fixtures/node-cluster.js';

const SHARDS = 4;
const IDS = ['a', 'b', 'c'];

function seriesOnShard(shard: number, metric: string): Series {
  for (let i = 0; ; i++) {
    const s = { metric, tags: { host: `h${i}` } };
    if (shardOf(seriesId(s), SHARDS) === shard) return s;
  }
}

async function failure(
  p: Promise<unknown>,
): Promise<{ code: string; reason: string; field?: string; message: string }> {
  return p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e as { code: string; reason: string; field?: string; message: string },
  );
}

describe('TidemarkNode: malformed requests change nothing', () => {
  const cluster = new NodeCluster(IDS, SHARDS);
  let client: ServiceClient<typeof TidemarkService>;
  let api: HttpApi;
  let http: string;

  /** Samples of `metric` on every node (linearizable reads). */
  async function countOf(metric: string): Promise<number[]> {
    return Promise.all(
      IDS.map(async (id) => {
        const got = await cluster.node(id).select({ metric });
        return got.reduce((n, s) => n + s.timestamps.length, 0);
      }),
    );
  }

  /** Waits until every replica has applied its whole log (leaders' no-ops included). */
  async function settled(): Promise<void> {
    await waitFor(
      () =>
        IDS.every((id) =>
          [...cluster.node(id).replicas.values()].every((r) => {
            const s = r.status();
            return s.leader !== '' && s.applied === s.commit && s.commit === s.lastIndex;
          }),
        ),
      'replicas settled',
    );
  }

  beforeAll(async () => {
    await cluster.start({ balancer: false });
    await cluster.ready();
    await settled();
    client = createClient(TidemarkService, cluster.node('a').endpoints.grpc, { maxMessageBytes: 64 << 20 });
    api = createHttpApi({ cluster: cluster.node('b') });
    const { port } = await api.listen('127.0.0.1', 0);
    http = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    client?.close();
    await api?.close();
    await cluster.close();
  });

  it('gRPC Write: invalid series, empty tag value, mismatched lengths → INVALID_ARGUMENT naming the field', async () => {
    // Raft indexes are no witness here: a leader change under load appends a no-op. The data is.
    await settled();
    const good = { series: { metric: 'mw', tags: { host: 'x' } }, timestamps: [1n, 2n], values: [1, 2] };
    const cases: [unknown, string][] = [
      [
        { series: { metric: 'bad metric!', tags: { host: 'x' } }, timestamps: [1n], values: [1] },
        'batch.series[1].series.metric',
      ],
      [{ series: { metric: '', tags: {} }, timestamps: [1n], values: [1] }, 'batch.series[1].series.metric'],
      [
        { series: { metric: 'mw', tags: { host: '' } }, timestamps: [1n], values: [1] },
        'batch.series[1].series.tags.host',
      ],
      [
        { series: { metric: 'mw', tags: { host: 'y' } }, timestamps: [1n, 2n], values: [1] },
        'batch.series[1].values',
      ],
      [{ timestamps: [1n], values: [1] }, 'batch.series[1].series'],
    ];
    for (const [bad, field] of cases) {
      // The good series first: a rejected request must not write it either.
      const err = await failure(client.write({ batch: { series: [good, bad as typeof good] } }));
      expect(err, field).toMatchObject({ code: 'INVALID_ARGUMENT', field });
      expect(err.message.length).toBeGreaterThan(0);
    }
    expect(await countOf('mw')).toEqual([0, 0, 0]);
  });

  it('gRPC Write: bytes that are not a WriteRequest → INVALID_ARGUMENT request_malformed, nothing stored', async () => {
    await settled();
    const good = encodeWriteRequest([
      { metric: 'mraw', tags: { host: 'x' }, timestamps: [1, 2], values: [1, 2] },
    ]);
    const garbage = [
      good.subarray(0, good.length - 3), // truncated
      Uint8Array.from([...good, 0x08]), // a key with no value
      Uint8Array.of(0x0a, 0x05, 0x0a, 0x03, 0x12, 0x01, 0x80), // a varint cut short
      Uint8Array.of(0x08, 0x01), // the batch field as a varint
    ];
    for (const bytes of garbage) {
      const err = await failure(client.write(asMessage(bytes)));
      expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'request_malformed', field: 'batch' });
    }
    expect(await countOf('mraw')).toEqual([0, 0, 0]);
    // The same bytes whole are a good write.
    expect((await client.write(asMessage(good))).accepted).toBe(2n);
    expect(await countOf('mraw')).toEqual([2, 2, 2]);
  });

  it('gRPC Write: the same series twice in one request (tags in another order) is one series, every sample stored', async () => {
    await settled();
    const res = await client.write({
      batch: {
        series: [
          { series: { metric: 'mdup', tags: { host: 'x', dc: 'eu' } }, timestamps: [1n, 2n], values: [1, 2] },
          { series: { metric: 'mdup', tags: { host: 'y' } }, timestamps: [1n], values: [7] },
          { series: { metric: 'mdup', tags: { dc: 'eu', host: 'x' } }, timestamps: [3n, 2n], values: [3, 4] },
        ],
      },
    });
    expect(res.accepted).toBe(5n);
    expect(await countOf('mdup')).toEqual([3 + 1, 3 + 1, 3 + 1]);
    const got = await cluster.node('c').select({ metric: 'mdup' });
    const x = got.find((s) => s.tags.host === 'x');
    // t=2 written twice in one request: the later sample wins.
    expect(x && [...x.timestamps]).toEqual([1, 2, 3]);
    expect(x && [...x.values]).toEqual([1, 4, 3]);
    // The shard still takes writes (its log holds no entry its replicas cannot apply).
    expect(
      (
        await client.write({
          batch: {
            series: [
              { series: { metric: 'mdup', tags: { host: 'x', dc: 'eu' } }, timestamps: [9n], values: [9] },
            ],
          },
        })
      ).accepted,
    ).toBe(1n);
    expect(await countOf('mdup')).toEqual([5, 5, 5]);
  });

  it('gRPC Write: a timestamp out of range fails the whole request naming it, nothing stored', async () => {
    for (const [bad, k] of [
      [-1n, 1],
      [2n ** 62n, 1],
      [-(2n ** 63n), 1],
    ] as const) {
      const err = await failure(
        client.write({
          batch: {
            series: [
              { series: { metric: 'mt', tags: { host: 'x' } }, timestamps: [5n, bad], values: [1, 2] },
            ],
          },
        }),
      );
      expect(err).toMatchObject({
        code: 'INVALID_ARGUMENT',
        reason: 'timestamp_out_of_range',
        field: `batch.series[0].timestamps[${k}]`,
      });
    }
    expect(await countOf('mt')).toEqual([0, 0, 0]);
  });

  it('gRPC Query: an invalid regex → INVALID_ARGUMENT naming the matcher; a missing metric names `metric`', async () => {
    const q = async (req: Parameters<typeof client.query>[0]) => {
      for await (const _ of client.query(req)) {
        // drain
      }
    };
    const err = await failure(
      q({ metric: 'mw', matchers: [{ name: 'host', type: MatchType.REGEX, value: '(' }] }),
    );
    expect(err).toMatchObject({
      code: 'INVALID_ARGUMENT',
      reason: 'matcher_regex_invalid',
      field: 'matchers[0].value',
    });
    expect(await failure(q({ metric: '' }))).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'metric' });
    expect(
      await failure(
        q({ metric: 'mw', matchers: [{ name: 'host', type: MatchType.UNSPECIFIED, value: 'x' }] }),
      ),
    ).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'matchers[0].type' });
  });

  it('gRPC: a message over limits.maxRequestBytes → RESOURCE_EXHAUSTED, node healthy', async () => {
    const limit = cluster.node('a').config.limits.maxRequestBytes;
    const huge = 'v'.repeat(limit + 1024);
    const err = await failure(
      client.write({
        batch: {
          series: [{ series: { metric: 'mbig', tags: { host: huge } }, timestamps: [1n], values: [1] }],
        },
      }),
    );
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    const ok = await client.write({
      batch: { series: [{ series: { metric: 'mok', tags: { host: 'x' } }, timestamps: [1n], values: [1] }] },
    });
    expect(ok.accepted).toBe(1n);
    expect(await countOf('mbig')).toEqual([0, 0, 0]);
  });

  it('peer Forward with a corrupt batch → DATA_CORRUPTION, nothing applied, node healthy', async () => {
    const shard = 2;
    const leader = cluster
      .node('a')
      .status()
      .replicas.find((r) => r.shard === shard)!.leader;
    const from = IDS.find((id) => id !== leader)!;
    const good = encodeBatch({
      series: [seriesOnShard(shard, 'mf')],
      seriesRef: Uint32Array.of(0, 0),
      timestamps: Float64Array.of(1, 2),
      values: Float64Array.of(1, 2),
      length: 2,
    });
    const garbage = [
      Uint8Array.of(0xde, 0xad, 0xbe, 0xef, 1, 2, 3),
      new Uint8Array(0),
      good.subarray(0, good.length - 3), // truncated
      Uint8Array.from(good, (b, i) => (i === 3 ? 0xff : b)), // series count blown up
    ];
    await settled();
    for (const bytes of garbage) {
      const err = await failure(cluster.node(from).peer.forward(leader, shard, bytes, { timeoutMs: 5000 }));
      expect(['DATA_CORRUPTION', 'INVALID_ARGUMENT']).toContain(err.code);
    }
    // A well-formed batch for the wrong shard, and a shard that does not exist: refused, not stored.
    const elsewhere = encodeBatch({
      series: [seriesOnShard(shard, 'mf'), seriesOnShard((shard + 1) % SHARDS, 'mf')],
      seriesRef: Uint32Array.of(0, 1),
      timestamps: Float64Array.of(1, 1),
      values: Float64Array.of(1, 1),
      length: 2,
    });
    expect(
      await failure(cluster.node(from).peer.forward(leader, shard, elsewhere, { timeoutMs: 5000 })),
    ).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'wrong_shard', field: 'batch.series[1]' });
    expect(
      await failure(cluster.node(from).peer.forward(leader, SHARDS + 3, good, { timeoutMs: 5000 })),
    ).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'shard_invalid', field: 'shard' });
    expect(await countOf('mf')).toEqual([0, 0, 0]);
    expect(cluster.node(leader).readiness()).toEqual({ ready: true, reasons: [] });
    // The same node still takes a good forward.
    const ok = await cluster.node(from).peer.forward(leader, shard, good, { timeoutMs: 5000 });
    expect(ok.accepted).toBe(2);
    expect(await countOf('mf')).toEqual([2, 2, 2]);
    // The same bad forwards made together leave as one ForwardBatch: each fails on its own, and the good
    // forward riding with them is stored.
    const good2 = encodeBatch({
      series: [seriesOnShard(shard, 'mf2')],
      seriesRef: Uint32Array.of(0, 0, 0),
      timestamps: Float64Array.of(1, 2, 3),
      values: Float64Array.of(1, 2, 3),
      length: 3,
    });
    const peer = cluster.node(from).peer;
    const batched0 = peer.stats.forwardsBatched;
    const answers = await Promise.all(
      [...garbage.map((b) => [shard, b] as const), [shard, elsewhere] as const, [shard, good2] as const].map(
        ([s, b]) => peer.forward(leader, s, b, { timeoutMs: 5000 }).catch((e: unknown) => e),
      ),
    );
    expect(peer.stats.forwardsBatched - batched0).toBe(garbage.length + 2);
    for (const a of answers.slice(0, garbage.length)) {
      expect(['DATA_CORRUPTION', 'INVALID_ARGUMENT']).toContain((a as TidemarkError).code);
    }
    expect(answers[garbage.length]).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'wrong_shard' });
    expect(answers[garbage.length + 1]).toMatchObject({ accepted: 3 });
    expect(await countOf('mf2')).toEqual([3, 3, 3]);
    expect(await countOf('mf')).toEqual([2, 2, 2]);
    expect(cluster.node(leader).readiness()).toEqual({ ready: true, reasons: [] });
  });

  it('HTTP /write with bad bodies → 400 with the documented body, nothing written', async () => {
    const post = (path: string, body: string) => fetch(`${http}${path}`, { method: 'POST', body });
    // Every line bad: 400, errors listed, no "partial write" prefix.
    let res = await post('/write', 'mh,host=a\nmh,host=a value=\n=bad value=1');
    expect(res.status).toBe(400);
    let body = (await res.json()) as Record<string, unknown>;
    expect(typeof body.error).toBe('string');
    expect(body.error).not.toMatch(/^partial write/);
    expect(Array.isArray(body.errors)).toBe(true);
    expect((body.errors as unknown[]).length).toBe(3);
    expect(body.accepted).toBe(0);
    // Whole-request error: a bad precision.
    res = await post('/write?precision=fortnight', 'mh,host=a value=1 1');
    expect(res.status).toBe(400);
    body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'precision_invalid' });
    expect(typeof body.error).toBe('string');
    expect(await countOf('mh_value')).toEqual([0, 0, 0]);
  });

  it('HTTP /api/put with bad bodies → 400 with the documented body, nothing written', async () => {
    const post = (path: string, body: string) =>
      fetch(`${http}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    let res = await post('/api/put', '{"metric": "mp", "timestamp": ');
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({ code: 400, reason: 'json_invalid' });
    expect(typeof body.error.message).toBe('string');
    res = await post(
      '/api/put?details',
      JSON.stringify([
        { metric: 'mp', timestamp: 1346846400, value: 'x', tags: { host: 'a' } },
        { metric: 'mp', timestamp: 1346846400, value: 1, tags: { host: '' } },
        { metric: 'bad metric!', timestamp: 1346846400, value: 1, tags: { host: 'a' } },
      ]),
    );
    expect(res.status).toBe(400);
    const details = (await res.json()) as { errors: { error: string }[]; failed: number; success: number };
    expect(details).toMatchObject({ failed: 3, success: 0 });
    expect(details.errors).toHaveLength(3);
    for (const e of details.errors) expect(e.error.length).toBeGreaterThan(0);
    expect(await countOf('mp')).toEqual([0, 0, 0]);
    // The node is still healthy and writable over HTTP.
    res = await post(
      '/api/put',
      JSON.stringify({ metric: 'mp', timestamp: 1346846400, value: 1, tags: { host: 'a' } }),
    );
    expect(res.status).toBe(204);
    expect(await countOf('mp')).toEqual([1, 1, 1]);
  });
});
