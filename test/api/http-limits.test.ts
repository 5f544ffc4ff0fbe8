import { request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, test } from 'vitest';
import { resolveHttpLimits } from '../../src/api/http.js';
import { json, parseMetrics, startServer, type TestServer } from './helpers.js';

const MiB = 1024 * 1024;
let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

/** An endless stream of valid lines; counts what was pulled from it. */
function endless(): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  const chunk = new TextEncoder().encode('cpu,host=a v=1 1\n'.repeat(4096));
  let pulled = 0;
  return {
    body: new ReadableStream<Uint8Array>({
      pull(c) {
        pulled += chunk.length;
        c.enqueue(chunk);
      },
    }),
    pulled: () => pulled,
  };
}

describe('body limits', () => {
  test.each(['/write', '/api/put'])(
    '%s: a streaming body over the limit → 413 before it is read to the end',
    async (path) => {
      srv = await startServer({ limits: { maxBodyBytes: MiB } });
      // The body never ends: a server that buffered it all would never answer.
      const { body, pulled } = endless();
      const res = await fetch(`${srv.url}${path}`, { method: 'POST', body, duplex: 'half' } as RequestInit);
      expect(res.status).toBe(413);
      const out = await json(res);
      const reason = path === '/write' ? out.reason : out.error.reason;
      expect(reason).toBe('body_too_large');
      expect(pulled()).toBeGreaterThan(MiB);
      expect(srv.cluster.writesApplied).toBe(0);
      expect(srv.cluster.sampleCount()).toBe(0);
      const m = parseMetrics(await (await fetch(`${srv.url}/metrics`)).text());
      expect(m.get(`tidemark_http_body_limit_rejections_total{endpoint=${path},kind=raw}`)).toBe(1);
    },
  );

  test('a declared Content-Length over the limit → 413 without reading (node:http client)', async () => {
    srv = await startServer({ limits: { maxBodyBytes: MiB } });
    const u = new URL(`${srv.url}/write`);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: { 'content-length': 10 * MiB },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on('error', reject);
      // Headers only: the body is never sent.
      req.flushHeaders();
    });
    expect(status).toBe(413);
    expect(srv.cluster.writesApplied).toBe(0);
  });

  test('the server stays usable after 413s', async () => {
    srv = await startServer({ limits: { maxBodyBytes: 64 * 1024 } });
    for (let i = 0; i < 5; i++) {
      const { body } = endless();
      const res = await fetch(`${srv.url}/write`, { method: 'POST', body, duplex: 'half' } as RequestInit);
      expect(res.status).toBe(413);
      await res.arrayBuffer();
    }
    expect((await fetch(`${srv.url}/write`, { method: 'POST', body: 'm v=1 1' })).status).toBe(204);
  });

  test('a gzip bomb → 413 (inflated limit), nothing written', async () => {
    srv = await startServer({ limits: { maxBodyBytes: MiB } });
    const line = new TextEncoder().encode('cpu,host=a v=1 1\n');
    const big = Buffer.alloc(64 * MiB);
    for (let o = 0; o + line.length <= big.length; o += line.length) big.set(line, o);
    const bomb = gzipSync(big, { level: 9 });
    expect(bomb.length).toBeLessThan(MiB);
    const res = await fetch(`${srv.url}/write`, {
      method: 'POST',
      headers: { 'content-encoding': 'gzip' },
      body: bomb,
    });
    expect(res.status).toBe(413);
    expect((await json(res)).reason).toBe('body_too_large');
    expect(srv.cluster.writesApplied).toBe(0);
    const m = parseMetrics(await (await fetch(`${srv.url}/metrics`)).text());
    expect(m.get('tidemark_http_body_limit_rejections_total{endpoint=/write,kind=inflated}')).toBe(1);
  });

  test('a gzip body just under the inflated limit is accepted', async () => {
    srv = await startServer({ limits: { maxBodyBytes: 1000, maxDecodedBodyBytes: 64 * 1024 } });
    const text = 'm,host=a v=1 1\n'.repeat(4000);
    expect(text.length).toBeLessThan(64 * 1024);
    const res = await fetch(`${srv.url}/write`, {
      method: 'POST',
      headers: { 'content-encoding': 'gzip' },
      body: gzipSync(text),
    });
    expect(res.status).toBe(204);
  });
});

