/**
 * Retention set through the cluster: a policy entry in every shard's Raft log, applied by every replica at
 * the same index (and so kept across restarts and carried by snapshots); each replica's retention pass then
 * drops what is older than now - retention. Bad values are refused and change nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Series } from '../../src/model/index.js';
import type { SampleBatch } from '../../src/storage/store.js';
import { NodeCluster, waitFor } from './fixtures/node-cluster.js';

const HOUR = 3_600_000;
const SERIES: Series[] = Array.from({ length: 12 }, (_, i) => ({ metric: 'rt', tags: { host: `h${i}` } }));

function batchAt(t: number): SampleBatch {
  return {
    series: SERIES,
    seriesRef: Uint32Array.from(SERIES, (_, i) => i),
    timestamps: new Float64Array(SERIES.length).fill(t),
    values: new Float64Array(SERIES.length).fill(1),
    length: SERIES.length,
  };
}

describe('setRetention', () => {
  const cluster = new NodeCluster(['a', 'b', 'c'], 4);
  const deps = { retentionIntervalMs: 100 };
  beforeAll(async () => {
    await cluster.start(deps);
    await cluster.ready();
  });
  afterAll(() => cluster.close());

  const localCount = async (id: string): Promise<number> => {
    let n = 0;
    for (const r of cluster.node(id).replicas.values()) {
      for (const s of await r.read({ metric: 'rt' }, { stale: true })) n += s.toArrays().count;
    }
    return n;
  };

  it('replicates the policy to every replica, which drops what is older; it survives a restart', async () => {
    const now = Date.now();
    for (const t of [now - 10 * HOUR, now - 9 * HOUR, now - 60_000, now - 1000]) {
      expect((await cluster.node('b').write(batchAt(t))).rejected).toEqual([]);
    }
    // Every replica holds 2 recent + 2 old samples of each series it hosts (R = 3 of 3: all of them).
    for (const id of cluster.ids)
      await waitFor(async () => (await localCount(id)) === 4 * SERIES.length, `${id} full`);

    await expect(cluster.node('a').setRetention(-1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await cluster.node('a').setRetention(2 * HOUR)).toEqual([0, 1, 2, 3]);
    for (const id of cluster.ids) {
      await waitFor(
        async () => (await localCount(id)) === 2 * SERIES.length,
        `${id} dropped the old samples`,
      );
      expect(
        cluster
          .node(id)
          .status()
          .replicas.every((r) => r.retentionMs === 2 * HOUR),
      ).toBe(true);
    }
    // A sample older than the cutoff is refused now; a recent one is still accepted.
    const late = await cluster.node('c').write(batchAt(now - 8 * HOUR));
    expect(late.rejected.length).toBe(SERIES.length);
    expect(new Set(late.rejected.map((r) => r.reason))).toEqual(new Set(['out_of_retention']));

    // The policy lives in each shard's replicated state: a restarted node still applies it.
    await cluster.node('c').close();
    cluster.nodes.delete('c');
    await cluster.startNode('c', deps);
    await cluster.ready();
    expect(
      cluster
        .node('c')
        .status()
        .replicas.every((r) => r.retentionMs === 2 * HOUR),
    ).toBe(true);
    expect(await localCount('c')).toBe(2 * SERIES.length);

    // 0 turns retention off again.
    await cluster.node('c').setRetention(0);
    for (const id of cluster.ids) {
      await waitFor(
        () =>
          cluster
            .node(id)
            .status()
            .replicas.every((r) => r.retentionMs === 0),
        `${id} off`,
      );
    }
  }, 120_000);
});
