import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { json, startServer, stored, type TestServer } from './helpers.js';

let srv: TestServer;
beforeEach(async () => {
  srv = await startServer();
});
afterEach(async () => {
  await srv.close();
});

function put(body: unknown, query = ''): Promise<Response> {
  return fetch(`${srv.url}/api/put${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const dp = (host: string, ts: number, value: unknown) => ({
  metric: 'sys.cpu.user',
  timestamp: ts,
  value,
  tags: { host },
});

describe('POST /api/put', () => {
  test('one object → 204, stored (seconds → ms)', async () => {
    const res = await put(dp('web01', 1346846400, 18));
    expect(res.status).toBe(204);
    expect(await res.text()).toBe('');
    expect(await stored(srv.cluster, 'sys.cpu.user')).toEqual({ 'host=web01': [[1346846400000, 18]] });
  });

  test('an array → 204, every point stored (ms timestamps too)', async () => {
    const res = await put([dp('a', 1346846400, 1), dp('b', 1346846400123, '2.5'), dp('a', 1346846401, 3)]);
    expect(res.status).toBe(204);
    expect(await stored(srv.cluster, 'sys.cpu.user')).toEqual({
      'host=a': [
        [1346846400000, 1],
        [1346846401000, 3],
      ],
      'host=b': [[1346846400123, 2.5]],
    });
  });

  test('summary → 200 {failed, success}', async () => {
    const res = await put([dp('a', 1346846400, 1), dp('b', 1346846400, 2)], '?summary');
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ failed: 0, success: 2 });
  });

  test('details → 200 {errors: [], failed, success}', async () => {
    const res = await put([dp('a', 1346846400, 1)], '?details');
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ errors: [], failed: 0, success: 1 });
  });

  test('bad points are listed with details; the good ones are stored', async () => {
    const bad1 = { metric: '', timestamp: 1346846400, value: 1, tags: { host: 'x' } };
    const bad2 = dp('y', 1346846400, 'abc');
    const res = await put([dp('a', 1346846400, 1), bad1, bad2, dp('b', 1346846400, 2)], '?details');
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.failed).toBe(2);
    expect(body.success).toBe(2);
    expect(body.errors).toEqual([
      { datapoint: bad1, error: 'Metric name was empty' },
      { datapoint: bad2, error: expect.stringContaining('Unable to parse value') },
    ]);
    expect(Object.keys(await stored(srv.cluster, 'sys.cpu.user')).sort()).toEqual(['host=a', 'host=b']);
  });

  test('bad points without flags → 400 with the OpenTSDB error object', async () => {
    const res = await put([dp('a', 1346846400, 1), { metric: 'm' }]);
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.error.code).toBe(400);
    expect(body.error.message).toBe('One or more data points had errors');
  });

  test('bad points with summary → 400 {failed, success}', async () => {
    const res = await put([dp('a', 1346846400, 1), { metric: 'm' }], '?summary');
    expect(res.status).toBe(400);
    expect(await json(res)).toEqual({ failed: 1, success: 1 });
  });

  test('bad JSON → 400 OpenTSDB error body, nothing written', async () => {
    const res = await put('[{"metric": "a", ');
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.error.code).toBe(400);
    expect(body.error.reason).toBe('json_invalid');
    expect(typeof body.error.message).toBe('string');
    expect(srv.cluster.writesApplied).toBe(0);
  });

  test('whole-request rejections write nothing (empty array, wrong shape, too many points)', async () => {
    const small = await startServer({ limits: { maxPoints: 3 } });
    try {
      for (const body of ['[]', '42', '"x"', 'null']) {
        const res = await fetch(`${small.url}/api/put`, { method: 'POST', body });
        expect(res.status).toBe(400);
        expect((await json(res)).error.code).toBe(400);
      }
      const four = [1, 2, 3, 4].map((i) => dp('a', 1346846400 + i, i));
      const res = await fetch(`${small.url}/api/put`, { method: 'POST', body: JSON.stringify(four) });
      expect(res.status).toBe(400);
      const body = await json(res);
      expect(body.error.reason).toBe('too_many_datapoints');
      expect(small.cluster.writesApplied).toBe(0);
      expect(small.cluster.sampleCount()).toBe(0);
    } finally {
      await small.close();
    }
  });

  test('samples the store refuses (too old) are reported as failed datapoints', async () => {
    const s = await startServer({ clusterOptions: { store: { oooWindowMs: 1000 } } });
    try {
      const first = await fetch(`${s.url}/api/put`, {
        method: 'POST',
        body: JSON.stringify(dp('a', 1346846400, 1)),
      });
      expect(first.status).toBe(204);
      const old = dp('a', 1346840000, 2);
      const res = await fetch(`${s.url}/api/put?details`, {
        method: 'POST',
        body: JSON.stringify([old, dp('a', 1346846401, 3)]),
      });
      expect(res.status).toBe(400);
      const body = await json(res);
      expect(body).toEqual({
        errors: [{ datapoint: old, error: 'Rejected by the store: too_old' }],
        failed: 1,
        success: 1,
      });
    } finally {
      await s.close();
    }
  });
});
