import { describe, expect, it } from 'vitest';
import {
  endpoints,
  parseMatchers,
  parseTags,
  parseTime,
  seriesName,
  table,
  UsageError,
} from '../../src/cli/client-args.js';
import { chart } from '../../src/cli/query.js';
import { report } from '../../src/cli/status.js';
import type { ClientShardMap, NodeStatus } from '../../src/client/index.js';

describe('client command arguments', () => {
  it('parses times: ms, now, <n><unit>-ago, ISO dates', () => {
    const now = 1_700_000_000_000;
    expect(parseTime('123', 'start', now)).toBe(123);
    expect(parseTime('now', 'start', now)).toBe(now);
    expect(parseTime('1h-ago', 'start', now)).toBe(now - 3_600_000);
    expect(parseTime('30m-ago', 'start', now)).toBe(now - 1_800_000);
    expect(parseTime('2d-ago', 'start', now)).toBe(now - 2 * 86_400_000);
    expect(parseTime('1y-ago', 'start', now)).toBe(now - 365 * 86_400_000); // OpenTSDB's units
    expect(parseTime('2023-11-14T22:13:20Z', 'start', now)).toBe(now);
    for (const bad of ['', 'yesterday', '1q-ago', '-5', '1.5']) {
      expect(() => parseTime(bad, 'start', now), bad).toThrow(UsageError);
    }
  });

  it('parses tags and matchers', () => {
    expect(parseTags(['host=a', 'dc=x=y'])).toEqual({ host: 'a', dc: 'x=y' });
    expect(() => parseTags(['host'])).toThrow(/tags are tag=value/);
    expect(() => parseTags(['=a'])).toThrow(UsageError);
    expect(() => parseTags(['a=1', 'a=2'])).toThrow(/given twice/);
    expect(parseMatchers(['host=a', 'dc!=x', 'host=~web-.*', 'env!~dev|test', 'empty='])).toEqual([
      { name: 'host', op: '=', value: 'a' },
      { name: 'dc', op: '!=', value: 'x' },
      { name: 'host', op: '=~', value: 'web-.*' },
      { name: 'env', op: '!~', value: 'dev|test' },
      { name: 'empty', op: '=', value: '' },
    ]);
    expect(() => parseMatchers(['host'])).toThrow(UsageError);
  });

  it('checks endpoints', () => {
    expect(endpoints(undefined)).toEqual(['127.0.0.1:4243']);
    expect(endpoints('a:1, b.example:2')).toEqual(['a:1', 'b.example:2']);
    for (const bad of ['', 'nohost', 'h:0', 'h:99999']) expect(() => endpoints(bad), bad).toThrow(UsageError);
  });

  it('formats tables, series names and charts', () => {
    expect(
      table(
        ['A', 'NUM'],
        [
          ['xx', '1'],
          ['y', '10'],
        ],
      ),
    ).toBe('A   NUM\nxx    1\ny    10');
    expect(seriesName('m', { b: '2', a: '1' })).toBe('m{a=1,b=2}');
    expect(seriesName('m', {})).toBe('m');
    const text = chart({ metric: 'm', tags: {}, timestamps: [0, 1000, 2000], values: [1, 3, 2] }, 10, 3);
    expect(text.split('\n')).toEqual([
      'm  (3 samples, min 1, max 3)',
      '3 | *',
      '  |  *',
      '1 |*',
      '  +---',
      '  1970-01-01T00:00:00.000Z 1970-01-01T00:00:02.000Z',
    ]);
  });
});

describe('status report', () => {
  const map: ClientShardMap = {
    version: 1,
    shardCount: 3,
    shards: [
      { shard: 0, replicas: ['a', 'b', 'c'], leader: 'a', term: 2 },
      { shard: 1, replicas: ['b', 'c', 'a'], leader: 'b', term: 3 },
      { shard: 2, replicas: ['c', 'a', 'b'], leader: '', term: 0 },
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
    commit: 10,
    applied,
    leader,
  });

  it('joins the shard map with node statuses into health per shard', () => {
    const statuses = new Map<string, NodeStatus | Error>([
      [
        'a',
        {
          nodeId: 'a',
          replicas: [
            replica(0, 'leader', 'a', 2, 10),
            replica(1, 'follower', 'b', 3, 10),
            replica(2, 'follower', '', 4, 10),
          ],
        },
      ],
      [
        'b',
        {
          nodeId: 'b',
          replicas: [
            replica(0, 'follower', 'a', 2, 7),
            replica(1, 'leader', 'b', 3, 10),
            replica(2, 'follower', '', 4, 10),
          ],
        },
      ],
      ['c', new Error('connection refused')],
    ]);
    const r = report(map, statuses);
    expect(r.nodes).toEqual([
      { id: 'a', address: 'h:1', reachable: true, replicas: 3, leading: 1 },
      { id: 'b', address: 'h:2', reachable: true, replicas: 3, leading: 1 },
      { id: 'c', address: 'h:3', reachable: false, error: 'connection refused', replicas: 0, leading: 0 },
    ]);
    expect(r.shards.map((s) => [s.shard, s.leader, s.term, s.applied, s.lag, s.health])).toEqual([
      [0, 'a', 2, 10, 3, 'degraded'],
      [1, 'b', 3, 10, 0, 'degraded'],
      [2, '', 0, null, null, 'no leader'],
    ]);
    const allUp = new Map<string, NodeStatus | Error>([
      ['a', { nodeId: 'a', replicas: [replica(0, 'leader', 'a', 2, 10)] }],
    ]);
    const one = report({ ...map, shardCount: 1, shards: [{ ...map.shards[0]!, replicas: ['a'] }] }, allUp);
    expect(one.shards[0]!.health).toBe('ok');
    const none = report(map, new Map());
    expect(none.shards.map((s) => s.health)).toEqual(['unavailable', 'unavailable', 'unavailable']);
  });
});
