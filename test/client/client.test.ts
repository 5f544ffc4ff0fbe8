import { afterEach, describe, expect, it } from 'vitest';
import { mergeShardMaps } from '../../src/client/client.js';
import { type Point, TidemarkClient, TidemarkError } from '../../src/client/index.js';
import { invalidArgument, notLeader, outcomeUnknown, resourceExhausted } from '../../src/errors/index.js';
import { poll } from '../helpers/wait.js';
import { type FakeCluster, shardOfSeries, startFakeCluster } from './fake-cluster.js';

let cluster: FakeCluster | undefined;
let client: TidemarkClient | undefined;

afterEach(async () => {
  await client?.close();
  await cluster?.stop();
  client = undefined;
  cluster = undefined;
});

function points(n: number, metric = 'cpu.load', t0 = 1_700_000_000_000): Point[] {
  return Array.from({ length: n }, (_, i) => ({
    metric,
    tags: { host: `h${i % 23}`, dc: i % 2 === 0 ? 'east' : 'west' },
    timestamp: t0 + i,
    value: i / 4,
  }));
}

async function rejection(p: Promise<unknown>): Promise<TidemarkError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TidemarkError);
    return err as TidemarkError;
  }
  throw new Error('expected a rejection');
}

async function waitFor(fn: () => boolean, ms = 5000): Promise<void> {
  await poll(() => fn() || undefined, 'condition', { timeoutMs: ms });
}

const requests = (c: FakeCluster) => c.nodes.reduce((n, x) => n + x.requests.length, 0);

