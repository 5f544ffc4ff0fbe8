/**
 * Fake Tidemark nodes for the client tests: real gRPC servers on 127.0.0.1 (port 0) running
 * TidemarkService with scripted behavior. Each node's ShardMap says which node leads which shard; Write
 * records what it received, answers NOT_LEADER (with the leader as hint) for shards it does not lead unless
 * `forwarding` is on, and first throws any errors queued in `failures`.
 */
import type * as grpc from '@grpc/grpc-js';
import { notLeader, type TidemarkError } from '../../src/errors/index.js';
import { TidemarkService, type WriteRequest } from '../../src/gen/tidemark/v1/client_pb.js';
import { makeSeries, seriesId, shardOf } from '../../src/model/index.js';
import { addService, bindServer, createServer, shutdownServer } from '../../src/transport/grpc-adapter.js';

export interface ReceivedSample {
  metric: string;
  tags: Record<string, string>;
  shard: number;
  timestamp: number;
  value: number;
}

export interface FakeNode {
  readonly id: string;
  address: string;
  server: grpc.Server;
  /** Write requests received (including refused ones). */
  readonly requests: WriteRequest[];
  /** Samples stored (accepted writes only). */
  readonly samples: ReceivedSample[];
  /** Errors the next Write calls throw, in order. */
  readonly failures: TidemarkError[];
  /** Time (Date.now()) of each Write call. */
  readonly writeTimes: number[];
  /** Accept writes for any shard (a forwarding node) instead of answering NOT_LEADER. */
  forwarding: boolean;
  /** With `forwarding`: answer with the leader of each forwarded shard (WriteResponse.leaders). */
  hintForwarded: boolean;
  /** When set, Write waits for it before answering. */
  gate: Promise<void> | undefined;
  /** When set, ShardMap throws it. */
  shardMapError: TidemarkError | undefined;
  shardMapCalls: number;
  /** Samples with a timestamp below this are refused as `too_old` (reported in WriteResponse.rejected). */
  rejectBelow: number | undefined;
}

export class FakeCluster {
  readonly nodes: FakeNode[] = [];
  /** Node id leading each shard. */
  readonly leaders: string[];

  constructor(
    readonly shardCount: number,
    leaders: string[],
  ) {
    this.leaders = leaders;
  }

  get endpoints(): string[] {
    return this.nodes.map((n) => n.address);
  }

  node(id: string): FakeNode {
    return this.nodes.find((n) => n.id === id)!;
  }

  /** Every sample stored on any node. */
  stored(): ReceivedSample[] {
    return this.nodes.flatMap((n) => n.samples);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => shutdownServer(n.server, 200)));
  }
}

export function shardOfSeries(metric: string, tags: Record<string, string>, shardCount: number): number {
  return shardOf(seriesId(makeSeries(metric, tags)), shardCount);
}

/** Starts `nodeCount` nodes (ids n0, n1, ...); shard s is led by node s % nodeCount unless `leaders` says. */
export async function startFakeCluster(
  options: { nodes?: number; shards?: number; leaders?: string[]; credentials?: grpc.ServerCredentials } = {},
): Promise<FakeCluster> {
  const nodeCount = options.nodes ?? 3;
  const shards = options.shards ?? 8;
  const ids = Array.from({ length: nodeCount }, (_, i) => `n${i}`);
  const cluster = new FakeCluster(
    shards,
    options.leaders ?? Array.from({ length: shards }, (_, s) => ids[s % nodeCount]!),
  );
  for (const id of ids) {
    const node: FakeNode = {
      id,
      address: '',
      server: createServer(),
      requests: [],
      samples: [],
      failures: [],
      writeTimes: [],
      forwarding: false,
      hintForwarded: false,
      gate: undefined,
      shardMapError: undefined,
      shardMapCalls: 0,
      rejectBelow: undefined,
    };
    addService(node.server, TidemarkService, {
      write: async (req) => {
        node.requests.push(req);
        node.writeTimes.push(Date.now());
        if (node.gate !== undefined) await node.gate;
        const failure = node.failures.shift();
        if (failure !== undefined) throw failure;
        const got: ReceivedSample[] = [];
        const rejected: { seriesIndex: number; sampleIndex: number; reason: string }[] = [];
        const leaders = new Map<number, string>();
        for (const [seriesIndex, s] of (req.batch?.series ?? []).entries()) {
          const metric = s.series?.metric ?? '';
          const tags = { ...(s.series?.tags ?? {}) };
          const shard = shardOfSeries(metric, tags, shards);
          const leader = cluster.leaders[shard]!;
          if (leader !== id && !node.forwarding) throw notLeader(leader);
          // A forwarding node names the leader it forwarded to, as a real node does.
          if (leader !== id && node.hintForwarded) leaders.set(shard, leader);
          for (let i = 0; i < s.timestamps.length; i++) {
            if (node.rejectBelow !== undefined && Number(s.timestamps[i]) < node.rejectBelow) {
              rejected.push({ seriesIndex, sampleIndex: i, reason: 'too_old' });
              continue;
            }
            got.push({ metric, tags, shard, timestamp: Number(s.timestamps[i]), value: s.values[i]! });
          }
        }
        node.samples.push(...got);
        return {
          accepted: BigInt(got.length),
          rejected,
          leaders: [...leaders].map(([shard, leader]) => ({ shard, leader })),
        };
      },
      query: async function* (req) {
        const matching = cluster
          .stored()
          .filter(
            (x) =>
              x.metric === req.metric &&
              x.timestamp >= Number(req.startMs) &&
              x.timestamp <= Number(req.endMs) &&
              req.matchers.every((m) => m.type !== 1 || x.tags[m.name] === m.value),
          );
        const bySeries = new Map<string, ReceivedSample[]>();
        for (const x of matching) {
          const k = JSON.stringify([x.metric, Object.entries(x.tags).sort()]);
          bySeries.set(k, [...(bySeries.get(k) ?? []), x]);
        }
        // One response per series: the client sees several stream messages.
        for (const xs of bySeries.values()) {
          xs.sort((a, b) => a.timestamp - b.timestamp);
          yield {
            series: [
              {
                series: { metric: xs[0]!.metric, tags: xs[0]!.tags },
                timestamps: xs.map((x) => BigInt(x.timestamp)),
                values: xs.map((x) => x.value),
              },
            ],
          };
        }
      },
      transferLeader: async (req) => {
        if (req.to === '') throw notLeader(cluster.leaders[req.shard]);
        cluster.leaders[req.shard] = req.to;
        return { leader: req.to, term: 2n };
      },
      setRetention: async () => ({ shards: cluster.leaders.map((_, s) => s) }),
      shardMap: () => {
        node.shardMapCalls++;
        if (node.shardMapError !== undefined) throw node.shardMapError;
        return {
          shardCount: shards,
          shards: cluster.leaders.map((leader, shard) => ({
            shard,
            replicas: [leader, ...ids.filter((x) => x !== leader)],
            leader,
            term: 1n,
          })),
          nodes: cluster.nodes.map((n) => ({ id: n.id, clientAddress: n.address })),
        };
      },
      status: () => ({
        nodeId: id,
        replicas: cluster.leaders.map((leader, shard) => ({
          shard,
          role: leader === id ? 4 : 1,
          term: 1n,
          commit: 7n,
          applied: 7n,
          leader,
        })),
      }),
    });
    const port = await bindServer(node.server, '127.0.0.1:0', options.credentials);
    node.address = `127.0.0.1:${port}`;
    cluster.nodes.push(node);
  }
  return cluster;
}