describe('concurrency and deadlines', () => {
  test('more writes in flight than maxConcurrentWrites → 429 + Retry-After', async () => {
    srv = await startServer({ limits: { maxConcurrentWrites: 2, concurrencyRetryAfterMs: 3000 } });
    let open = (): void => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    srv.cluster.inject({ gate, times: 2 });
    const slow = [1, 2].map((i) => fetch(`${srv!.url}/write`, { method: 'POST', body: `m v=${i} ${i}` }));
    while ((await srv.api.metrics.inflight.get()).values[0]?.value !== 2) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const res = await fetch(`${srv.url}/api/put`, {
      method: 'POST',
      body: JSON.stringify({ metric: 'x', timestamp: 1, value: 1 }),
    });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('3');
    const body = await json(res);
    expect(body.error.code).toBe(429);
    expect(body.error.reason).toBe('too_many_requests');
    // Health endpoints are not limited.
    expect((await fetch(`${srv.url}/healthz`)).status).toBe(200);
    open();
    expect((await Promise.all(slow)).map((r) => r.status)).toEqual([204, 204]);
    expect((await fetch(`${srv.url}/write`, { method: 'POST', body: 'm v=3 3' })).status).toBe(204);
  });

  test('a write slower than the request deadline → 504 DEADLINE_EXCEEDED', async () => {
    srv = await startServer({ limits: { requestTimeoutMs: 200 } });
    srv.cluster.inject({ delayMs: 5000, times: 1 });
    const res = await fetch(`${srv.url}/write`, { method: 'POST', body: 'm v=1 1' });
    expect(res.status).toBe(504);
    expect((await json(res)).code).toBe('DEADLINE_EXCEEDED');
  });

  test('a body that does not arrive before the deadline → 408', async () => {
    srv = await startServer({ limits: { requestTimeoutMs: 300 } });
    let stop = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        await new Promise((r) => setTimeout(r, 50));
        if (stop) c.close();
        else c.enqueue(new TextEncoder().encode('m v=1 1\n'));
      },
    });
    const res = await fetch(`${srv.url}/write`, { method: 'POST', body, duplex: 'half' } as RequestInit);
    stop = true;
    expect(res.status).toBe(408);
    expect((await json(res)).reason).toBe('body_timeout');
    expect(srv.cluster.writesApplied).toBe(0);
  });
});

describe('limits configuration', () => {
  test('defaults, overrides, and the decoded limit following the raw one', () => {
    const d = resolveHttpLimits();
    expect(d.maxBodyBytes).toBe(16 * MiB);
    expect(d.maxDecodedBodyBytes).toBe(16 * MiB);
    const o = resolveHttpLimits({ maxBodyBytes: 1000 });
    expect(o.maxDecodedBodyBytes).toBe(1000);
    expect(() => resolveHttpLimits({ maxBodyBytes: 0 })).toThrow(/positive integer/);
    expect(() => resolveHttpLimits({ nope: 1 } as never)).toThrow(/unknown/);
  });
});

describe('lifecycle', () => {
  test('a client that disconnects mid-body: nothing written, the slot is freed, the server keeps serving', async () => {
    srv = await startServer({ limits: { maxConcurrentWrites: 1 } });
    const u = new URL(`${srv.url}/write`);
    const s = srv;
    await new Promise<void>((resolve) => {
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST' });
      req.on('error', () => resolve());
      req.write('m v=1 1\nm v=2 ');
      // Disconnect once the server is reading the body (a fixed delay raced a loaded machine: a request
      // dropped before the server saw it is never counted as aborted).
      const poll = async () => {
        while ((await s.api.metrics.inflight.get()).values[0]?.value !== 1)
          await new Promise((r) => setTimeout(r, 5));
        req.destroy();
        resolve();
      };
      void poll();
    });
    const aborted = async () =>
      parseMetrics(await (await fetch(`${s.url}/metrics`)).text()).get(
        'tidemark_http_requests_total{endpoint=/write,method=POST,status=aborted}',
      );
    while ((await aborted()) !== 1) await new Promise((r) => setTimeout(r, 10));
    expect(s.cluster.writesApplied).toBe(0);
    expect((await fetch(`${s.url}/write`, { method: 'POST', body: 'm v=3 3' })).status).toBe(204);
  });

  test('close() waits for a write in flight, which completes', async () => {
    srv = await startServer();
    let open = (): void => {};
    srv.cluster.inject({
      gate: new Promise<void>((resolve) => {
        open = resolve;
      }),
      times: 1,
    });
    const s = srv;
    srv = undefined;
    const inflight = fetch(`${s.url}/write`, { method: 'POST', body: 'm v=1 1' });
    while ((await s.api.metrics.inflight.get()).values[0]?.value !== 1)
      await new Promise((r) => setTimeout(r, 5));
    const closing = s.close();
    setTimeout(open, 50);
    expect((await inflight).status).toBe(204);
    await closing;
    await expect(fetch(`${s.url}/healthz`)).rejects.toThrow();
  });
});
