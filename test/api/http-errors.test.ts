import { Gauge, Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { TidemarkError } from '../../src/errors/index.js';
import { json, parseMetrics, startServer, type TestServer } from './helpers.js';

let srv: TestServer;
beforeEach(async () => {
  srv = await startServer();
});
afterEach(async () => {
  await srv.close();
});

const line = (body = 'm,host=a v=1 1') => fetch(`${srv.url}/write`, { method: 'POST', body });
const put = () =>
  fetch(`${srv.url}/api/put`, {
    method: 'POST',
    body: JSON.stringify({ metric: 'm', timestamp: 1, value: 1 }),
  });

describe('cluster errors surface their code', () => {
  test('RESOURCE_EXHAUSTED → 429 + Retry-After (both endpoints), nothing written', async () => {
    srv.cluster.inject({ failure: { kind: 'resource_exhausted', retryAfterMs: 2500 } });
    const w = await line();
    expect(w.status).toBe(429);
    expect(w.headers.get('retry-after')).toBe('3');
    const wb = await json(w);
    expect(wb.code).toBe('RESOURCE_EXHAUSTED');
    expect(wb.details.retryAfterMs).toBe(2500);
    const p = await put();
    expect(p.status).toBe(429);
    expect(p.headers.get('retry-after')).toBe('3');
    expect((await json(p)).error.code).toBe(429);
    expect(srv.cluster.sampleCount()).toBe(0);
  });

  test('NOT_LEADER → 421 with the leader hint in the body', async () => {
    srv.cluster.inject({ failure: { kind: 'not_leader', leaderHint: 'node-2' } });
    const w = await line();
    expect(w.status).toBe(421);
    const wb = await json(w);
    expect(wb.code).toBe('NOT_LEADER');
    expect(wb.details.leaderHint).toBe('node-2');
    const p = await put();
    expect(p.status).toBe(421);
    expect((await json(p)).error.details.leaderHint).toBe('node-2');
  });

  test('UNAVAILABLE → 503 (+ Retry-After when hinted)', async () => {
    srv.cluster.inject({ failure: { kind: 'unavailable', retryAfterMs: 1000 }, times: 1 });
    const w = await line();
    expect(w.status).toBe(503);
    expect(w.headers.get('retry-after')).toBe('1');
    // The injection was for one call only.
    expect((await line()).status).toBe(204);
  });

  test('a shard without a leader: the write touching it fails whole', async () => {
    const shard = srv.cluster.shardOfSeries({ metric: 'm_v', tags: { host: 'a' } });
    srv.cluster.setShardAvailable(shard, false);
    const res = await line();
    expect(res.status).toBe(503);
    expect(srv.cluster.sampleCount()).toBe(0);
  });

  test('a non-Tidemark error → 500 INTERNAL, no details leaked; the server keeps serving', async () => {
    srv.cluster.inject({ failure: { kind: 'error', error: new Error('secret internals') }, times: 1 });
    const res = await line();
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain('secret');
    expect(JSON.parse(text).code).toBe('INTERNAL');
    expect((await line()).status).toBe(204);
  });

  test('a TidemarkError of another code maps through toHttpStatus', async () => {
    srv.cluster.inject({
      failure: { kind: 'error', error: new TidemarkError('FAILED_PRECONDITION', 'x', 'precondition') },
    });
    expect((await line()).status).toBe(409);
  });
});

describe('routing', () => {
  test('unknown path → 404 with a JSON error', async () => {
    const res = await fetch(`${srv.url}/nope`);
    expect(res.status).toBe(404);
    expect((await json(res)).error).toMatchObject({ code: 'NOT_FOUND', reason: 'route_not_found' });
  });

  test('wrong method → 405 with Allow', async () => {
    const g = await fetch(`${srv.url}/write`);
    expect(g.status).toBe(405);
    expect(g.headers.get('allow')).toBe('POST');
    const p = await fetch(`${srv.url}/healthz`, { method: 'POST', body: 'x' });
    expect(p.status).toBe(405);
    expect(p.headers.get('allow')).toBe('GET, HEAD');
    expect((await json(p)).error.reason).toBe('method_not_allowed');
  });
});

describe('health', () => {
  test('/healthz → 200', async () => {
    const res = await fetch(`${srv.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ status: 'ok' });
  });

  test('/readyz → 200 when ready, 503 with reasons when not', async () => {
    const ok = await fetch(`${srv.url}/readyz`);
    expect(ok.status).toBe(200);
    expect(await json(ok)).toEqual({ ready: true, reasons: [] });
    srv.cluster.setShardAvailable(2, false);
    const no = await fetch(`${srv.url}/readyz`);
    expect(no.status).toBe(503);
    expect(await json(no)).toEqual({ ready: false, reasons: ['shard 2: no leader'] });
    srv.cluster.setShardAvailable(2, true);
    expect((await fetch(`${srv.url}/readyz`)).status).toBe(200);
  });
});

describe('/metrics', () => {
  test('counts requests, samples and rejections; serves an external registry', async () => {
    const external = new Registry();
    const g = new Gauge({
      name: 'tidemark_raft_term',
      help: 'term',
      labelNames: ['shard'],
      registers: [external],
    });
    g.set({ shard: '0' }, 7);
    const s = await startServer({ metrics: external });
    try {
      const w = (body: string) => fetch(`${s.url}/write?precision=s`, { method: 'POST', body });
      expect((await w('cpu,host=a user=1,sys=2 1\ncpu,host=b user=3 2')).status).toBe(204);
      expect((await w('cpu,host=a user=1 1\nbad\ncpu,host=a user=x 5')).status).toBe(400);
      const p = await fetch(`${s.url}/api/put?details`, {
        method: 'POST',
        body: JSON.stringify([{ metric: 'm', timestamp: 1, value: 1 }, { metric: 'm' }]),
      });
      expect(p.status).toBe(400);
      expect((await fetch(`${s.url}/nope`)).status).toBe(404);
      const res = await fetch(`${s.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const m = parseMetrics(await res.text());
      expect(m.get('tidemark_http_requests_total{endpoint=/write,method=POST,status=204}')).toBe(1);
      expect(m.get('tidemark_http_requests_total{endpoint=/write,method=POST,status=400}')).toBe(1);
      expect(m.get('tidemark_http_requests_total{endpoint=/api/put,method=POST,status=400}')).toBe(1);
      expect(m.get('tidemark_http_requests_total{endpoint=other,method=GET,status=404}')).toBe(1);
      expect(m.get('tidemark_http_request_duration_seconds_count{endpoint=/write,status=204}')).toBe(1);
      expect(m.get('tidemark_ingest_samples_total{protocol=influx}')).toBe(4);
      expect(m.get('tidemark_ingest_samples_total{protocol=opentsdb}')).toBe(1);
      expect(m.get('tidemark_ingest_rejected_total{protocol=influx,reason=missing_fields}')).toBe(1);
      expect(m.get('tidemark_ingest_rejected_total{protocol=influx,reason=field_value_invalid}')).toBe(1);
      expect(m.get('tidemark_ingest_rejected_total{protocol=opentsdb,reason=invalid_datapoint}')).toBe(1);
      expect(m.get('tidemark_raft_term{shard=0}')).toBe(7);
    } finally {
      await s.close();
    }
  });
});
