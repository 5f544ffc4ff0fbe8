import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/cluster/config.js';
import { placeShards } from '../../src/cluster/placement.js';
import { ShardMap } from '../../src/cluster/shard-map.js';
import { TidemarkError } from '../../src/errors/index.js';
import { makeSeries, seriesId, shardOf } from '../../src/model/index.js';

const NODES = ['n2', 'n0', 'n1', 'n3'];

function invalid(fn: () => unknown): TidemarkError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TidemarkError);
    return err as TidemarkError;
  }
  throw new Error('expected an error');
}

describe('ShardMap', () => {
  it('is built from the placement, immutable, version 0, nothing observed', () => {
    const map = ShardMap.create(16, NODES, 3);
    expect(map.version).toBe(0);
    expect(map.shardCount).toBe(16);
    expect(map.replication).toBe(3);
    expect(map.nodes).toEqual(['n0', 'n1', 'n2', 'n3']);
    const placement = placeShards(16, NODES, 3);
    map.shards().forEach((info, i) => {
      expect(info.shard).toBe(i);
      expect(info.replicas).toEqual(placement[i]!.replicas);
      expect(info.preferredLeader).toBe(info.replicas[0]);
      expect(info.leader).toBe('');
      expect(info.term).toBe(0);
      expect(Object.isFrozen(info)).toBe(true);
    });
    expect(Object.isFrozen(map)).toBe(true);
    expect(Object.isFrozen(map.shards())).toBe(true);
    expect(() => {
      (map as unknown as { version: number }).version = 5;
    }).toThrow();
    expect(map.replicasOf(3)).toBe(map.shard(3).replicas);
    expect(map.preferredLeaderOf(3)).toBe(map.shard(3).replicas[0]);
  });

  it('fromConfig uses the configured shards, peers and replication', () => {
    const config = loadConfig({ argv: ['--node-id', 'a', '--peers', 'a=h:1,b=h:2,c=h:3', '--shards', '8'] });
    const map = ShardMap.fromConfig(config);
    expect(map.shardCount).toBe(8);
    expect(map.replication).toBe(3);
    expect(map.nodes).toEqual(['a', 'b', 'c']);
    expect(map.shardsOfNode('a')).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('shardOfSeries is jump(id, S)', () => {
    const map = ShardMap.create(16, NODES, 2);
    for (let i = 0; i < 100; i++) {
      const id = seriesId(makeSeries('cpu', { host: `h${i}` }));
      expect(map.shardOfSeries(id)).toBe(shardOf(id, 16));
    }
  });

  it('shardsOfNode lists exactly the shards a node replicates', () => {
    const map = ShardMap.create(32, NODES, 2);
    let total = 0;
    for (const n of map.nodes) {
      const shards = map.shardsOfNode(n);
      total += shards.length;
      for (const s of shards) expect(map.replicasOf(s)).toContain(n);
    }
    expect(total).toBe(32 * 2);
    expect(map.shardsOfNode('nobody')).toEqual([]);
  });

  it('observations return a new map with version + 1; the old one is untouched', () => {
    const m0 = ShardMap.create(4, NODES, 3);
    const m1 = m0.withObservedLeader(2, 'n1', 5);
    expect(m1).not.toBe(m0);
    expect(m1.version).toBe(1);
    expect(m1.leaderOf(2)).toBe('n1');
    expect(m1.shard(2).term).toBe(5);
    expect(m0.leaderOf(2)).toBe('');
    expect(m0.version).toBe(0);
    // Shards not observed are shared, not copied.
    expect(m1.shard(0)).toBe(m0.shard(0));
    expect(m1.shard(2).replicas).toBe(m0.shard(2).replicas);
  });

  it('ignores unchanged and stale observations; applies newer terms and same-term learn/forget', () => {
    const m1 = ShardMap.create(4, NODES, 3).withObservedLeader(0, 'n1', 5);
    expect(m1.withObservedLeader(0, 'n1', 5)).toBe(m1); // unchanged
    expect(m1.withObservedLeader(0, 'n2', 4)).toBe(m1); // stale term
    expect(m1.withObservedLeader(0, '', 3)).toBe(m1);
    const forgot = m1.withObservedLeader(0, '', 5); // check-quorum step-down: same term, no leader
    expect(forgot.version).toBe(2);
    expect(forgot.leaderOf(0)).toBe('');
    const relearned = forgot.withObservedLeader(0, 'n1', 5);
    expect(relearned.version).toBe(3);
    const newTerm = relearned.withObservedLeader(0, 'n3', 6);
    expect(newTerm.version).toBe(4);
    expect(newTerm.shard(0)).toMatchObject({ leader: 'n3', term: 6 });
  });

  it('withObservations batches: one version bump for several changes, none for none', () => {
    const m0 = ShardMap.create(4, NODES, 3);
    const m1 = m0.withObservations([
      { shard: 0, leader: 'n0', term: 1 },
      { shard: 1, leader: 'n1', term: 1 },
      { shard: 1, leader: 'n2', term: 2 },
      { shard: 1, leader: 'n0', term: 1 }, // stale within the batch
    ]);
    expect(m1.version).toBe(1);
    expect(m1.leaderOf(0)).toBe('n0');
    expect(m1.shard(1)).toMatchObject({ leader: 'n2', term: 2 });
    expect(m1.withObservations([])).toBe(m1);
    expect(m1.withObservations([{ shard: 0, leader: 'n0', term: 1 }])).toBe(m1);
  });

  it('rejects bad shards and bad observations', () => {
    const map = ShardMap.create(4, NODES, 3);
    for (const s of [-1, 4, 1.5, Number.NaN]) {
      expect(invalid(() => map.shard(s)).code).toBe('NOT_FOUND');
      expect(invalid(() => map.withObservedLeader(s, 'n0', 1)).code).toBe('NOT_FOUND');
    }
    expect(invalid(() => map.withObservedLeader(0, 'n0', -1)).field).toBe('term');
    expect(invalid(() => map.withObservedLeader(0, 'n0', 1.5)).field).toBe('term');
    expect(invalid(() => map.withObservedLeader(0, 5 as unknown as string, 1)).field).toBe('leader');
    expect(invalid(() => ShardMap.create(0, NODES, 1)).field).toBe('shards');
    expect(invalid(() => ShardMap.create(4, NODES, 5)).field).toBe('replication');
  });

  it('round-trips through JSON', () => {
    const map = ShardMap.create(8, NODES, 3).withObservedLeader(1, 'n2', 3).withObservedLeader(7, 'n0', 9);
    const json = JSON.parse(JSON.stringify(map));
    expect(json).toEqual(map.toJSON());
    expect(json.version).toBe(2);
    expect(json.shards[1]).toEqual({
      shard: 1,
      replicas: [...map.replicasOf(1)],
      preferredLeader: map.preferredLeaderOf(1),
      leader: 'n2',
      term: 3,
    });
    const back = ShardMap.fromJSON(json);
    expect(back.toJSON()).toEqual(map.toJSON());
    expect(back.version).toBe(2);
    expect(back.withObservedLeader(1, 'n2', 3)).toBe(back);
  });

  it('fromJSON rejects malformed maps naming the field', () => {
    // biome-ignore lint/suspicious/noExplicitAny: mutating parsed JSON in every odd way
    type J = Record<string, any>;
    const good = (): J => JSON.parse(JSON.stringify(ShardMap.create(4, NODES, 3)));
    const check = (mutate: (j: J) => unknown, field: string): void => {
      const j = good();
      const replaced = mutate(j);
      const err = invalid(() => ShardMap.fromJSON(replaced === undefined ? j : replaced));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.field).toBe(field);
      expect(err.message.startsWith(`${field}:`)).toBe(true);
    };
    check(() => null, 'shardMap');
    check(() => [], 'shardMap');
    check((j) => {
      j.version = -1;
    }, 'shardMap.version');
    check((j) => {
      j.shardCount = '4';
    }, 'shardMap.shardCount');
    check((j) => {
      j.replication = 0;
    }, 'shardMap.replication');
    check((j) => {
      j.replication = 5;
    }, 'shardMap.replication');
    check((j) => {
      j.nodes = ['n0', 'n0', 'n1', 'n2'];
    }, 'shardMap.nodes');
    check((j) => {
      j.nodes = 'n0';
    }, 'shardMap.nodes');
    check((j) => {
      j.shards.pop();
    }, 'shardMap.shards');
    check((j) => {
      j.shards[2] = 7;
    }, 'shardMap.shards[2]');
    check((j) => {
      j.shards[2].shard = 3;
    }, 'shardMap.shards[2].shard');
    check((j) => {
      j.shards[1].replicas = ['n0', 'n0', 'n1'];
    }, 'shardMap.shards[1].replicas');
    check((j) => {
      j.shards[1].replicas = ['n0', 'n1'];
    }, 'shardMap.shards[1].replicas');
    check((j) => {
      j.shards[1].replicas = ['n0', 'n1', 'x'];
    }, 'shardMap.shards[1].replicas');
    check((j) => {
      j.shards[0].preferredLeader = j.shards[0].replicas[1];
    }, 'shardMap.shards[0].preferredLeader');
    check((j) => {
      j.shards[0].leader = null;
    }, 'shardMap.shards[0].leader');
    check((j) => {
      j.shards[3].term = -2;
    }, 'shardMap.shards[3].term');
  });
});
