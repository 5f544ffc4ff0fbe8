/**
 * /api/search/lookup and lease reads against real nodes: a three-node R = 3 cluster whose shard leaders
 * confirm reads by lease (`raft.readMode: 'lease'`). Lookups through HTTP return OpenTSDB's shape with
 * exact paging and totals; every linearizable read (query, lookup) through any node sees every write
 * acknowledged before it, while leadership moves.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApi, type HttpApi } from '../../src/api/http.js';
import { resolveNodeConfig } from '../../src/cluster/config.js';
import { TidemarkNode } from '../../src/cluster/node.js';
import { isTidemarkError } from '../../src/errors/index.js';
import { seriesId, seriesIdHex } from '../../src/model/index.js';
import { allocatePorts, peersFlag, waitFor } from '../cluster/fixtures/node-cluster.js';
import { batchOf } from './helpers.js';
import type { RefSeries } from './reference.js';

const IDS = ['a', 'b', 'c'];
const T0 = Date.UTC(2026, 0, 1);

function series(metric: string, tags: Record<string, string>, ts: number[], vals: number[]): RefSeries {
  return { series: { metric, tags }, ts, vals };
}

describe('lookup and lease reads on a 3-node cluster', () => {
  const root = mkdtempSync(join(tmpdir(), 'tidemark-lookup-'));
  const nodes: TidemarkNode[] = [];
  const data: RefSeries[] = [];
  let http: HttpApi;
  let base: string;

  beforeAll(async () => {
    const ports = await allocatePorts(IDS);
    const configs = ports.map((p) => {
      const config = resolveNodeConfig({
        nodeId: p.id,
        listen: { http: `127.0.0.1:${p.http}`, grpc: '127.0.0.1:0', peer: `127.0.0.1:${p.peer}` },
        peers: peersFlag(ports),
        shards: 4,
        replication: 3,
        dataDir: join(root, p.id),
        // 50 ms ticks, 1 s elections: stable leaders on a loaded CI machine.
        raft: { tickMs: 50, electionTicks: 20, heartbeatTicks: 1, readMode: process.env.RM ?? 'lease' },
      });
      expect(config.raft.readMode ?? 'index').toBe(process.env.RM ?? 'lease');
      return config;
    });
    // Together: a node's start waits for its peers.
    nodes.push(
      ...(await Promise.all(
        configs.map((c) =>
          TidemarkNode.start(c, { checkpointIntervalMs: 0, balancer: false, writeTimeoutMs: 30_000 }),
        ),
      )),
    );
    await waitFor(() => nodes.every((n) => n.readiness().ready), 'cluster readiness', 30_000);
    for (let h = 0; h < 12; h++) {
      const tags = { host: `web${h}`, dc: h % 2 === 0 ? 'eu' : 'us' };
      data.push(series('lookup.cpu', tags, [T0, T0 + 1000], [h, h + 1]));
      if (h < 3) data.push(series('lookup.mem', { ...tags, role: 'db' }, [T0], [h]));
    }
    const r = await nodes[0]!.write(batchOf(data));
    expect(r.rejected).toEqual([]);
    http = createHttpApi({ cluster: nodes[2]! });
    base = `http://127.0.0.1:${(await http.listen('127.0.0.1', 0)).port}`;
  }, 60_000);

  afterAll(async () => {
    await http?.close();
    await Promise.all(nodes.map((n) => n.close()));
    rmSync(root, { recursive: true, force: true });
  });

  const expected = (pred: (d: RefSeries) => boolean) =>
    data
      .filter(pred)
      .map((d) => ({ tsuid: seriesIdHex(seriesId(d.series)), metric: d.series.metric, tags: d.series.tags }))
      .sort((a, b) => (a.tsuid < b.tsuid ? -1 : 1));

  it('GET m=metric{tag=*} answers in OpenTSDB shape, paged by limit and startIndex', async () => {
    const all = expected((d) => d.series.metric === 'lookup.cpu');
    const res = await fetch(`${base}/api/search/lookup?m=lookup.cpu{host=*}&limit=5&startIndex=5`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      type: 'LOOKUP',
      metric: 'lookup.cpu',
      tags: [{ key: 'host', value: '*' }],
      limit: 5,
      startIndex: 5,
      totalResults: 12,
    });
    expect(typeof body.time).toBe('number');
    expect(body.results).toEqual(all.slice(5, 10));
    const first = (await (await fetch(`${base}/api/search/lookup?m=lookup.cpu`)).json()) as {
      results: unknown[];
      limit: number;
    };
    expect(first.limit).toBe(25);
    expect(first.results).toEqual(all);
  });

  it('POST with exact values, any-key pairs and metric *', async () => {
    const post = async (b: unknown) => {
      const res = await fetch(`${base}/api/search/lookup`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(b),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const eu = await post({ metric: 'lookup.cpu', tags: [{ key: 'dc', value: 'eu' }], useMeta: false });
    expect(eu.status).toBe(200);
    expect(eu.body.results).toEqual(
      expected((d) => d.series.metric === 'lookup.cpu' && d.series.tags.dc === 'eu'),
    );
    expect(eu.body.totalResults).toBe(6);
    const anyMetric = await post({ metric: '*', tags: [{ key: '*', value: 'web1' }] });
    expect(anyMetric.body.results).toEqual(expected((d) => d.series.tags.host === 'web1'));
    expect(anyMetric.body.totalResults).toBe(2);
    const none = await post({ metric: 'lookup.cpu', tags: [{ key: 'role', value: '*' }] });
    expect(none.body).toMatchObject({ results: [], totalResults: 0 });
    const bad = await post({ metric: '*' });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: { code: 400 } });
  });

  it('rejects a malformed GET with an OpenTSDB error naming the parameter', async () => {
    const res = await fetch(`${base}/api/search/lookup?m=lookup.cpu{host}`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: number; field: string; reason: string } };
    expect(body.error).toMatchObject({ code: 400, field: 'm', reason: 'lookup_invalid' });
    const lim = await fetch(`${base}/api/search/lookup?m=lookup.cpu&limit=0`);
    expect(lim.status).toBe(400);
  });

  it('lease reads: a write acknowledged through one node is seen by the next read on every node', async () => {
    for (let i = 0; i < 20; i++) {
      const writer = nodes[i % 3]!;
      const reader = nodes[(i + 1) % 3]!;
      const s = series('lease.seq', { k: String(i % 4) }, [T0 + i * 1000], [i]);
      const r = await writer.write(batchOf([s]));
      expect(r.rejected).toEqual([]);
      const out = await reader.query({
        start: T0,
        end: T0 + 100_000,
        queries: [{ metric: 'lease.seq', aggregator: 'sum', downsample: { interval: 'all', fn: 'count' } }],
      });
      expect(out.results[0]!.vals[0]).toBe(i + 1);
      const found = await reader.lookup({ metric: 'lease.seq', tags: [], limit: 25, startIndex: 0 });
      expect(found.reduce((a, p) => a + p.total, 0)).toBe(Math.min(4, i + 1));
      if (i % 5 === 4) {
        // Move one shard's leadership: reads must stay correct across the change.
        const shard = i % 4;
        const leader = nodes.find((n) =>
          n.status().replicas.some((x) => x.shard === shard && x.role === 'leader'),
        );
        const to = IDS.find((id) => id !== leader?.status().nodeId) ?? '';
        await leader?.transferLeader(shard, to).catch(() => undefined);
      }
    }
  });

  it('refuses an unknown read mode', () => {
    let err: unknown;
    try {
      resolveNodeConfig({ raft: { readMode: 'fast' } });
    } catch (e) {
      err = e;
    }
    expect(isTidemarkError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as { details: { field: string } }).details.field).toBe('raft.readMode');
  });
});
