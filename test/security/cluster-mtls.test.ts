/**
 * Three real node processes (`tidemark start`) with mutual TLS on every port and bearer-token auth
 * (a token file and HS256 JWTs), certificates from `tidemark certs`:
 *  - the SDK writes with a write token and queries with a read JWT over TLS; HTTPS serves the same;
 *  - no token → UNAUTHENTICATED / 401, a read token writing → PERMISSION_DENIED / 403, and nothing is stored;
 *  - a node restarted with a certificate from another CA cannot rejoin: the others refuse its Raft traffic;
 *  - without TLS and without --insecure, a node with peers refuses to start;
 *  - no token appears in any node's output.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkClient } from '../../src/client/index.js';
import { signJwt } from '../../src/security/auth.js';
import type { NodePorts } from '../cluster/fixtures/node-cluster.js';
import { ProcessCluster } from '../cluster/fixtures/node-process.js';
import { poll } from '../helpers/wait.js';
import { filesOf, makeTestCerts } from './fixtures.js';

const run = promisify(execFile);
const SHARDS = 4;
const IDS = ['a', 'b', 'c'];
const WRITE_TOKEN = 'write-token-0123456789abcdef';
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const READ_TOKEN = 'read-token-0123456789abcdef';
const SECRET = 'hs256-secret-for-tests-0123456789abcdef';
const READ_JWT = signJwt(
  { sub: 'reader', role: 'read', exp: Math.floor(Date.now() / 1000) + 3600 },
  {
    hs256: Buffer.from(SECRET),
  },
);
const T0 = 1_700_000_000_000;

describe('a cluster with mTLS and auth', () => {
  let certs: ReturnType<typeof makeTestCerts>;
  const clients: TidemarkClient[] = [];

  // Real processes as in the other cluster tests, but with per-node certificates and auth, and no --insecure.
  let cluster: ProcessCluster;
  let ports: NodePorts[];
  const start = (id: string, certDir: string) => {
    const f = filesOf(certDir, id);
    cluster.start(id, [
      `--peer-clients=${ports.map((x) => `${x.id}=127.0.0.1:${x.grpc}`).join(',')}`,
      `--tls-ca=${f.ca}`,
      `--tls-cert=${f.cert}`,
      `--tls-key=${f.key}`,
      `--auth-token-file=${join(certs.root, 'tokens')}`,
      `--auth-jwt-hs256-secret-file=${join(certs.root, 'secret')}`,
    ]);
  };
  const kill = (id: string) => cluster.kill9(id);
  const connect = async (id: string, token: string | undefined, caDir = certs.main) => {
    const c = await TidemarkClient.connect({
      endpoints: [`127.0.0.1:${ports.find((x) => x.id === id)!.grpc}`],
      tls: { ca: readFileSync(join(caDir, 'ca.crt')) },
      token,
      deadlineMs: 5000,
      shardMapRefreshMs: 0,
    });
    clients.push(c);
    return c;
  };
  const https = (
    id: string,
    method: string,
    path: string,
    token?: string,
    body?: string,
  ): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: ports.find((x) => x.id === id)!.http,
          method,
          path,
          ca: readFileSync(join(certs.main, 'ca.crt')),
          headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
        },
        (res) => {
          let data = '';
          res.on('data', (d) => {
            data += d;
          });
          res.on('end', () => resolve({ status: res.statusCode!, body: data }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const samples = async (c: TidemarkClient, metric: string) => {
    let n = 0;
    for await (const s of c.query({ metric, start: T0 - 1, end: T0 + 1_000_000 })) n += s.timestamps.length;
    return n;
  };
  const ready = async (id: string) => {
    const s = await (await connect(id, READ_TOKEN)).status();
    return s.replicas.length === SHARDS && s.replicas.every((r) => r.leader !== '' && r.applied >= r.commit);
  };

  beforeAll(async () => {
    certs = makeTestCerts();
    writeFileSync(
      join(certs.root, 'tokens'),
      `${WRITE_TOKEN} write ingest\n${READ_TOKEN} read grafana\n${ADMIN_TOKEN} admin ops\n`,
    );
    writeFileSync(join(certs.root, 'secret'), SECRET);
    cluster = new ProcessCluster(IDS, [`--shards=${SHARDS}`], {
      insecure: false,
      keepOutputChunks: Infinity,
    });
    await cluster.init();
    ports = cluster.ports;
    for (const id of IDS) start(id, certs.main);
    for (const id of IDS) {
      await poll(() => ready(id), `node ${id} ready (${cluster.output.get(id)?.join('')})`, {
        timeoutMs: 90_000,
        everyMs: 300,
        retryErrors: true,
      });
    }
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await cluster.close();
    rmSync(certs.root, { recursive: true, force: true });
  });

  it('writes with a write token and reads with a read JWT, over TLS, across nodes', async () => {
    const w = await connect('a', WRITE_TOKEN);
    const points = Array.from({ length: 40 }, (_, i) => ({
      metric: 'sec.ok',
      tags: { host: `h${i % 8}` },
      timestamp: T0 + i,
      value: i,
    }));
    expect((await w.write(points)).accepted).toBe(40);
    // Served by node b, reading shards whose leaders are elsewhere: peer reads go over mTLS too.
    expect(await samples(await connect('b', READ_JWT), 'sec.ok')).toBe(40);
  }, 60_000);

  it('refuses a missing token, an unknown one and a wrong role, and stores nothing', async () => {
    const write = (c: TidemarkClient) =>
      c.write([{ metric: 'sec.denied', tags: { host: 'x' }, timestamp: T0, value: 1 }], { deadlineMs: 5000 });
    await expect(write(await connect('a', undefined))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    await expect(write(await connect('a', 'not-a-token-0123456789'))).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    await expect(write(await connect('a', READ_TOKEN))).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(write(await connect('c', READ_JWT))).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect((await connect('a', WRITE_TOKEN)).transferLeader(0, 'b')).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    await expect(samples(await connect('a', undefined), 'sec.ok')).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    expect(await samples(await connect('a', ADMIN_TOKEN), 'sec.denied')).toBe(0);
  }, 60_000);

  it('serves HTTPS with the same tokens: 401, 403, then a write and a read', async () => {
    const body = JSON.stringify({ metric: 'sec.http', timestamp: T0, value: 5, tags: { host: 'h' } });
    expect((await https('b', 'POST', '/api/put', undefined, body)).status).toBe(401);
    expect((await https('b', 'POST', '/api/put', READ_TOKEN, body)).status).toBe(403);
    const q = `/api/query?start=${T0 - 1}&end=${T0 + 10}&m=sum:sec.http`;
    expect(JSON.parse((await https('c', 'GET', q, READ_JWT)).body)).toEqual([]);
    expect((await https('b', 'POST', '/api/put', WRITE_TOKEN, body)).status).toBe(204);
    const after = JSON.parse((await https('c', 'GET', q, READ_JWT)).body) as {
      dps: Record<string, number>;
    }[];
    expect(after[0]!.dps).toEqual({ [String(T0 / 1000)]: 5 });
    expect((await https('a', 'GET', '/healthz')).status).toBe(200);
  }, 60_000);

  it('a node with a certificate from another CA cannot rejoin: its Raft traffic is refused', async () => {
    await kill('c');
    start('c', certs.other);
    // c's client port now presents the other CA's certificate.
    const cOther = await connect('c', ADMIN_TOKEN, certs.other);
    await poll(() => cOther.status(), `c serving again (${cluster.output.get('c')?.join('')})`, {
      timeoutMs: 60_000,
      everyMs: 300,
      retryErrors: true,
    });
    // Settled: what c applied from its own log before it restarted no longer moves.
    const key = (st: { replicas: { shard: number; applied: number }[] }) =>
      st.replicas.map((r) => `${r.shard}:${r.applied}`).join(',');
    let prev = '';
    const before = await poll(
      async () => {
        const st = await cOther.status();
        const k = key(st);
        const same = k === prev;
        prev = k;
        return same && st;
      },
      'c settled',
      { timeoutMs: 30_000, everyMs: 500 },
    );
    expect(before.nodeId).toBe('c');
    const applied = new Map(before.replicas.map((r) => [r.shard, r.applied]));
    // The cluster (a and b, a majority) keeps accepting writes...
    const w = await connect('a', WRITE_TOKEN);
    for (let round = 0; round < 5; round++) {
      const points = Array.from({ length: 16 }, (_, i) => ({
        metric: 'sec.after',
        tags: { host: `h${i}` },
        timestamp: T0 + round * 100 + i,
        value: i,
      }));
      expect((await w.write(points, { deadlineMs: 20_000 })).accepted).toBe(16);
    }
    const a = await connect('a', READ_TOKEN);
    const aStatus = await a.status('a');
    // ... and commits them on every shard a replicates, while c applies nothing new and follows no leader.
    await new Promise((r) => setTimeout(r, 2000));
    const after = await cOther.status();
    for (const r of after.replicas) {
      expect(r.applied, `shard ${r.shard}`).toBe(applied.get(r.shard));
      expect(r.role === 'leader' && r.leader === 'c').toBe(false);
    }
    expect(aStatus.replicas.some((r) => r.applied > (applied.get(r.shard) ?? 0))).toBe(true);
    expect(await samples(await connect('b', READ_TOKEN), 'sec.after')).toBe(80);
  }, 120_000);

  it('never writes a token to the logs', () => {
    const all = [...cluster.output.values()].flat().join('');
    expect(all).toContain('tidemark node started');
    for (const t of [WRITE_TOKEN, READ_TOKEN, ADMIN_TOKEN, READ_JWT, SECRET]) expect(all).not.toContain(t);
  });

  it('a node with peers and no TLS refuses to start unless --insecure', async () => {
    const p = ports[0]!;
    const err = await run(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/entry.ts',
        'start',
        '--node-id=a',
        `--peers=a=127.0.0.1:${p.peer},b=127.0.0.1:1`,
        `--data-dir=${join(certs.root, 'data', 'refused')}`,
      ],
      { cwd: process.cwd() },
    ).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toMatch(/no TLS.*--insecure/);
  }, 60_000);
});
