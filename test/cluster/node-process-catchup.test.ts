/**
 * Catch-up across real processes (`tidemark start`): a node stopped while the others take writes comes
 * back (1) by the Raft log when the leaders still hold the entries it missed and (2) by a streamed store
 * snapshot when the leaders compacted past it. Each time it must serve every acknowledged sample from its
 * own replicas. (A node whose data directory was emptied rejoins as a new incarnation instead:
 * node-process-rejoin.test.ts.) Status' first_index tells which
 * way a replica caught up: a snapshot moves it past where the replica stopped.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { WriteRequest } from '../../src/gen/tidemark/v1/client_pb.js';
import { type Series, seriesId, shardOf } from '../../src/model/index.js';
import { waitFor } from './fixtures/node-cluster.js';
import { type Client, ProcessCluster } from './fixtures/node-process.js';

const SHARDS = 2;
const IDS = ['a', 'b', 'c'];
const COMPACT = 60;

function seriesOnShard(shard: number): Series {
  for (let i = 0; ; i++) {
    const s = { metric: 'cu', tags: { host: `h${i}` } };
    if (shardOf(seriesId(s), SHARDS) === shard) return s;
  }
}
const SERIES = Array.from({ length: SHARDS }, (_, s) => seriesOnShard(s));

function writeReq(ts: number[]): WriteRequest {
  return {
    batch: {
      series: SERIES.map((s) => ({
        series: { metric: s.metric, tags: s.tags },
        timestamps: ts.map((t) => BigInt(t)),
        values: ts.map((t) => t / 4),
      })),
    },
  } as WriteRequest;
}

async function count(c: Client): Promise<number> {
  let n = 0;
  for await (const m of c.query({ metric: 'cu' }, { timeoutMs: 10_000 })) {
    for (const s of m.series) {
      for (let i = 0; i < s.timestamps.length; i++) {
        // Exact values, not just presence.
        if (s.values[i] !== Number(s.timestamps[i]) / 4) throw new Error(`wrong value at ${s.timestamps[i]}`);
      }
      n += s.timestamps.length;
    }
  }
  return n;
}

async function replicaIndexes(c: Client): Promise<{ first: number; last: number; applied: number }[]> {
  const st = await c.status({}, { timeoutMs: 2000 });
  return [...st.replicas]
    .sort((x, y) => x.shard - y.shard)
    .map((r) => ({ first: Number(r.firstIndex), last: Number(r.lastIndex), applied: Number(r.applied) }));
}

async function ready(c: Client): Promise<boolean> {
  const s = await c.status({}, { timeoutMs: 2000 });
  return s.replicas.length === SHARDS && s.replicas.every((r) => r.leader !== '' && r.applied >= r.commit);
}

describe('a stopped node catches up (three processes)', () => {
  const cluster = new ProcessCluster(IDS, [
    `--shards=${SHARDS}`,
    `--raft-compact-entries=${COMPACT}`,
    '--checkpoint-interval-ms=100',
    '--store-sync-interval-ms=50',
  ]);
  afterAll(() => cluster.close());

  it('by log, and by snapshot after compaction', async () => {
    await cluster.init();
    for (const id of IDS) cluster.start(id);
    for (const id of IDS) {
      await waitFor(() => ready(cluster.client(id)), `node ${id} ready`, 60_000, 200);
    }
    // Leadership may sit anywhere; writes go through a or b, which stay up.
    let t = 1_000_000;
    let acked = 0;
    const write = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const ts = [t++, t++];
        const r = await cluster.client(i % 2 === 0 ? 'a' : 'b').write(writeReq(ts), { timeoutMs: 15_000 });
        expect(r.rejected).toEqual([]);
        acked += Number(r.accepted);
      }
    };
    const caughtUp = async (what: string) => {
      await waitFor(() => ready(cluster.client('c')), `c ready (${what})`, 60_000, 200).catch((err) => {
        throw new Error(`${String(err)}\nnode c output:\n${cluster.output.get('c')?.join('')}`);
      });
      await waitFor(
        async () => (await count(cluster.client('c'))) === acked,
        `c serves all (${what})`,
        60_000,
        200,
      );
    };
    await write(10);

    // 1. By log: a few writes while c is down, fewer than the compaction threshold.
    expect(await cluster.stop('c')).toBe(0);
    const before1 = await replicaIndexes(cluster.client('a'));
    await write(5);
    const leaders1 = await replicaIndexes(cluster.client('a'));
    cluster.start('c');
    await caughtUp('by log');
    const after1 = await replicaIndexes(cluster.client('c'));
    for (let s = 0; s < SHARDS; s++) {
      // The leaders had not compacted past c, and c did not jump: it received the entries themselves.
      expect(leaders1[s]!.first).toBeLessThanOrEqual(before1[s]!.last + 1);
      expect(after1[s]!.first).toBeLessThanOrEqual(before1[s]!.last + 1);
    }

    // 2. By snapshot: write until both a and b compacted every shard's log past where c stopped.
    expect(await cluster.stop('c')).toBe(0);
    const behind = await replicaIndexes(cluster.client('a'));
    await waitFor(
      async () => {
        await write(10);
        const views = await Promise.all(['a', 'b'].map((id) => replicaIndexes(cluster.client(id))));
        return views.every((v) => v.every((r, s) => r.first > behind[s]!.last + 1));
      },
      'log compaction past the stopped node',
      90_000,
      0,
    );
    cluster.start('c');
    await caughtUp('by snapshot');
    const after2 = await replicaIndexes(cluster.client('c'));
    for (let s = 0; s < SHARDS; s++) expect(after2[s]!.first).toBeGreaterThan(behind[s]!.last + 1);

    expect(await Promise.all(IDS.map((id) => cluster.stop(id)))).toEqual([0, 0, 0]);
  }, 240_000);
});
