/**
 * Per-node query batches against real nodes: four nodes, 8 shards, R = 2, so every node holds only some
 * shards and reaches the others through ShardQueryService on their leaders. A query through a node sends
 * one ExecuteBatch per leader node of the shards it lacks (no per-shard Execute) and equals the reference;
 * two shards it lacks are led by the same node (one batch), and a failure of one of them is that shard's
 * alone: with partial=true the results hold every other shard and missingShards names exactly it (code,
 * reason across the wire), without partial the query fails with its error; a NOT_LEADER answered for one
 * shard of a batch is retried for that shard alone.
 * Seeded: TIDEMARK_SEED=<n> npx vitest run test/query/node-batch.test.ts replays.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveNodeConfig } from '../../src/cluster/config.js';
import { TidemarkNode } from '../../src/cluster/node.js';
import type { ShardReplica } from '../../src/cluster/replica.js';
import { isTidemarkError, notLeader, TidemarkError } from '../../src/errors/index.js';
import { seriesId, shardOf } from '../../src/model/index.js';
import type { QuerySpec } from '../../src/query/index.js';
import { Rng } from '../../src/util/random.js';
import { allocatePorts, peersFlag, waitFor } from '../cluster/fixtures/node-cluster.js';
import { batchOf } from './helpers.js';
import { BASE, compareToReference, plain, randomData, randomSpec, SPAN } from './random.js';
import { type RefSeries, referenceQuery } from './reference.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 20261122);
const IDS = ['a', 'b', 'c', 'd'];
const SHARDS = 8;

function replay(seed: number): string {
  return `seed ${seed} (rerun: TIDEMARK_SEED=${seed} npx vitest run test/query/node-batch.test.ts)`;
}

describe('per-node query batches: four nodes, 8 shards, R = 2', () => {
  const root = mkdtempSync(join(tmpdir(), 'tidemark-batch-'));
  const nodes = new Map<string, TidemarkNode>();
  const data: RefSeries[] = [];
  const node = (id: string) => nodes.get(id)!;
  const shardOfData = (d: RefSeries) => shardOf(seriesId(d.series), SHARDS);
  /** The coordinator, the node leading two shards it lacks, and those two shards. */
  let coord = '';
  let lead = '';
  let pair: [number, number] = [0, 0];

  const missing = (id: string) =>
    node(id)
      .shardMap()
      .shards.filter((s) => !s.replicas.includes(id))
      .map((s) => s.shard);

  /** Puts both shards of `pair` under `lead`, their preferred leader (and the batch's target). */
  async function placeLeaders(): Promise<void> {
    await waitFor(
      async () => {
        for (const shard of pair) {
          const holder = IDS.find((id) => node(id).replicas.get(shard)?.isLeader());
          if (holder === lead) continue;
          if (holder !== undefined) {
            await node(holder)
              .transferLeader(shard, lead)
              .catch(() => undefined);
          }
          return false;
        }
        return true;
      },
      'leaders placed',
      30_000,
      100,
    );
  }

  /**
   * The ExecuteBatch calls a query through `id` makes: one per target node of the shards it lacks (the
   * leader if it knows it, else the preferred leader).
   */
  function expectedBatches(id: string): number {
    const map = node(id).shardMap();
    return new Set(
      map.shards.filter((s) => !s.replicas.includes(id)).map((s) => s.leader || s.preferredLeader),
    ).size;
  }

  beforeAll(async () => {
    const ports = await allocatePorts(IDS);
    const configs = ports.map((p) =>
      resolveNodeConfig({
        nodeId: p.id,
        listen: { http: `127.0.0.1:${p.http}`, grpc: '127.0.0.1:0', peer: `127.0.0.1:${p.peer}` },
        peers: peersFlag(ports),
        shards: SHARDS,
        replication: 2,
        dataDir: join(root, p.id),
        // 50 ms ticks, 1 s elections: stable leaders on a loaded CI machine.
        raft: { tickMs: 50, electionTicks: 20, heartbeatTicks: 1 },
      }),
    );
    const started = await Promise.all(
      configs.map((c) =>
        TidemarkNode.start(c, { checkpointIntervalMs: 0, balancer: false, writeTimeoutMs: 30_000 }),
      ),
    );
    for (const n of started) nodes.set(n.status().nodeId, n);
    await waitFor(() => started.every((n) => n.readiness().ready), 'cluster readiness', 30_000);
    for (let k = 0; k < 5; k++) {
      // Several random datasets under their own metrics, so that every shard holds some series.
      for (const d of randomData(new Rng(SEED + k))) {
        data.push({ ...d, series: { metric: `${d.series.metric}.${k}`, tags: d.series.tags } });
      }
    }
    const r = await node('a').write(batchOf(data));
    expect(r.rejected).toEqual([]);
    // Placement is deterministic; find a node lacking two shards (holding data) with the same preferred
    // leader: one batch carries both.
    const preferred = (shard: number) => node('a').shardMap().shards[shard]!.preferredLeader;
    const withData = new Set(data.map(shardOfData));
    search: for (const x of IDS) {
      for (const l of IDS) {
        if (l === x) continue;
        const both = missing(x).filter((s) => preferred(s) === l && withData.has(s));
        if (both.length >= 2) {
          [coord, lead, pair] = [x, l, [both[0]!, both[1]!]];
          break search;
        }
      }
    }
    expect(coord).not.toBe('');
    await placeLeaders();
  }, 90_000);

  afterAll(async () => {
    await Promise.all([...nodes.values()].map((n) => n.close()));
    rmSync(root, { recursive: true, force: true });
  });

  function specFor(r: Rng) {
    const k = r.int(0, 2);
    const spec = randomSpec(r);
    return { ...spec, queries: spec.queries.map((q) => ({ ...q, metric: `${q.metric}.${k}` })) };
  }

  /** Replaces one replica's read barrier for the duration of `body`. */
  async function withBarrier<T>(
    replica: ShardReplica,
    barrier: ShardReplica['readBarrier'],
    body: () => Promise<T>,
  ): Promise<T> {
    const original = replica.readBarrier;
    replica.readBarrier = barrier;
    try {
      return await body();
    } finally {
      replica.readBarrier = original;
    }
  }

  it('sends one ExecuteBatch per leader node of the shards it lacks and equals the reference', async () => {
    const r = new Rng(SEED);
    try {
      for (let i = 0; i < 25; i++) {
        const via = node(i % 2 === 0 ? coord : IDS[r.int(0, IDS.length - 1)]!);
        const spec = specFor(r);
        const stale = r.chance(0.2);
        const before = { ...via.queryCalls };
        const want = expectedBatches(via.status().nodeId);
        const out = await via.query(spec, stale ? { stale: true } : {});
        expect(out.missingShards).toEqual([]);
        compareToReference(spec, plain(out.results), referenceQuery(data, spec));
        expect(via.queryCalls.executeBatch - before.executeBatch).toBe(want);
        expect(via.queryCalls.execute - before.execute).toBe(0);
      }
    } catch (err) {
      throw new Error(`${replay(SEED)}: ${String(err)}`, { cause: err });
    }
  }, 90_000);

  it('reports exactly the failed shard of a batch with partial=true, and its error without', async () => {
    await placeLeaders();
    const [failed, other] = pair;
    // The failing shard's replica on its leader fails as a corrupt store would; the other shard of the
    // same batch is fine.
    const corrupt = new TidemarkError(
      'DATA_CORRUPTION',
      'chunk_checksum',
      `shard ${failed}: checksum mismatch`,
    );
    const metrics = [...new Set(data.map((d) => d.series.metric))].sort();
    const spec: QuerySpec = {
      start: BASE - 60_000,
      end: BASE + SPAN,
      queries: metrics.map((metric) => ({ metric, aggregator: 'none' as const })),
    };
    const rest = data.filter((d) => shardOfData(d) !== failed);
    expect(rest.some((d) => shardOfData(d) === other)).toBe(true);
    const c = node(coord);
    await withBarrier(
      node(lead).replicas.get(failed)!,
      async () => {
        throw corrupt;
      },
      async () => {
        const before = { ...c.queryCalls };
        const want = expectedBatches(coord);
        const out = await c.query(spec, { partial: true });
        expect(out.missingShards).toEqual([
          { shard: failed, code: 'DATA_CORRUPTION', reason: 'chunk_checksum', message: corrupt.message },
        ]);
        compareToReference(spec, plain(out.results), referenceQuery(rest, spec));
        expect(c.queryCalls.executeBatch - before.executeBatch).toBe(want);
        expect(c.queryCalls.execute - before.execute).toBe(0);

        let err: unknown;
        await c.query(spec).catch((e: unknown) => {
          err = e;
        });
        expect(isTidemarkError(err, 'DATA_CORRUPTION')).toBe(true);
        expect((err as TidemarkError).reason).toBe('chunk_checksum');
      },
    );
  }, 60_000);

  it('retries a NOT_LEADER answered for one shard of a batch for that shard alone', async () => {
    await placeLeaders();
    const replica = node(lead).replicas.get(pair[1])!;
    const original = replica.readBarrier.bind(replica);
    let refused = 0;
    const r = new Rng(SEED + 1);
    const c = node(coord);
    await withBarrier(
      replica,
      async (opts) => {
        // The first barrier: refused with a hint, as a deposed leader answers.
        if (refused++ === 0) throw notLeader(coord, `node ${lead} does not lead shard ${pair[1]}`);
        return original(opts);
      },
      async () => {
        const spec = specFor(r);
        const before = { ...c.queryCalls };
        const want = expectedBatches(coord);
        const out = await c.query(spec);
        expect(out.missingShards).toEqual([]);
        compareToReference(spec, plain(out.results), referenceQuery(data, spec));
        // Refused once; the retry may go to the other replica, whose barrier forwards to the leader.
        expect(refused).toBeGreaterThanOrEqual(1);
        // The batches, then that shard alone with one Execute (the coordinator holds no replica of it).
        expect(c.queryCalls.executeBatch - before.executeBatch).toBe(want);
        expect(c.queryCalls.execute - before.execute).toBe(1);
      },
    );
  }, 60_000);

  it('refuses a hostile ExecuteBatch (repeated, out-of-range or too many shards, an undecodable query) with a typed error', async () => {
    const ctx = {
      deadline: Date.now() + 5000,
      signal: new AbortController().signal,
      metadata: undefined,
      peer: 'test',
      sendHeaders: () => {},
    } as unknown as Parameters<TidemarkNode['serveExecuteBatch']>[1];
    const query = new Uint8Array(0);
    const refusal = async (shards: number[], q: Uint8Array = query) => {
      try {
        await node(lead).serveExecuteBatch({ shards, query: q, stale: false } as never, ctx);
      } catch (err) {
        expect(isTidemarkError(err), String(err)).toBe(true);
        return err as TidemarkError;
      }
      throw new Error(`ExecuteBatch ${JSON.stringify(shards)} was not refused`);
    };
    for (const shards of [
      [pair[0], pair[0]],
      [SHARDS],
      [2 ** 32 - 1],
      Array.from({ length: SHARDS + 1 }, (_, i) => i),
    ]) {
      expect(await refusal(shards)).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'shards_invalid' });
    }
    const garbage = await refusal([pair[0]], Uint8Array.of(0xff, 0xff, 0xff));
    expect(['DATA_CORRUPTION', 'INVALID_ARGUMENT']).toContain(garbage.code);
    // The node keeps serving queries.
    const out = await node(coord).query(specFor(new Rng(SEED + 2)));
    expect(out.missingShards).toEqual([]);
  }, 60_000);
});
