/**
 * The limits over a real node (TidemarkNode: LMDB stores, Raft, the gRPC client API) and the HTTP API on
 * it. Two single-node clusters, configured through the node configuration (limits.* settings):
 *  - "sizes": request body size, samples/series per request, line length, series per metric, concurrent
 *    queries per client;
 *  - "rate": new series per minute.
 * Each violation: the status of src/errors/status.ts, a typed error naming the setting and value, the
 * rejection counted in tidemark_limit_rejections_total{limit}, and nothing already written lost.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApi, type HttpApi } from '../../src/api/http.js';
import { resolveNodeConfig } from '../../src/cluster/config.js';
import { TidemarkNode } from '../../src/cluster/node.js';
import { TidemarkError } from '../../src/errors/index.js';
import { TidemarkService } from '../../src/gen/tidemark/v1/client_pb.js';
import { canonicalKey, seriesIdOfKey, shardOf } from '../../src/model/index.js';
import { createClient, type ServiceClient } from '../../src/transport/grpc-adapter.js';
import { freePort } from '../helpers/ports.js';
import { poll } from '../helpers/wait.js';

const SHARDS = 2;
const T0 = Date.now() - 60_000;

interface Server {
  node: TidemarkNode;
  http: HttpApi;
  base: string;
  grpc: ServiceClient<typeof TidemarkService>;
  root: string;
}

async function startNode(limits: Record<string, number>): Promise<Server> {
  const root = mkdtempSync(join(tmpdir(), 'tidemark-limits-'));
  const peer = await freePort();
  const config = resolveNodeConfig({
    nodeId: 'n1',
    listen: { http: '127.0.0.1:0', grpc: '127.0.0.1:0', peer: `127.0.0.1:${peer}` },
    shards: SHARDS,
    replication: 1,
    dataDir: root,
    raft: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 },
    limits,
  });
  const node = await TidemarkNode.start(config, { checkpointIntervalMs: 0, balancer: false });
  await poll(() => node.readiness().ready, 'node ready', { timeoutMs: 30_000, everyMs: 20 });
  // The HTTP API finds the node's LimitGuard itself (settings, query slots, counter).
  const http = createHttpApi({ cluster: node, metrics: node.metrics.registry });
  const a = await http.listen('127.0.0.1', 0);
  const grpc = createClient(TidemarkService, node.endpoints.grpc);
  return { node, http, base: `http://127.0.0.1:${a.port}`, grpc, root };
}

async function stop(s: Server | undefined): Promise<void> {
  if (s === undefined) return;
  s.grpc.close();
  await s.http.close();
  await s.node.close();
  rmSync(s.root, { recursive: true, force: true });
}

// biome-ignore lint/suspicious/noExplicitAny: response bodies of several shapes, checked field by field
type Json = any;

async function post(
  url: string,
  body: string,
  contentType = 'application/json',
): Promise<{ status: number; headers: Headers; json: Json }> {
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': contentType } });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text === '' ? undefined : JSON.parse(text) };
}

async function rejections(s: Server, limit: string): Promise<number> {
  const text = await (await fetch(`${s.base}/metrics`)).text();
  const m = new RegExp(`^tidemark_limit_rejections_total\\{limit="${limit}"\\} (\\d+)`, 'm').exec(text);
  expect(m, `tidemark_limit_rejections_total{limit="${limit}"} in /metrics`).not.toBeNull();
  return Number(m![1]);
}

function dp(metric: string, tags: Record<string, string>, t: number, value = 1): Record<string, unknown> {
  return { metric, timestamp: t, value, tags };
}

async function count(s: Server, metric: string): Promise<number> {
  const series = await s.node.select({ metric, matchers: [] });
  return series.reduce((n, x) => n + x.timestamps.length, 0);
}

async function grpcError(p: Promise<unknown>): Promise<TidemarkError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof TidemarkError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

describe('limits on a node: sizes, cardinality, query concurrency', () => {
  let s: Server;
  beforeAll(async () => {
    s = await startNode({
      maxRequestBytes: 4096,
      maxSamplesPerRequest: 20,
      maxSeriesPerRequest: 8,
      maxLineBytes: 100,
      maxSeriesPerMetric: 4, // ceil(4 / 2 shards) = 2 per shard
      maxConcurrentQueriesPerClient: 1,
    });
  }, 60_000);
  afterAll(() => stop(s), 30_000);

  it('refuses a body by its Content-Length before reading it (413), and a streamed body past the limit', async () => {
    const before = await rejections(s, 'maxRequestBytes');
    // Headers only: the answer must come without the body ever being sent.
    const status = await new Promise<number>((resolve, reject) => {
      const u = new URL(`${s.base}/api/put`);
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: { 'content-length': 10_000_000 },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(status).toBe(413);
    const streamed = await fetch(`${s.base}/write`, {
      method: 'POST',
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode(`m v=1 ${i}\n`.padEnd(1000, ' ')));
          c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    const body = (await streamed.json()) as { reason: string; details: { limit: number; setting: string } };
    expect(body.reason).toBe('body_too_large');
    expect(body.details).toMatchObject({ limit: 4096, setting: 'limits.maxRequestBytes' });
    expect(await rejections(s, 'maxRequestBytes')).toBe(before + 2);
    // gRPC: the server's max receive message size is the same setting; grpc-js refuses before decoding.
    const big = await grpcError(
      s.grpc.write({
        batch: {
          series: [
            {
              series: { metric: 'big', tags: {} },
              timestamps: Array.from({ length: 600 }, (_, i) => BigInt(T0 + i)),
              values: Array(600).fill(1.5),
            },
          ],
        },
      }),
    );
    expect(big.code).toBe('RESOURCE_EXHAUSTED');
    expect(await count(s, 'big')).toBe(0);
  });

  it('refuses too many samples or series per request over HTTP and gRPC (400 / INVALID_ARGUMENT), writing nothing', async () => {
    const points = Array.from({ length: 21 }, (_, i) => dp('req.samples', { h: 'a' }, T0 + i));
    const r = await post(`${s.base}/api/put`, JSON.stringify(points));
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ reason: 'batch_too_many_samples' });
    expect(r.json.error.details).toMatchObject({ setting: 'limits.maxSamplesPerRequest', limit: 20 });
    const series = Array.from({ length: 9 }, (_, i) => dp('req.series', { h: `h${i}` }, T0));
    const r2 = await post(`${s.base}/api/put`, JSON.stringify(series));
    expect(r2.status).toBe(400);
    expect(r2.json.error).toMatchObject({ reason: 'batch_too_many_series' });
    const e = await grpcError(
      s.grpc.write({
        batch: {
          series: [
            {
              series: { metric: 'req.grpc', tags: {} },
              timestamps: Array.from({ length: 21 }, (_, i) => BigInt(T0 + i)),
              values: Array(21).fill(1),
            },
          ],
        },
      }),
    );
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.reason).toBe('batch_too_many_samples');
    expect(e.details).toMatchObject({
      setting: 'limits.maxSamplesPerRequest',
      limit: 20,
      field: 'batch.series',
    });
    expect(e.message).toContain('21 samples');
    expect(await count(s, 'req.samples')).toBe(0);
    expect(await count(s, 'req.grpc')).toBe(0);
    expect(await rejections(s, 'maxSamplesPerRequest')).toBe(2);
    expect(await rejections(s, 'maxSeriesPerRequest')).toBe(1);
  });

  it('rejects a line longer than maxLineBytes while parsing; the other lines are written', async () => {
    const long = `line.len,host=${'x'.repeat(120)} v=1 ${T0 * 1e6}`;
    const res = await fetch(`${s.base}/write?precision=ns`, {
      method: 'POST',
      body: `line.len,host=a v=1 ${T0 * 1e6}\n${long}\nline.len,host=b v=2 ${T0 * 1e6}\n`,
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { errors: { line: number; reason: string }[] };
    expect(body.errors).toEqual([expect.objectContaining({ line: 2, reason: 'line_too_long' })]);
    expect(await count(s, 'line.len_v')).toBe(2);
    expect(await rejections(s, 'maxLineBytes')).toBe(1);
  });

  it('caps the series of a metric per shard; known series keep being written', async () => {
    const tags = Array.from({ length: 8 }, (_, i) => ({ host: `web${i}` }));
    // Expected: per shard, the first 2 series (in request order) are admitted.
    const perShard = new Map<number, number>();
    const admitted = tags.map((t) => {
      const sh = shardOf(seriesIdOfKey(canonicalKey({ metric: 'card', tags: t })), SHARDS);
      const n = (perShard.get(sh) ?? 0) + 1;
      perShard.set(sh, n);
      return n <= 2;
    });
    const r = await post(`${s.base}/api/put?details`, JSON.stringify(tags.map((t) => dp('card', t, T0))));
    const nAdmitted = admitted.filter(Boolean).length;
    expect(r.json.success).toBe(nAdmitted);
    expect(r.json.failed).toBe(8 - nAdmitted);
    for (const e of r.json.errors) expect(e.error).toContain('series_per_metric_limit');
    const rejectedHosts = r.json.errors.map(
      (e: { datapoint: { tags: { host: string } } }) => e.datapoint.tags.host,
    );
    expect(rejectedHosts).toEqual(tags.filter((_, i) => !admitted[i]).map((t) => t.host));
    // The admitted series still take samples; the rejected ones still cannot (deterministic).
    const again = await post(
      `${s.base}/api/put?details`,
      JSON.stringify(tags.map((t) => dp('card', t, T0 + 1))),
    );
    expect(again.json.success).toBe(nAdmitted);
    expect(await count(s, 'card')).toBe(2 * nAdmitted);
    expect(await rejections(s, 'maxSeriesPerMetric')).toBe(2 * (8 - nAdmitted));
    // Over gRPC the same samples are rejected one by one with the reason.
    const w = await s.grpc.write({
      batch: {
        series: tags.map((t) => ({
          series: { metric: 'card', tags: t },
          timestamps: [BigInt(T0 + 2)],
          values: [1],
        })),
      },
    });
    expect(Number(w.accepted)).toBe(nAdmitted);
    expect(w.rejected.map((x) => x.reason)).toEqual(Array(8 - nAdmitted).fill('series_per_metric_limit'));
    // Another metric is not affected.
    expect(
      (await post(`${s.base}/api/put`, JSON.stringify([dp('other', { host: 'web0' }, T0)]))).status,
    ).toBe(204);
  });

  it('limits concurrent queries per client on HTTP and gRPC (429 / RESOURCE_EXHAUSTED with a retry hint)', async () => {
    await post(`${s.base}/api/put`, JSON.stringify([dp('q.m', { host: 'a' }, T0)]));
    const url = `${s.base}/api/query?start=${T0 - 1000}&end=${T0 + 1000}&m=sum:q.m`;
    expect((await fetch(url)).status).toBe(200);
    // One query of this client (127.0.0.1) in flight: hold its only slot.
    const release = s.node.limitGuard.queries.acquire('127.0.0.1');
    try {
      const res = await fetch(url);
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('1');
      const body = (await res.json()) as { error: { reason: string; details: Record<string, unknown> } };
      expect(body.error.reason).toBe('too_many_concurrent_queries');
      expect(body.error.details).toMatchObject({ setting: 'limits.maxConcurrentQueriesPerClient', limit: 1 });
      const e = await grpcError(
        (async () => {
          for await (const _ of s.grpc.query({
            metric: 'q.m',
            aggregator: 'sum',
            startMs: BigInt(T0 - 1000),
            endMs: BigInt(T0 + 1000),
          })) {
            // drain
          }
        })(),
      );
      expect(e.code).toBe('RESOURCE_EXHAUSTED');
      expect(e.reason).toBe('too_many_concurrent_queries');
      expect(e.retryAfterMs).toBe(1000);
    } finally {
      release();
    }
    expect((await fetch(url)).status).toBe(200);
    let n = 0;
    for await (const m of s.grpc.query({
      metric: 'q.m',
      aggregator: 'sum',
      startMs: BigInt(T0 - 1000),
      endMs: BigInt(T0 + 1000),
    })) {
      n += m.results.length;
    }
    expect(n).toBe(1);
    // Every slot came back (HTTP and gRPC release on success and on failure).
    expect(s.node.limitGuard.queries.clients).toBe(0);
    expect(await rejections(s, 'maxConcurrentQueriesPerClient')).toBe(2);
  });
});

describe('limits on a node: new series per minute', () => {
  let s: Server;
  beforeAll(async () => {
    s = await startNode({ maxNewSeriesPerMinute: 5 });
  }, 60_000);
  afterAll(() => stop(s), 30_000);

  it('admits new series up to the rate; known series are never limited; all-new requests get 429 with Retry-After', async () => {
    const first = Array.from({ length: 5 }, (_, i) => dp('rate', { host: `h${i}` }, T0));
    expect((await post(`${s.base}/api/put`, JSON.stringify(first))).status).toBe(204);
    // All new, nothing written: 429 + Retry-After (seconds until a token).
    const allNew = await post(
      `${s.base}/api/put`,
      JSON.stringify([dp('rate', { host: 'x1' }, T0), dp('rate', { host: 'x2' }, T0)]),
    );
    expect(allNew.status).toBe(429);
    expect(Number(allNew.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(allNew.json.error).toMatchObject({ reason: 'new_series_rate_limited' });
    expect(allNew.json.error.details).toMatchObject({ setting: 'limits.maxNewSeriesPerMinute', limit: 5 });
    // Known and new mixed: the known samples are written, the new ones reported per datapoint.
    const mixed = await post(
      `${s.base}/api/put?details`,
      JSON.stringify([
        dp('rate', { host: 'h0' }, T0 + 1),
        dp('rate', { host: 'x3' }, T0),
        dp('rate', { host: 'h1' }, T0 + 1),
      ]),
    );
    expect(mixed.status).toBe(400);
    expect(mixed.json).toMatchObject({ success: 2, failed: 1 });
    expect(mixed.json.errors[0].datapoint.tags.host).toBe('x3');
    expect(mixed.json.errors[0].error).toContain('new_series_rate_limited');
    // Line protocol and gRPC alike.
    const lp = await fetch(`${s.base}/write?precision=ms`, {
      method: 'POST',
      body: `rate,host=y1 v=1 ${T0}\n`,
    });
    expect(lp.status).toBe(429);
    expect(lp.headers.get('retry-after')).not.toBeNull();
    const e = await grpcError(
      s.grpc.write({
        batch: {
          series: [
            { series: { metric: 'rate', tags: { host: 'z1' } }, timestamps: [BigInt(T0)], values: [1] },
          ],
        },
      }),
    );
    expect(e.code).toBe('RESOURCE_EXHAUSTED');
    expect(e.reason).toBe('new_series_rate_limited');
    expect(e.retryAfterMs).toBeGreaterThanOrEqual(1000);
    // Nothing already written was lost: 5 series, 5 + 2 samples.
    expect((await s.node.select({ metric: 'rate', matchers: [] })).length).toBe(5);
    expect(await count(s, 'rate')).toBe(7);
    expect(await rejections(s, 'maxNewSeriesPerMinute')).toBe(5);
  });
});
