import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkService } from '../../src/gen/tidemark/v1/client_pb.js';
import { encodeBatch } from '../../src/ingest/batch-codec.js';
import { type Series, seriesId, shardOf } from '../../src/model/index.js';
import type { SampleBatch } from '../../src/storage/store.js';
import { createClient } from '../../src/transport/grpc-adapter.js';
import { NodeCluster, waitFor } from './fixtures/node-cluster.js';

const SHARDS = 4;

function seriesOnShard(shard: number, metric = 'cpu'): Series {
  for (let i = 0; ; i++) {
    const s = { metric, tags: { host: `h${i}` } };
    if (shardOf(seriesId(s), SHARDS) === shard) return s;
  }
}

function batchOf(list: Series[], base: number, perSeries: number): SampleBatch {
  const n = list.length * perSeries;
  const b: SampleBatch = {
    series: list,
    seriesRef: new Uint32Array(n),
    timestamps: new Float64Array(n),
    values: new Float64Array(n),
    length: n,
  };
  for (let i = 0; i < n; i++) {
    b.seriesRef[i] = i % list.length;
    b.timestamps[i] = base + Math.floor(i / list.length);
    b.values[i] = i;
  }
  return b;
}

/** WriteResult.leaders names exactly the written shards `id` does not lead, each with its leader. */
function expectForwardedNamed(
  cluster: NodeCluster,
  id: string,
  shards: number[],
  leaders: { shard: number; leader: string }[] | undefined,
): void {
  const forwarded = shards.filter((s) => cluster.node(id).replicas.get(s)?.isLeader() !== true);
  expect((leaders ?? []).map((h) => h.shard).sort()).toEqual(forwarded);
  for (const h of leaders ?? []) expect(cluster.node(h.leader).replicas.get(h.shard)?.isLeader()).toBe(true);
}

