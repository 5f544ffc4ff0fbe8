/**
 * Who a client is for the per-client query limit on the HTTP API: the authenticated principal when auth is
 * on (two principals from one address have separate slots), else the remote address. Slots come back
 * after failing queries too. Over a MemoryCluster (the node-level test is node-limits.test.ts).
 */
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { LimitGuard } from '../../src/limits/index.js';
import { Authenticator, parseTokenFile } from '../../src/security/auth.js';
import { startServer, type TestServer } from '../api/helpers.js';

let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.close();
  srv = undefined;
});

const Q = '/api/query?start=1h-ago&m=sum:cpu';

describe('concurrent queries per client over HTTP', () => {
  it('keys on the principal when auth is on', async () => {
    const guard = new LimitGuard({
      registry: new Registry(),
      settings: { maxConcurrentQueriesPerClient: 1 },
    });
    const auth = new Authenticator({
      tokens: parseTokenFile('token-alice-0123456789 read alice\ntoken-bob-0123456789 read bob\n'),
    });
    srv = await startServer({ guard, auth });
    const get = (token: string) =>
      fetch(`${srv!.url}${Q}`, { headers: { authorization: `Bearer ${token}` } });
    const release = guard.queries.acquire('alice');
    try {
      const a = await get('token-alice-0123456789');
      expect(a.status).toBe(429);
      expect(a.headers.get('retry-after')).toBe('1');
      const body = (await a.json()) as { error: { details: Record<string, unknown> } };
      expect(body.error.details).toMatchObject({ client: 'alice', limit: 1 });
      expect((await get('token-bob-0123456789')).status).toBe(200);
    } finally {
      release();
    }
    expect((await get('token-alice-0123456789')).status).toBe(200);
    expect(guard.queries.clients).toBe(0);
  });

  it('keys on the remote address without auth; a failing query gives its slot back', async () => {
    const registry = new Registry();
    const guard = new LimitGuard({
      registry,
      settings: { maxConcurrentQueriesPerClient: 1 },
    });
    srv = await startServer({ guard });
    const bad = await fetch(`${srv.url}/api/query?start=1h-ago&m=bogus:cpu`);
    expect(bad.status).toBe(400);
    expect(guard.queries.clients).toBe(0);
    const release = guard.queries.acquire('127.0.0.1');
    try {
      expect((await fetch(`${srv.url}${Q}`)).status).toBe(429);
    } finally {
      release();
    }
    expect((await fetch(`${srv.url}${Q}`)).status).toBe(200);
    // Counted in the guard's registry (a node serves its own on /metrics).
    expect(await registry.metrics()).toMatch(
      /^tidemark_limit_rejections_total\{limit="maxConcurrentQueriesPerClient"\} 1$/m,
    );
  });
});
