/**
 * A node whose data directory is lost (kill -9, then the directory is emptied, as when a pod gets a new
 * volume) rejoins as a new incarnation (src/cluster/member.ts): its peers add the new member as a learner,
 * stream it a store snapshot, remove the lost member and promote the new one. Proof that it really holds
 * the data and votes again: afterwards another node is stopped, and the remaining pair (one of them the
 * rebuilt node) must still commit writes and serve every acknowledged sample.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { WriteRequest } from '../../src/gen/tidemark/v1/client_pb.js';
import { type Series, seriesId, shardOf } from '../../src/model/index.js';
import { waitFor } from './fixtures/node-cluster.js';
import { type Client, ProcessCluster } from './fixtures/node-process.js';

const SHARDS = 2;
const IDS = ['a', 'b', 'c'];

function seriesOnShard(shard: number): Series {
  for (let i = 0; ; i++) {
    const s = { metric: 'rj', tags: { host: `h${i}` } };
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
        values: ts.map((t) => t / 8),
      })),
    },
  } as WriteRequest;
}

async function count(c: Client): Promise<number> {
  let n = 0;
  for await (const m of c.query({ metric: 'rj' }, { timeoutMs: 10_000 })) {
    for (const s of m.series) {
      for (let i = 0; i < s.timestamps.length; i++) {
        if (s.values[i] !== Number(s.timestamps[i]) / 8) throw new Error(`wrong value at ${s.timestamps[i]}`);
      }
      n += s.timestamps.length;
    }
  }
  return n;
}

async function ready(c: Client): Promise<boolean> {
  const s = await c.status({}, { timeoutMs: 2000 });
  return s.replicas.length === SHARDS && s.replicas.every((r) => r.leader !== '' && r.applied >= r.commit);
}

describe('a node with an emptied data directory (three processes)', () => {
  const cluster = new ProcessCluster(IDS, [
    `--shards=${SHARDS}`,
    '--raft-compact-entries=40',
    '--checkpoint-interval-ms=100',
    '--store-sync-interval-ms=50',
  ]);
  afterAll(() => cluster.close());

  it('rejoins as a new member, is rebuilt by snapshot, and then counts toward the quorum', async () => {
    await cluster.init();
    for (const id of IDS) cluster.start(id);
    for (const id of IDS) await waitFor(() => ready(cluster.client(id)), `node ${id} ready`, 60_000, 200);
    const founding = JSON.parse(readFileSync(join(cluster.root, 'c', 'identity.json'), 'utf8'));
    expect(founding).toMatchObject({ format: 1, nodeId: 'c', incarnation: '' });

    let t = 2_000_000;
    let acked = 0;
    const write = async (via: string[], n: number) => {
      for (let i = 0; i < n; i++) {
        const ts = [t++, t++, t++];
        const r = await cluster.client(via[i % via.length]!).write(writeReq(ts), { timeoutMs: 20_000 });
        expect(r.rejected).toEqual([]);
        acked += Number(r.accepted);
      }
    };
    await write(['a', 'b', 'c'], 30);

    // c loses everything, while a and b go on taking writes (and compact past anything c could replay).
    await cluster.kill9('c');
    rmSync(join(cluster.root, 'c'), { recursive: true, force: true });
    await write(['a', 'b'], 60);
    cluster.start('c');
    await waitFor(() => ready(cluster.client('c')), 'c ready after the wipe', 90_000, 200).catch((err) => {
      throw new Error(`${String(err)}\nnode c output:\n${cluster.output.get('c')?.join('')}`);
    });
    const identity = JSON.parse(readFileSync(join(cluster.root, 'c', 'identity.json'), 'utf8'));
    expect(identity.incarnation).toMatch(/^[0-9a-f]{8}$/);
    // The lost member is gone and the new one votes: every shard's voters are a, b and c's new member.
    const member = `c~${identity.incarnation}`;
    await waitFor(
      async () => {
        const st = await cluster.client('a').status({}, { timeoutMs: 2000 });
        return st.replicas.every(
          (r) => [...r.voters].sort().join() === ['a', 'b', member].join() && r.learners.length === 0,
        );
      },
      'c promoted to voter in every shard, its lost member removed',
      90_000,
      200,
    ).catch((err) => {
      throw new Error(`${String(err)}\nnode a output:\n${cluster.output.get('a')?.join('')}`);
    });
    await write(['a', 'b', 'c'], 10);

    // Stop a: b and c must form the quorum of every shard, so c holds the data and votes.
    expect(await cluster.stop('a')).toBe(0);
    await waitFor(() => ready(cluster.client('c')), 'c ready without a', 60_000, 200);
    await write(['b', 'c'], 10);
    await waitFor(
      async () => (await count(cluster.client('c'))) === acked,
      'c serves every sample',
      60_000,
      200,
    );
    expect(await count(cluster.client('b'))).toBe(acked);
    expect(await Promise.all(['b', 'c'].map((id) => cluster.stop(id)))).toEqual([0, 0]);
  }, 300_000);
});
