/**
 * A node that missed compacted log entries catches up by installing a store image fetched from a peer
 * over gRPC (StoreImageService on the peer port).
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { SampleBatch } from '../../src/storage/store.js';
import { NodeCluster, waitFor } from './fixtures/node-cluster.js';

function batch(base: number, n: number): SampleBatch {
  const series = [0, 1, 2, 3].map((h) => ({ metric: 'snap', tags: { host: `h${h}` } }));
  const b: SampleBatch = {
    series,
    seriesRef: new Uint32Array(n),
    timestamps: new Float64Array(n),
    values: new Float64Array(n),
    length: n,
  };
  for (let i = 0; i < n; i++) {
    b.seriesRef[i] = i % 4;
    b.timestamps[i] = base + i;
    b.values[i] = i;
  }
  return b;
}

describe('TidemarkNode: snapshot install over gRPC', () => {
  const cluster = new NodeCluster(['a', 'b', 'c'], 2);
  const deps = { driver: { compactThreshold: 20 }, checkpointIntervalMs: 100, balancer: false as const };
  afterAll(() => cluster.close());

  it('a restarted node behind the compaction point installs an image from a peer', async () => {
    await cluster.start(deps);
    await cluster.ready();
    const c = cluster.node('c');
    const behind = [...c.replicas.values()].map((r) => r.status().lastIndex);
    await c.close();
    cluster.nodes.delete('c');

    const a = cluster.node('a');
    let written = 0;
    let base = 1_000_000;
    await waitFor(
      async () => {
        const r = await a.write(batch(base, 40));
        written += r.accepted;
        base += 40;
        return ['a', 'b'].every((id) =>
          [...cluster.node(id).replicas.values()].every((r, i) => r.status().firstIndex > behind[i]! + 1),
        );
      },
      'log compaction past the stopped node',
      60_000,
      20,
    );

    const c2 = await cluster.startNode('c', deps);
    await waitFor(
      async () => {
        const got = await c2.select({ metric: 'snap' });
        return got.reduce((n, s) => n + s.timestamps.length, 0) === written;
      },
      'the restarted node to serve every sample',
      60_000,
      100,
    );
    // Its logs start past where it stopped: the gap was filled by a snapshot, not by log entries.
    for (const [i, r] of [...c2.replicas.values()].entries()) {
      expect(r.status().firstIndex).toBeGreaterThan(behind[i]! + 1);
    }
  });
});