describe('TidemarkNode: three nodes in one process', () => {
  const cluster = new NodeCluster(['a', 'b', 'c'], SHARDS);
  beforeAll(async () => {
    await cluster.start({ balancer: { settleMs: 300, cooldownMs: 2000 } });
    await cluster.ready();
    // Let the balancer settle: every shard led by its preferred leader (keeps the tests below deterministic).
    await waitFor(
      () =>
        cluster
          .node('a')
          .shardMap()
          .shards.every((s) => s.leader === s.preferredLeader),
      'preferred leaders',
      30_000,
      50,
    );
    await cluster.ready();
  });
  afterAll(() => cluster.close());

  it('reports status, readiness and the shard map; leaders moved to their preferred nodes', () => {
    const a = cluster.node('a');
    const st = a.status();
    expect(st.nodeId).toBe('a');
    expect(st.shardCount).toBe(SHARDS);
    expect(st.replicas.map((r) => r.shard)).toEqual([0, 1, 2, 3]);
    for (const r of st.replicas) {
      expect(['leader', 'follower']).toContain(r.role);
      expect(r.leader).not.toBe('');
      expect(r.applied).toBeLessThanOrEqual(r.commit);
    }
    expect(a.readiness()).toEqual({ ready: true, reasons: [] });
    const m = a.shardMap();
    expect(m.shardCount).toBe(SHARDS);
    expect(m.nodes).toEqual(['a', 'b', 'c']);
    for (const s of m.shards) {
      expect(s.replicas).toHaveLength(3);
      expect(s.preferredLeader).toBe(s.replicas[0]);
      expect(['a', 'b', 'c']).toContain(s.leader);
    }
  });

  it('accepts a write on any node; every node reads all of it', async () => {
    const list = [0, 1, 2, 3].map((s) => seriesOnShard(s, 'w1'));
    let total = 0;
    for (const [i, id] of ['a', 'b', 'c'].entries()) {
      const r = await cluster.node(id).write(batchOf(list, 1000 * (i + 1), 10));
      expect(r).toMatchObject({ accepted: 40, rejected: [] });
      expectForwardedNamed(cluster, id, [0, 1, 2, 3], r.leaders);
      total += 40;
    }
    for (const id of ['a', 'b', 'c']) {
      const got = await cluster.node(id).select({ metric: 'w1' });
      expect(got).toHaveLength(4);
      expect(got.reduce((n, s) => n + s.timestamps.length, 0)).toBe(total);
    }
  });

  it('forwards a write for a shard led elsewhere and maps rejected indexes back', async () => {
    const leaderOf0 = cluster
      .node('a')
      .status()
      .replicas.find((r) => r.shard === 0)!.leader;
    const other = ['a', 'b', 'c'].find((id) => id !== leaderOf0)!;
    expect(cluster.node(other).replicas.get(0)!.isLeader()).toBe(false);
    const b = batchOf([seriesOnShard(0, 'w2'), seriesOnShard(1, 'w2')], 5000, 5);
    b.timestamps[3] = 1.5; // not an integer: rejected by the shard store
    const r = await cluster.node(other).write(b);
    expect(r.accepted).toBe(9);
    expect(r.rejected).toEqual([{ index: 3, reason: 'invalid_timestamp' }]);
    // The answer names the leader of every shard the node forwarded (clients route there next), no other.
    const leaderOf1 = cluster.node(other).replicas.get(1)!.leader();
    const forwarded = [
      { shard: 0, leader: leaderOf0 },
      ...(leaderOf1 === other ? [] : [{ shard: 1, leader: leaderOf1 }]),
    ];
    expect(r.leaders ?? []).toEqual(forwarded);
    const got = await cluster.node(leaderOf0).select({ metric: 'w2' });
    expect(got.reduce((n, s) => n + s.timestamps.length, 0)).toBe(9);
  });

  it('a forward to a non-leader is refused with NOT_LEADER and a hint', async () => {
    const leaderOf1 = cluster
      .node('a')
      .status()
      .replicas.find((r) => r.shard === 1)!.leader;
    const [from, to] = ['a', 'b', 'c'].filter((id) => id !== leaderOf1);
    const bytes = encodeBatch(batchOf([seriesOnShard(1, 'w3')], 1, 3));
    const err = await cluster
      .node(from!)
      .peer.forward(to!, 1, bytes)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toMatchObject({ code: 'NOT_LEADER', details: { leaderHint: leaderOf1 } });
  });

  it('serves Write and Query over the gRPC client API', async () => {
    const a = createClient(TidemarkService, cluster.node('a').endpoints.grpc);
    const b = createClient(TidemarkService, cluster.node('b').endpoints.grpc);
    try {
      const ok = await a.write({
        batch: {
          series: [
            { series: { metric: 'g1', tags: { host: 'x' } }, timestamps: [1n, 2n, 3n], values: [1, 2, 3] },
            { series: { metric: 'g1', tags: { host: 'y' } }, timestamps: [1n], values: [4] },
          ],
        },
      });
      expect(ok.accepted).toBe(4n);
      expect(ok.rejected).toEqual([]);
      // Malformed input fails the request as a whole, naming the field; nothing of it is stored.
      const bad = await a
        .write({
          batch: {
            series: [
              { series: { metric: 'g1', tags: { host: 'z' } }, timestamps: [1n, -5n], values: [4, 5] },
            ],
          },
        })
        .catch((e: unknown) => e);
      expect(bad).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'batch.series[0].timestamps[1]' });
      const series = [];
      for await (const m of b.query({ metric: 'g1' })) series.push(...m.series);
      expect(series.map((s) => [s.series?.tags.host, s.timestamps.map(Number), s.values])).toEqual([
        ['x', [1, 2, 3], [1, 2, 3]],
        ['y', [1], [4]],
      ]);
      const st = await b.status({});
      expect(st.nodeId).toBe('b');
      expect(st.replicas).toHaveLength(SHARDS);
      const sm = await b.shardMap({});
      expect(sm.shardCount).toBe(SHARDS);
      expect(sm.nodes.find((n) => n.id === 'b')?.clientAddress).toBe(cluster.node('b').endpoints.grpc);
    } finally {
      a.close();
      b.close();
    }
  });

  it('learns the client addresses peerClients does not give from the peers (Hello), for its shard map', async () => {
    // This cluster is configured with peers only: every node must still list every node's client address.
    const want = Object.fromEntries(['a', 'b', 'c'].map((id) => [id, cluster.node(id).endpoints.grpc]));
    for (const id of ['a', 'b', 'c']) {
      const c = createClient(TidemarkService, cluster.node(id).endpoints.grpc);
      try {
        await waitFor(async () => {
          const sm = await c.shardMap({});
          const listed = Object.fromEntries(sm.nodes.map((n) => [n.id, n.clientAddress]));
          const same =
            JSON.stringify(Object.entries(listed).sort()) === JSON.stringify(Object.entries(want).sort());
          return same ? true : undefined;
        }, `node ${id} lists every client address`);
      } finally {
        c.close();
      }
    }
  });

  it('TransferLeader moves a shard to the named replica; elsewhere NOT_LEADER with a hint', async () => {
    const leader = cluster
      .node('a')
      .status()
      .replicas.find((r) => r.shard === 1)!.leader;
    const to = ['a', 'b', 'c'].find((id) => id !== leader)!;
    const other = ['a', 'b', 'c'].find((id) => id !== leader && id !== to)!;
    const onOther = createClient(TidemarkService, cluster.node(other).endpoints.grpc);
    const onLeader = createClient(TidemarkService, cluster.node(leader).endpoints.grpc);
    try {
      const refused = await onOther.transferLeader({ shard: 1, to }).catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: 'NOT_LEADER', details: { leaderHint: leader } });
      const bad = await onLeader.transferLeader({ shard: 1, to: 'nobody' }).catch((e: unknown) => e);
      expect(bad).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'to' } });
      const res = await onLeader.transferLeader({ shard: 1, to });
      expect(res.leader).toBe(to);
      expect(cluster.node(to).replicas.get(1)!.isLeader()).toBe(true);
      // Writes to the shard go on through any node.
      const w = await cluster.node(other).write(batchOf([seriesOnShard(1, 'tl')], 7000, 3));
      expect(w.accepted).toBe(3);
    } finally {
      onOther.close();
      onLeader.close();
    }
  });
});

