/**
 * `tidemark status`'s report names what needs a look: the replica furthest behind the leader and the replicas
 * that did not answer (test/cli/client-args.test.ts covers health and the node table).
 */
import { describe, expect, it } from 'vitest';
import { report } from '../../src/cli/status.js';
import type { ClientShardMap, NodeStatus } from '../../src/client/index.js';

const map: ClientShardMap = {
  version: 1,
  shardCount: 2,
  shards: [
    { shard: 0, replicas: ['a', 'b', 'c'], leader: 'a', term: 4 },
    { shard: 1, replicas: ['b', 'c', 'a'], leader: 'b', term: 2 },
  ],
  nodes: { a: 'h:1', b: 'h:2', c: 'h:3' },
};

const replica = (
  shard: number,
  role: 'leader' | 'follower',
  leader: string,
  term: number,
  applied: number,
) => ({
  shard,
  role,
  term,
  commit: 20,
  applied,
  leader,
});

describe('status report: slowest and silent replicas', () => {
  it('names the furthest-behind replica and the silent ones', () => {
    const statuses = new Map<string, NodeStatus | Error>([
      [
        'a',
        { nodeId: 'a', replicas: [replica(0, 'leader', 'a', 4, 20), replica(1, 'follower', 'b', 2, 20)] },
      ],
      [
        'b',
        { nodeId: 'b', replicas: [replica(0, 'follower', 'a', 4, 17), replica(1, 'leader', 'b', 2, 20)] },
      ],
      ['c', new Error('connection refused')],
    ]);
    const r = report(map, statuses);
    expect(r.shards.map((s) => [s.shard, s.commit, s.lag, s.slowest, s.silent, s.health])).toEqual([
      [0, 20, 3, 'b', ['c'], 'degraded'],
      [1, 20, 0, null, ['c'], 'degraded'],
    ]);
  });

  it('reports nothing slow or silent when every replica is caught up', () => {
    const up = (id: string): NodeStatus => ({
      nodeId: id,
      replicas: [
        replica(0, id === 'a' ? 'leader' : 'follower', 'a', 4, 20),
        replica(1, 'follower', 'b', 2, 20),
      ],
    });
    const r = report(map, new Map(['a', 'b', 'c'].map((id) => [id, up(id)])));
    for (const s of r.shards) {
      expect(s.slowest).toBeNull();
      expect(s.silent).toEqual([]);
      expect(s.health).toBe('ok');
    }
  });
});