describe('TidemarkClient.write', () => {
  it('routes each shard straight to its leader', async () => {
    cluster = await startFakeCluster({ nodes: 3, shards: 8 });
    client = await TidemarkClient.connect({ endpoints: [cluster.endpoints[0]!] });
    const input = points(200);
    const res = await client.write(input);
    expect(res).toEqual({ accepted: 200, rejected: [] });
    // Non-forwarding fakes answer NOT_LEADER for a foreign shard: one request per node with data, none refused.
    for (const node of cluster.nodes) {
      for (const s of node.samples) expect(cluster.leaders[s.shard]).toBe(node.id);
      expect(node.requests.length).toBe(node.samples.length > 0 ? 1 : 0);
    }
    expect(cluster.stored().length).toBe(200);
    const expected = new Set(input.map((p) => shardOfSeries(p.metric, p.tags!, 8)));
    expect(new Set(cluster.stored().map((s) => s.shard))).toEqual(expected);
  });

  it('accepts columnar input and maps rejected samples back to input positions', async () => {
    cluster = await startFakeCluster({ nodes: 2, shards: 4 });
    for (const n of cluster.nodes) n.rejectBelow = 1000;
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    const res = await client.write([
      { series: { metric: 'm', tags: { a: '1' } }, timestamps: [999, 1000, 1001], values: [1, 2, 3] },
      { series: { metric: 'm', tags: { a: '2' } }, timestamps: [5, 2000], values: [4, 5] },
    ]);
    expect(res.accepted).toBe(3);
    expect(res.rejected).toEqual([
      { index: 0, reason: 'too_old' },
      { index: 3, reason: 'too_old' },
    ]);
    const single = await client.write({ series: { metric: 'm' }, timestamps: [3000], values: [1] });
    expect(single.accepted).toBe(1);
  });

  it('follows a NOT_LEADER hint at once and refreshes the shard map', async () => {
    cluster = await startFakeCluster({ nodes: 3, shards: 3 });
    const sleeps: number[] = [];
    client = await TidemarkClient.connect({
      endpoints: cluster.endpoints,
      random: () => 0.99,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    const before = (await client.shardMap())!;
    expect(before.shards.map((s) => s.leader)).toEqual(['n0', 'n1', 'n2']);
    const calls = cluster.nodes.reduce((n, x) => n + x.shardMapCalls, 0);
    cluster.leaders[0] = 'n2'; // shard 0's leadership moved; the client's map is stale
    const input = points(60);
    expect(new Set(input.map((p) => shardOfSeries(p.metric, p.tags!, 3)))).toEqual(new Set([0, 1, 2]));
    const res = await client.write(input);
    expect(res.accepted).toBe(60);
    expect(cluster.node('n0').samples.length).toBe(0);
    expect(cluster.node('n0').requests.length).toBe(1); // answered NOT_LEADER, hint n2
    expect(cluster.node('n2').samples.some((s) => s.shard === 0)).toBe(true);
    expect(sleeps).toEqual([]); // the hint was followed without a backoff
    await waitFor(() => cluster!.nodes.reduce((n, x) => n + x.shardMapCalls, 0) > calls);
    const after = (await client.shardMap({ refresh: true }))!;
    expect(after.shards.map((s) => s.leader)).toEqual(['n2', 'n1', 'n2']);
    expect(after.version).toBeGreaterThan(before.version);
  });

  it('sends a shard straight to the leader a forwarding node names, from the next write on', async () => {
    cluster = await startFakeCluster({ nodes: 3, shards: 3 });
    // A long map refresh period: only the write response can teach the client the new leader.
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints, shardMapRefreshMs: 3_600_000 });
    expect((await client.shardMap())!.shards.map((s) => s.leader)).toEqual(['n0', 'n1', 'n2']);
    cluster.leaders[0] = 'n2'; // shard 0's leadership moved; n0 forwards instead of refusing
    const n0 = cluster.node('n0');
    n0.forwarding = true;
    n0.hintForwarded = true;
    const shard0 = points(60).filter((p) => shardOfSeries(p.metric, p.tags!, 3) === 0);
    expect(shard0.length).toBeGreaterThan(0);
    expect((await client.write(shard0)).accepted).toBe(shard0.length);
    expect(n0.requests.length).toBe(1); // forwarded (stored by the fake on n0), leader named in the answer
    expect((await client.shardMap())!.shards[0]!.leader).toBe('n2');
    expect((await client.write(shard0)).accepted).toBe(shard0.length);
    expect(n0.requests.length).toBe(1); // not sent to n0 again
    expect(cluster.node('n2').samples.filter((s) => s.shard === 0).length).toBe(shard0.length);
  });

  it('refreshes the map when a multi-shard request meets NOT_LEADER', async () => {
    cluster = await startFakeCluster({ nodes: 3, shards: 6 });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints, retry: { initialMs: 1 } });
    cluster.leaders.fill('n1');
    const res = await client.write(points(60));
    expect(res.accepted).toBe(60);
    expect(cluster.node('n1').samples.length).toBe(60);
    expect((await client.shardMap())!.shards.every((s) => s.leader === 'n1')).toBe(true);
  });

  it('refreshes the map and retries on NOT_LEADER without a hint', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 2 });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints, retry: { initialMs: 1 } });
    const node = cluster.nodes[0]!;
    const calls = node.shardMapCalls;
    node.failures.push(notLeader(undefined));
    const res = await client.write(points(5));
    expect(res.accepted).toBe(5);
    expect(node.shardMapCalls).toBeGreaterThan(calls);
    expect(node.requests.length).toBeGreaterThanOrEqual(2);
  });

  it('retries UNAVAILABLE (outcome_unknown) on another node', async () => {
    cluster = await startFakeCluster({ nodes: 2, shards: 1, leaders: ['n0'] });
    for (const n of cluster.nodes) n.forwarding = true;
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints, retry: { initialMs: 1 } });
    cluster.node('n0').failures.push(outcomeUnknown('leader changed while proposing'));
    const res = await client.write(points(4));
    expect(res.accepted).toBe(4);
    expect(cluster.node('n0').requests.length).toBe(1);
    expect(cluster.node('n1').samples.length).toBe(4);
  });

  it('a node that stops answering gets part of the deadline, another node is tried, and later writes avoid it', async () => {
    cluster = await startFakeCluster({ nodes: 2, shards: 1, leaders: ['n0'] });
    for (const n of cluster.nodes) n.forwarding = true;
    let release!: () => void;
    cluster.node('n0').gate = new Promise<void>((r) => {
      release = r;
    });
    // No background refresh: the map keeps naming n0 as the leader throughout.
    client = await TidemarkClient.connect({
      endpoints: cluster.endpoints,
      deadlineMs: 4000,
      retry: { initialMs: 1 },
      shardMapRefreshMs: 0,
    });
    try {
      expect((await client.write(points(4))).accepted).toBe(4);
      expect(cluster.node('n0').requests.length).toBe(1);
      // The next writes go to n1 at once (it forwards), instead of waiting on n0 again.
      for (let i = 0; i < 3; i++) {
        expect((await client.write(points(2, 'cpu.next', 1_800_000_000_000 + i * 10))).accepted).toBe(2);
      }
      expect(cluster.node('n0').requests.length).toBe(1);
      expect(cluster.node('n1').samples.length).toBe(4 + 6);
    } finally {
      release();
    }
  });

  it('stops retrying at the deadline with the last error', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    const node = cluster.nodes[0]!;
    for (let i = 0; i < 1000; i++) {
      node.failures.push(new TidemarkError('UNAVAILABLE', `no_leader_${i}`, 'no leader yet'));
    }
    client = await TidemarkClient.connect({
      endpoints: cluster.endpoints,
      deadlineMs: 300,
      retry: { initialMs: 10, maxMs: 40, maxAttempts: 1000 },
    });
    const err = await rejection(client.write(points(3)));
    expect(err.code).toBe('UNAVAILABLE');
    const attempts = node.requests.length;
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThan(1000);
    expect(err.reason).toMatch(/^no_leader_\d+$/);
  });

  it('stops after maxAttempts', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    const node = cluster.nodes[0]!;
    for (let i = 0; i < 5; i++) node.failures.push(resourceExhausted('busy', 'busy', 1));
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints, retry: { maxAttempts: 3 } });
    const err = await rejection(client.write(points(1)));
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(node.requests.length).toBe(3);
  });

  it('waits the RESOURCE_EXHAUSTED retry hint before retrying', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    const node = cluster.nodes[0]!;
    node.failures.push(resourceExhausted('ingest_queue_full', 'too many writes', 250));
    const sleeps: number[] = [];
    client = await TidemarkClient.connect({
      endpoints: cluster.endpoints,
      random: () => 0, // no jitter: the only wait is the server's hint
      sleep: (ms) => {
        sleeps.push(ms);
        return new Promise((r) => setTimeout(r, ms));
      },
    });
    expect((await client.write(points(2))).accepted).toBe(2);
    expect(sleeps).toEqual([250]);
    expect(node.writeTimes.length).toBe(2);
    expect(node.writeTimes[1]! - node.writeTimes[0]!).toBeGreaterThanOrEqual(240);
  });

  it('backs off exponentially with full jitter', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    const node = cluster.nodes[0]!;
    for (let i = 0; i < 4; i++) node.failures.push(new TidemarkError('UNAVAILABLE', 'x', 'down'));
    const sleeps: number[] = [];
    client = await TidemarkClient.connect({
      endpoints: cluster.endpoints,
      retry: { initialMs: 10, maxMs: 40, maxAttempts: 10 },
      random: () => 0.5,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    expect((await client.write(points(1))).accepted).toBe(1);
    expect(sleeps).toEqual([5, 10, 20, 20]);
  });

  it('does not retry INVALID_ARGUMENT from the server', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    const node = cluster.nodes[0]!;
    node.failures.push(invalidArgument('batch_too_large', 'batch', 'batch: too many samples'));
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    const err = await rejection(client.write(points(1)));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.field).toBe('batch');
    expect(node.requests.length).toBe(1);
  });

  it('validates locally, names the field and sends nothing', async () => {
    cluster = await startFakeCluster({ nodes: 2, shards: 4 });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    const ok = points(3);
    const cases: [unknown, string, string][] = [
      [[ok[0], { ...ok[1], metric: '' }], 'points[1].metric', 'metric_empty'],
      [[{ ...ok[0], tags: { host: 'a\nb' } }], 'points[0].tags.host', 'tag_value_invalid'],
      [[{ ...ok[0], tags: { __name__: 'x' } }], 'points[0].tags.__name__', 'tag_name_reserved'],
      [[ok[0], ok[1], { ...ok[2], timestamp: 1.5 }], 'points[2].timestamp', 'timestamp_invalid'],
      [[{ ...ok[0], value: '3' }], 'points[0].value', 'value_invalid'],
      [[{ series: { metric: 'm' }, timestamps: [1, 2], values: [1] }], 'batch[0].values', 'length_mismatch'],
      [
        { series: { metric: 'm' }, timestamps: [1, -2], values: [1, 2] },
        'timestamps[1]',
        'timestamp_out_of_range',
      ],
      [
        { series: { metric: 'bad metric' }, timestamps: [], values: [] },
        'series.metric',
        'metric_name_invalid',
      ],
    ];
    for (const [input, field, reason] of cases) {
      const err = await rejection(client.write(input as Point[]));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.field, reason).toBe(field);
      expect(err.reason).toBe(reason);
      expect(err.message).toContain(field);
    }
    expect(requests(cluster)).toBe(0);
  });

  it('falls back to any endpoint while the shard map is unknown', async () => {
    cluster = await startFakeCluster({ nodes: 2, shards: 4 });
    for (const n of cluster.nodes) {
      n.forwarding = true;
      n.shardMapError = new TidemarkError('FAILED_PRECONDITION', 'unimplemented', 'no shard map here');
    }
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    expect((await client.write(points(10))).accepted).toBe(10);
    expect(requests(cluster)).toBe(1);
    await expect(client.shardMap()).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
  });

  it('fetches the shard map on the first write when connect could not, and routes by it from then on', async () => {
    cluster = await startFakeCluster({ nodes: 3, shards: 3 });
    for (const n of cluster.nodes) {
      n.forwarding = true;
      n.shardMapError = new TidemarkError('UNAVAILABLE', 'starting', 'not ready yet');
    }
    // A long refresh period: only the write path can load the map in this test.
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints, shardMapRefreshMs: 3_600_000 });
    for (const n of cluster.nodes) n.shardMapError = undefined; // the cluster is up now
    const calls = () => cluster!.nodes.reduce((k, n) => k + n.shardMapCalls, 0);
    const before = calls();
    expect((await client.write(points(30))).accepted).toBe(30); // to any node, forwarded
    await waitFor(() => calls() > before);
    expect(await client.shardMap()).toBeDefined(); // fetched by the write path
    for (const n of cluster.nodes) n.samples.length = 0;
    expect((await client.write(points(30))).accepted).toBe(30);
    for (const n of cluster.nodes) {
      for (const x of n.samples) expect(cluster.leaders[x.shard]).toBe(n.id);
    }
  });

  it('connects even when no endpoint answers, and fails writes within the deadline', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    const address = cluster.endpoints[0]!;
    await cluster.stop();
    cluster = undefined;
    client = await TidemarkClient.connect({ endpoints: [address], deadlineMs: 200, retry: { initialMs: 5 } });
    const err = await rejection(client.write(points(1)));
    expect(['UNAVAILABLE', 'DEADLINE_EXCEEDED']).toContain(err.code);
  });

  it('refuses bad options and calls after close', async () => {
    await expect(TidemarkClient.connect({ endpoints: [] })).rejects.toMatchObject({ field: 'endpoints' });
    await expect(TidemarkClient.connect({ endpoints: ['x:1'], deadlineMs: 0 })).rejects.toMatchObject({
      field: 'deadlineMs',
    });
    await expect(
      TidemarkClient.connect({ endpoints: ['x:1'], retry: { maxAttempts: 0 } }),
    ).rejects.toMatchObject({ field: 'retry.maxAttempts' });
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    const c = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    await c.close();
    await c.close();
    expect((await rejection(c.write(points(1)))).code).toBe('CLOSED');
  });
});

