import { describe, expect, test } from 'vitest';
import { MemoryCluster } from '../../src/api/memory-cluster.js';
import { isTidemarkError } from '../../src/errors/index.js';
import { BatchBuilder } from '../../src/ingest/batch.js';
import { makeSeries } from '../../src/model/index.js';

function batchOf(points: [string, number, number][]) {
  const b = new BatchBuilder();
  for (const [host, t, v] of points) b.add(makeSeries('m', { host }), t, v);
  return b.build();
}

describe('MemoryCluster', () => {
  test('writes are split over the shards and read back from all of them', async () => {
    const c = new MemoryCluster({ shardCount: 4 });
    const hosts = Array.from({ length: 40 }, (_, i) => `h${i}`);
    const r = await c.write(batchOf(hosts.map((h, i) => [h, 1000 + i, i])));
    expect(r).toEqual({ accepted: 40, rejected: [] });
    const used = new Set(hosts.map((h) => c.shardOfSeries({ metric: 'm', tags: { host: h } })));
    expect(used.size).toBeGreaterThan(1);
    for (let s = 0; s < 4; s++) {
      const expected = hosts.filter((h) => c.shardOfSeries({ metric: 'm', tags: { host: h } }) === s).length;
      expect(c.stores[s].seriesCount()).toBe(expected);
    }
    const all = await c.select({ metric: 'm' });
    expect(all).toHaveLength(40);
    const h7 = await c.select({ metric: 'm', matchers: [{ name: 'host', op: '=', value: 'h7' }] });
    expect(Array.from(h7[0].timestamps)).toEqual([1007]);
    expect(Array.from(h7[0].values)).toEqual([7]);
    await c.close();
  });

  test('rejected samples are reported by their index in the submitted batch', async () => {
    const c = new MemoryCluster({ shardCount: 3, store: { oooWindowMs: 10 } });
    await c.write(
      batchOf([
        ['a', 1000, 1],
        ['b', 1000, 1],
      ]),
    );
    const r = await c.write(
      batchOf([
        ['b', 2000, 2],
        ['a', 5, 0],
        ['a', 2000, 2],
        ['b', 1, 0],
      ]),
    );
    expect(r.accepted).toBe(2);
    expect(r.rejected).toEqual([
      { index: 1, reason: 'too_old' },
      { index: 3, reason: 'too_old' },
    ]);
  });

  test('injected failures throw before anything is applied; times and removal work', async () => {
    const c = new MemoryCluster();
    const remove = c.inject({ failure: { kind: 'not_leader', leaderHint: 'n2' } });
    await expect(c.write(batchOf([['a', 1, 1]]))).rejects.toMatchObject({
      code: 'NOT_LEADER',
      details: { leaderHint: 'n2' },
    });
    remove();
    c.inject({ failure: { kind: 'resource_exhausted', retryAfterMs: 50 }, times: 1, ops: ['write'] });
    await expect(c.select({ metric: 'm' })).resolves.toEqual([]);
    const err = await c.write(batchOf([['a', 1, 1]])).catch((e) => e);
    expect(isTidemarkError(err, 'RESOURCE_EXHAUSTED') && err.retryAfterMs).toBe(50);
    expect(c.sampleCount()).toBe(0);
    expect(c.writesApplied).toBe(0);
    await c.write(batchOf([['a', 1, 1]]));
    expect(c.sampleCount()).toBe(1);
  });

  test('a delay past the deadline → DEADLINE_EXCEEDED, nothing applied', async () => {
    const c = new MemoryCluster();
    c.inject({ delayMs: 10_000 });
    const started = Date.now();
    await expect(c.write(batchOf([['a', 1, 1]]), { deadline: Date.now() + 50 })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(c.sampleCount()).toBe(0);
  });

  test('shard map, status and readiness', async () => {
    const c = new MemoryCluster({ shardCount: 2, nodeId: 'n1' });
    expect(c.shardMap()).toMatchObject({ shardCount: 2, replication: 1, nodes: ['n1'] });
    expect(c.shardMap().shards.map((s) => s.leader)).toEqual(['n1', 'n1']);
    expect(c.readiness()).toEqual({ ready: true, reasons: [] });
    c.setShardAvailable(1, false);
    expect(c.readiness()).toEqual({ ready: false, reasons: ['shard 1: no leader'] });
    expect(c.shardMap().shards[1].leader).toBe('');
    expect(c.status()).toMatchObject({ nodeId: 'n1', shardCount: 2 });
    expect(c.status().replicas.map((r) => r.role)).toEqual(['leader', 'follower']);
    c.clearInjections();
    expect(c.readiness().ready).toBe(true);
  });
});
