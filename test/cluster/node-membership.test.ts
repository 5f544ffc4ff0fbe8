/**
 * Scale-out: a fourth node is added to the peer list of a running 3-node cluster (each node restarted with the
 * new list, one at a time, as a StatefulSet rollout does) and started on an empty data directory. The shard
 * placement changes; every shard's group must end up with exactly the placed nodes as voters — the new node's
 * replicas added as learners, caught up and promoted, the replicas no longer placed removed — with no sample
 * lost, and the new node holding its shards' data itself.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveNodeConfig } from '../../src/cluster/config.js';
import { ShardMap } from '../../src/cluster/shard-map.js';
import { type Series, seriesId, shardOf } from '../../src/model/index.js';
import type { SampleBatch } from '../../src/storage/store.js';
import { allocatePorts, NodeCluster, peersFlag, waitFor } from './fixtures/node-cluster.js';

const SHARDS = 4;

function batchOf(list: Series[], base: number): SampleBatch {
  const n = list.length;
  return {
    series: list,
    seriesRef: Uint32Array.from(list, (_, i) => i),
    timestamps: new Float64Array(n).fill(base),
    values: Float64Array.from(list, (_, i) => base + i),
    length: n,
  };
}

const SERIES: Series[] = Array.from({ length: 16 }, (_, i) => ({ metric: 'so', tags: { host: `h${i}` } }));

describe('adding a node to the peer list', () => {
  const cluster = new NodeCluster(['a', 'b', 'c'], SHARDS);
  afterAll(() => cluster.close());

  it('moves replicas onto the new node by membership changes, losing nothing', async () => {
    await cluster.start({ balancer: false });
    await cluster.ready();
    let t = 1_000;
    let written = 0;
    const write = async (via: string) => {
      const r = await cluster.node(via).write(batchOf(SERIES, t++));
      expect(r.rejected).toEqual([]);
      written += SERIES.length;
    };
    for (let i = 0; i < 20; i++) await write(['a', 'b', 'c'][i % 3]!);

    // The new peer list: a, b, c keep their addresses; d gets fresh ports.
    const [d] = await allocatePorts(['d']);
    const old = cluster.configs.get('a')!;
    const peers = `${old.peers.map((p) => `${p.id}=${p.address}`).join(',')},${peersFlag([d!])}`;
    const ids = ['a', 'b', 'c', 'd'];
    for (const id of ids) {
      const prev = cluster.configs.get(id);
      cluster.configs.set(
        id,
        resolveNodeConfig({
          nodeId: id,
          listen: {
            http: prev?.listen.http ?? `127.0.0.1:${d!.http}`,
            grpc: '127.0.0.1:0',
            peer: prev?.listen.peer ?? `127.0.0.1:${d!.peer}`,
          },
          peers,
          shards: SHARDS,
          replication: 3,
          dataDir: join(cluster.root, id),
          raft: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 },
        }),
      );
    }
    const map = ShardMap.fromConfig(cluster.configs.get('a')!);
    expect(map.shardsOfNode('d').length).toBeGreaterThan(0);

    // d first (it waits to be added), then a rolling restart of a, b, c onto the new list.
    cluster.nodes.set('d', await cluster.startNode('d', { balancer: false }));
    for (const id of ['a', 'b', 'c']) {
      await cluster.node(id).close();
      cluster.nodes.delete(id);
      await cluster.startNode(id, { balancer: false });
      await write(id === 'a' ? 'b' : 'a');
    }

    // Every shard's voters become exactly its placed nodes.
    await waitFor(
      () => {
        for (let shard = 0; shard < SHARDS; shard++) {
          const placed = [...map.replicasOf(shard)].sort();
          const leader = ids.map((id) => cluster.node(id).replicas.get(shard)).find((r) => r?.isLeader());
          if (leader === undefined) return false;
          const st = leader.raftStatus();
          if (st.conf.learners.length > 0 || [...st.conf.voters].sort().join() !== placed.join())
            return false;
        }
        return true;
      },
      'voters = placement for every shard',
      90_000,
      100,
    );
    await cluster.ready(60_000);
    for (let i = 0; i < 5; i++) await write(ids[i % 4]!);

    // Every sample is there, through every node; d's own replicas hold their shards' samples.
    for (const id of ids) {
      const got = await cluster.node(id).select({ metric: 'so' });
      expect(got.reduce((n, s) => n + s.timestamps.length, 0)).toBe(written);
    }
    for (const [shard, r] of cluster.node('d').replicas) {
      const mine = SERIES.filter((s) => shardOf(seriesId(s), SHARDS) === shard);
      await waitFor(async () => {
        const local = (await r.read({ metric: 'so' }, { stale: true })).reduce(
          (n, s) => n + s.toArrays().count,
          0,
        );
        return local === mine.length * (written / SERIES.length);
      }, `d's replica of shard ${shard} holds its samples`);
    }
  }, 240_000);
});
