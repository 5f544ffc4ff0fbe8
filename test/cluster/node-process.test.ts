/**
 * Three real node processes (`tidemark start`): write through one node's gRPC Write, read through another's
 * Query; kill -9 a shard leader → writes to that shard succeed again and no acknowledged sample is lost;
 * restart it → it catches up; SIGTERM → each node exits 0.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { WriteRequest } from '../../src/gen/tidemark/v1/client_pb.js';
import { type Series, seriesId, shardOf } from '../../src/model/index.js';
import { waitFor } from './fixtures/node-cluster.js';
import { type Client, ProcessCluster } from './fixtures/node-process.js';

const SHARDS = 4;
const IDS = ['a', 'b', 'c'];

function seriesOnShard(shard: number, metric: string): Series {
  for (let i = 0; ; i++) {
    const s = { metric, tags: { host: `h${i}` } };
    if (shardOf(seriesId(s), SHARDS) === shard) return s;
  }
}

/** What we were told is stored: series key → timestamps. */
class Acked {
  readonly ts = new Map<string, Set<number>>();
  add(host: string, timestamps: number[]): void {
    const set = this.ts.get(host) ?? new Set<number>();
    for (const t of timestamps) set.add(t);
    this.ts.set(host, set);
  }
}

function writeReq(list: { s: Series; ts: number[] }[]): WriteRequest {
  return {
    batch: {
      series: list.map(({ s, ts }) => ({
        series: { metric: s.metric, tags: s.tags },
        timestamps: ts.map((t) => BigInt(t)),
        values: ts.map((t) => t / 10),
      })),
    },
  } as WriteRequest;
}

async function queryAll(c: Client, metric: string): Promise<Map<string, Set<number>>> {
  const out = new Map<string, Set<number>>();
  for await (const m of c.query({ metric }, { timeoutMs: 10_000 })) {
    for (const s of m.series) {
      const set = out.get(s.series!.tags.host!) ?? new Set<number>();
      for (const t of s.timestamps) set.add(Number(t));
      out.set(s.series!.tags.host!, set);
    }
  }
  return out;
}

function missing(acked: Acked, got: Map<string, Set<number>>): number {
  let n = 0;
  for (const [host, ts] of acked.ts) for (const t of ts) if (!got.get(host)?.has(t)) n++;
  return n;
}

async function ready(c: Client): Promise<boolean> {
  const s = await c.status({}, { timeoutMs: 2000 });
  return s.replicas.length === SHARDS && s.replicas.every((r) => r.leader !== '' && r.applied >= r.commit);
}

describe('three tidemark processes', () => {
  const cluster = new ProcessCluster(IDS, [`--shards=${SHARDS}`]);
  afterAll(() => cluster.close());

  it('replicates, fails over after kill -9, catches up after restart, stops on SIGTERM', async () => {
    await cluster.init();
    for (const id of IDS) cluster.start(id);
    for (const id of IDS) {
      await waitFor(
        () => ready(cluster.client(id)),
        `node ${id} ready (${cluster.output.get(id)?.join('')})`,
        60_000,
        200,
      );
    }
    const list = Array.from({ length: SHARDS }, (_, s) => seriesOnShard(s, 'proc'));
    const acked = new Acked();

    // Write through a, read through b.
    const base = 1_000_000;
    const ts0 = Array.from({ length: 20 }, (_, i) => base + i);
    const r0 = await cluster
      .client('a')
      .write(writeReq(list.map((s) => ({ s, ts: ts0 }))), { timeoutMs: 15_000 });
    expect(r0.accepted).toBe(BigInt(20 * SHARDS));
    expect(r0.rejected).toEqual([]);
    for (const s of list) acked.add(s.tags.host!, ts0);
    expect(missing(acked, await queryAll(cluster.client('b'), 'proc'))).toBe(0);

    // Kill -9 the leader of shard 0.
    const target = list[0]!;
    const map = await cluster.client('a').shardMap({}, { timeoutMs: 5000 });
    const leader = await waitFor(async () => {
      const st = await cluster.client('a').status({}, { timeoutMs: 2000 });
      return st.replicas.find((r) => r.shard === 0)?.leader || undefined;
    }, 'a leader of shard 0');
    expect(map.shards[0]!.replicas).toContain(leader);
    await cluster.kill9(leader);
    const survivor = IDS.find((id) => id !== leader)!;

    // Writes to shard 0 succeed again through a survivor within a few seconds.
    const killedAt = Date.now();
    let t = base + 1000;
    await waitFor(
      async () => {
        const ts = [t++];
        const r = await cluster.client(survivor).write(writeReq([{ s: target, ts }]), { timeoutMs: 5000 });
        if (r.accepted !== 1n) return false;
        acked.add(target.tags.host!, ts);
        return true;
      },
      'a write to shard 0 after kill -9 of its leader',
      30_000,
      100,
    );
    const failoverMs = Date.now() - killedAt;
    for (let i = 0; i < 10; i++) {
      const ts = [t++, t++];
      const r = await cluster
        .client(survivor)
        .write(writeReq(list.map((s) => ({ s, ts }))), { timeoutMs: 15_000 });
      expect(r.accepted).toBe(BigInt(2 * SHARDS));
      for (const s of list) acked.add(s.tags.host!, ts);
    }
    // No acknowledged sample lost.
    expect(missing(acked, await queryAll(cluster.client(survivor), 'proc'))).toBe(0);

    // Restart the killed node: it catches up (its linearizable reads answer from its own replicas).
    cluster.start(leader);
    await waitFor(() => ready(cluster.client(leader)), `restarted ${leader} ready`, 60_000, 200);
    await waitFor(
      async () => missing(acked, await queryAll(cluster.client(leader), 'proc')) === 0,
      `restarted ${leader} caught up`,
      60_000,
      200,
    );

    // Graceful stop.
    const codes = await Promise.all(IDS.map((id) => cluster.stop(id)));
    expect(codes).toEqual([0, 0, 0]);
    console.log(`failover: first write to shard 0 acknowledged ${failoverMs} ms after kill -9`);
  }, 150_000);
});
