/**
 * Authorization in front of the client APIs: the role table covers every RPC, the adapter's authorize hook
 * refuses before a handler runs (over real gRPC, with the SDK's bearer interceptor), and the HTTP API
 * answers 401 / 403 and stores nothing.
 */
import { request } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApi, type HttpApi } from '../../src/api/http.js';
import { MemoryCluster } from '../../src/api/memory-cluster.js';
import { bearerInterceptor } from '../../src/client/credentials.js';
import { TidemarkService } from '../../src/gen/tidemark/v1/client_pb.js';
import { Authenticator, parseTokenFile } from '../../src/security/auth.js';
import { GRPC_METHOD_ROLES, grpcAuthorizer, HTTP_ROUTE_ROLES } from '../../src/security/roles.js';
import { bindServer, createClient, createServer, shutdownServer } from '../../src/transport/grpc-adapter.js';
import { addStubService } from './fixtures.js';

const TOKENS = {
  read: 'read-token-0123456789',
  write: 'write-token-0123456789',
  admin: 'admin-token-0123456789',
};
const auth = new Authenticator({
  tokens: parseTokenFile(
    Object.entries(TOKENS)
      .map(([role, t]) => `${t} ${role}`)
      .join('\n'),
  ),
});

describe('role table', () => {
  it('names a role for every TidemarkService method', () => {
    for (const m of TidemarkService.methods) expect(GRPC_METHOD_ROLES[m.localName], m.name).toBeDefined();
    expect(GRPC_METHOD_ROLES.transferLeader).toBe('admin');
    expect(GRPC_METHOD_ROLES.write).toBe('write');
    expect(GRPC_METHOD_ROLES.query).toBe('read');
  });
  it('leaves health, readiness and metrics open', () => {
    for (const p of ['/healthz', '/readyz', '/metrics', '/ping']) expect(HTTP_ROUTE_ROLES[p]).toBeUndefined();
    expect(HTTP_ROUTE_ROLES['/api/put']).toBe('write');
  });
});

describe('gRPC authorize hook', () => {
  let server: grpc.Server;
  let port: number;
  let calls: Map<string, number>;
  const clients: { close(): void }[] = [];
  beforeAll(async () => {
    server = createServer();
    calls = addStubService(server, { authorize: grpcAuthorizer(auth) });
    port = await bindServer(server, '127.0.0.1:0');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await shutdownServer(server);
  });
  const client = (token?: string) => {
    const c = createClient(TidemarkService, `127.0.0.1:${port}`, {
      interceptors: token === undefined ? undefined : [bearerInterceptor(token)],
    });
    clients.push(c);
    return c;
  };

  it('no token → UNAUTHENTICATED; the handler never runs', async () => {
    await expect(client().write({}, { timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
      reason: 'token_missing',
    });
    await expect(client('wrong-token-0123456789').shardMap({}, { timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    const q = client().query({}, { timeoutMs: 5000 });
    await expect(
      (async () => {
        for await (const _ of q) {
        }
      })(),
    ).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(calls.get('write')).toBeUndefined();
    expect(calls.get('query')).toBeUndefined();
  });

  it('wrong role → PERMISSION_DENIED; the handler never runs', async () => {
    await expect(client(TOKENS.read).write({}, { timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    await expect(client(TOKENS.write).transferLeader({}, { timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    expect(calls.get('write')).toBeUndefined();
    expect(calls.get('transferLeader')).toBeUndefined();
  });

  it('the right role (or a higher one) gets through', async () => {
    expect((await client(TOKENS.write).write({}, { timeoutMs: 5000 })).accepted).toBe(1n);
    expect((await client(TOKENS.read).shardMap({}, { timeoutMs: 5000 })).shardCount).toBe(7);
    await client(TOKENS.admin).transferLeader({}, { timeoutMs: 5000 });
    expect(calls.get('write')).toBe(1);
    expect(calls.get('transferLeader')).toBe(1);
  });
});

describe('HTTP auth', () => {
  let api: HttpApi;
  let port: number;
  const cluster = new MemoryCluster();
  beforeAll(async () => {
    api = createHttpApi({ cluster, auth });
    port = (await api.listen('127.0.0.1', 0)).port;
  });
  afterAll(() => api.close(100));

  const call = (
    method: string,
    path: string,
    token?: string,
    body?: string,
  ): Promise<{ status: number; body: string; headers: Record<string, unknown> }> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method,
          path,
          headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
        },
        (res) => {
          let data = '';
          res.on('data', (d) => {
            data += d;
          });
          res.on('end', () => resolve({ status: res.statusCode!, body: data, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  const put = (token?: string) =>
    call(
      'POST',
      '/api/put',
      token,
      JSON.stringify({ metric: 'm', timestamp: 1_700_000_000_000, value: 1, tags: { h: 'a' } }),
    );
  const count = async () => {
    const r = await call('GET', '/api/query?start=0&m=sum:m', TOKENS.read);
    expect(r.status).toBe(200);
    return (JSON.parse(r.body) as unknown[]).length;
  };

  it('401 without a token, 403 with a read token, and nothing is stored', async () => {
    const none = await put();
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(JSON.parse(none.body).error.code).toBe('UNAUTHENTICATED');
    const ro = await put(TOKENS.read);
    expect(ro.status).toBe(403);
    expect(JSON.parse(ro.body).error.code).toBe('PERMISSION_DENIED');
    expect(await count()).toBe(0);
    expect((await call('GET', '/api/query?start=0&m=sum:m')).status).toBe(401);
  });

  it('a write token writes; health and metrics stay open', async () => {
    expect((await put(TOKENS.write)).status).toBe(204);
    expect(await count()).toBe(1);
    expect((await call('GET', '/healthz')).status).toBe(200);
    expect((await call('GET', '/metrics')).status).toBe(200);
  });
});
