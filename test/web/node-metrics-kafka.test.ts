/**
 * NodeMetrics families that the cluster test cannot feed without a Kafka broker or a retention schedule:
 * Kafka samples join `tidemark_ingest_samples_total{protocol="kafka"}` (read on scrape, so they never double
 * count), and retention passes count runs and drops per shard.
 */
import { describe, expect, it } from 'vitest';
import { NodeMetrics } from '../../src/cluster/node-metrics.js';
import type { ShardReplica } from '../../src/cluster/replica.js';

describe('NodeMetrics without a cluster', () => {
  it('reads Kafka samples on scrape and counts retention passes', async () => {
    let parts: { samples: number }[] | undefined;
    const m = new NodeMetrics({ replicas: () => new Map<number, ShardReplica>(), kafkaSamples: () => parts });
    m.samplesIngested.inc({ protocol: 'grpc' }, 3);
    expect(await m.text()).not.toContain('protocol="kafka"');
    parts = [{ samples: 5 }, { samples: 7 }];
    expect(await m.text()).toContain('tidemark_ingest_samples_total{protocol="kafka"} 12');
    parts = [{ samples: 6 }, { samples: 7 }];
    const text = await m.text();
    expect(text).toContain('tidemark_ingest_samples_total{protocol="kafka"} 13');
    expect(text).toContain('tidemark_ingest_samples_total{protocol="grpc"} 3');

    m.observeRetention(2, { chunksDropped: 4, seriesRemoved: 1 });
    m.observeRetention(2, { chunksDropped: 1, seriesRemoved: 0 });
    const after = await m.text();
    expect(after).toContain('tidemark_store_retention_runs_total{shard="2"} 2');
    expect(after).toContain('tidemark_store_retention_dropped_chunks_total{shard="2"} 5');
    expect(after).toContain('tidemark_store_retention_removed_series_total{shard="2"} 1');
  });
});