describe('TidemarkClient.query and status', () => {
  it('streams the matching series', async () => {
    cluster = await startFakeCluster({ nodes: 2, shards: 4 });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    await client.write(points(46, 'cpu.load', 1000));
    const got = [];
    for await (const s of client.query({
      metric: 'cpu.load',
      matchers: [{ name: 'dc', op: '=', value: 'east' }],
      start: 1000,
      end: 1019,
    })) {
      got.push(s);
    }
    expect(got.length).toBe(10);
    for (const s of got) {
      expect(s.metric).toBe('cpu.load');
      expect(s.tags.dc).toBe('east');
      expect(s.timestamps.length).toBe(s.values.length);
      expect(s.timestamps.every((t) => t >= 1000 && t <= 1019)).toBe(true);
    }
    expect(got.reduce((n, s) => n + s.timestamps.length, 0)).toBe(10);

    // Leaving the loop early is fine.
    let first: unknown;
    for await (const s of client.query({ metric: 'cpu.load', start: 0, end: 5000 })) {
      first = s;
      break;
    }
    expect(first).toBeDefined();
  });

  it('validates the query locally', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    expect(() => client!.query({ metric: '', start: 0, end: 1 })).toThrow(/metric/);
    expect(() => client!.query({ metric: 'm', start: 5, end: 1 })).toThrow(/start/);
    expect(() =>
      client!.query({ metric: 'm', start: 0, end: 1, matchers: [{ name: 'a', op: '~' as '=', value: '' }] }),
    ).toThrow(/matchers\[0\]/);
  });

  it('reports a node status and the shard map', async () => {
    cluster = await startFakeCluster({ nodes: 3, shards: 3 });
    client = await TidemarkClient.connect({ endpoints: [cluster.endpoints[0]!] });
    const map = (await client.shardMap())!;
    expect(map.shardCount).toBe(3);
    expect(map.nodes).toEqual(Object.fromEntries(cluster.nodes.map((n) => [n.id, n.address])));
    const st = await client.status('n2');
    expect(st.nodeId).toBe('n2');
    expect(st.replicas.map((r) => r.role)).toEqual(['follower', 'follower', 'leader']);
    expect(['n0', 'n1', 'n2']).toContain((await client.status()).nodeId);
  });
});

describe('mergeShardMaps', () => {
  const map = (shards: [string, number][], nodes: Record<string, string> = { a: 'A', b: 'B', c: 'C' }) => ({
    version: 0,
    shardCount: shards.length,
    shards: shards.map(([leader, term], shard) => ({ shard, replicas: ['a', 'b', 'c'], leader, term })),
    nodes,
  });

  it('keeps a shard whose answer is from an older term, or names no leader in the same term', () => {
    const current = map([
      ['b', 5],
      ['c', 7],
      ['a', 3],
    ]);
    // A node that was isolated still names itself (a) at older terms; shard 2 moved on.
    const stale = map([
      ['a', 4],
      ['', 7],
      ['b', 4],
    ]);
    expect(mergeShardMaps(current, stale).shards.map((s) => [s.leader, s.term])).toEqual([
      ['b', 5],
      ['c', 7],
      ['b', 4],
    ]);
  });

  it('takes a newer answer as is, and a map of another shard count whole', () => {
    const current = map([['b', 5]]);
    const newer = map([['', 6]]);
    expect(mergeShardMaps(current, newer)).toBe(newer);
    const other = map([
      ['a', 1],
      ['a', 1],
    ]);
    expect(mergeShardMaps(current, other)).toBe(other);
  });
});