describe('TidemarkNode: four nodes, three replicas per shard', () => {
  const cluster = new NodeCluster(['a', 'b', 'c', 'd'], SHARDS);
  beforeAll(async () => {
    await cluster.start({ balancer: false });
    await cluster.ready();
  });
  afterAll(() => cluster.close());

  it('writes and selects through a node without a replica of some shards', async () => {
    const holders = ['a', 'b', 'c', 'd'].map((id) => [...cluster.node(id).replicas.keys()]);
    expect(holders.some((shards) => shards.length < SHARDS)).toBe(true);
    const list = [0, 1, 2, 3].map((s) => seriesOnShard(s, 'r1'));
    for (const id of ['a', 'b', 'c', 'd']) {
      const r = await cluster.node(id).write(batchOf(list, 100 * id.charCodeAt(0), 5));
      expect(r).toMatchObject({ accepted: 20, rejected: [] });
      expectForwardedNamed(cluster, id, [0, 1, 2, 3], r.leaders);
    }
    for (const id of ['a', 'b', 'c', 'd']) {
      for (const stale of [false, true]) {
        const got = await waitFor(async () => {
          const r = await cluster
            .node(id)
            .select({ metric: 'r1', matchers: [{ name: 'host', op: '!=', value: 'nope' }] }, { stale });
          return r.reduce((n, s) => n + s.timestamps.length, 0) === 80 && r;
        }, `select through ${id}`);
        expect(got.map((s) => s.tags.host)).toEqual(list.map((s) => s.tags.host).sort());
      }
    }
  });
});
