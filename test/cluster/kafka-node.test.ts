/**
 * The node glue (src/cluster/kafka.ts) on three in-process nodes with real Raft and LMDB. Its Kafka side
 * is the in-memory partition log of the ingester unit tests (the real broker is in kafka-process.test.ts):
 * what is checked here is the node's part — leaders consume, misrouted samples reach their own shard, a
 * partition without own samples still advances its offset, a leader transfer hands the partition over
 * without loss or duplicates, the topic check, and the status/metrics rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaReport } from '../../src/cli/status.js';
import { decodeNextOffset, KAFKA_NEXT_OFFSET_KEY } from '../../src/cluster/entry.js';
import { NodeKafka } from '../../src/cluster/kafka.js';
import type { TidemarkNode } from '../../src/cluster/node.js';
import { type Series, seriesId, shardOf } from '../../src/model/index.js';
import { MemoryKafka } from '../ingest/kafka/memory-kafka.js';
import { NodeCluster, waitFor } from './fixtures/node-cluster.js';

const S = 2;
const IDS = ['a', 'b', 'c'];
const TOPIC = 't';

function seriesOf(shard: number, n: number): Series[] {
  const out: Series[] = [];
  for (let i = 0; out.length < n; i++) {
    const s = { metric: 'kn', tags: { host: `h${i}` } };
    if (shardOf(seriesId(s), S) === shard) out.push(s);
  }
  return out;
}

describe('NodeKafka on three in-process nodes', () => {
  const cluster = new NodeCluster(IDS, S);
  const mem = new MemoryKafka(TOPIC, S);
  const glue = new Map<string, NodeKafka>();
  let timer: NodeJS.Timeout | undefined;
  const own = seriesOf(0, 3);
  const other = seriesOf(1, 3);
  /** host → timestamp → value produced. */
  const expected = new Map<string, Map<number, number>>();
  let t = 1_700_000_000_000;

  function kafkaConfig(node: TidemarkNode) {
    return {
      ...node.config,
      kafka: {
        brokers: '127.0.0.1:9',
        topic: TOPIC,
        format: 'opentsdb',
        deadLetterTopic: '',
        batchMaxSamples: 20,
        lingerMs: 5,
        maxInFlight: 2,
      },
    };
  }

  /** One OpenTSDB record with `k` samples of each series. */
  function record(series: Series[], k: number): string {
    const points = [];
    for (const s of series) {
      for (let j = 0; j < k; j++) {
        const ts = t++;
        const v = (ts % 1000) / 4;
        const m = expected.get(s.tags.host!) ?? new Map<number, number>();
        m.set(ts, v);
        expected.set(s.tags.host!, m);
        points.push({ metric: s.metric, timestamp: ts, value: v, tags: s.tags });
      }
    }
    return JSON.stringify(points);
  }

  function storedNext(shard: number): number {
    let best = 0;
    for (const id of IDS) {
      const r = cluster.node(id).replicas.get(shard);
      if (r !== undefined) best = Math.max(best, decodeNextOffset(r.store.getMeta(KAFKA_NEXT_OFFSET_KEY)));
    }
    return best;
  }

  async function caughtUp(): Promise<void> {
    await waitFor(
      () => Array.from({ length: S }, (_, p) => storedNext(p) === Number(mem.end(p))).every(Boolean),
      'every partition applied',
      30_000,
    );
  }

  async function stored(): Promise<Map<string, Map<number, number>>> {
    const out = new Map<string, Map<number, number>>();
    for (const s of await cluster.node('a').select({ metric: 'kn' })) {
      const m = new Map<number, number>();
      for (let i = 0; i < s.timestamps.length; i++) m.set(s.timestamps[i]!, s.values[i]!);
      out.set(s.tags.host!, m);
    }
    return out;
  }

  beforeAll(async () => {
    await cluster.start();
    await cluster.ready();
    for (const id of IDS) {
      const node = cluster.node(id);
      const k = await NodeKafka.open({
        config: kafkaConfig(node),
        replicas: node.replicas,
        write: (b, o) => node.write(b, o),
        io: mem,
        registry: node.metrics.registry,
        writeTimeoutMs: 5000,
      });
      glue.set(id, k!);
    }
    // What the node's observe loop does.
    timer = setInterval(() => {
      for (const k of glue.values()) k.sync();
    }, 20);
  }, 60_000);

  afterAll(async () => {
    clearInterval(timer);
    await Promise.all([...glue.values()].map((k) => k.close()));
    await cluster.close();
  }, 60_000);

  it('refuses a topic whose partition count differs from the shard count', async () => {
    const node = cluster.node('a');
    await expect(
      NodeKafka.open({
        config: kafkaConfig(node),
        replicas: node.replicas,
        write: (b, o) => node.write(b, o),
        io: new MemoryKafka(TOPIC, S + 1),
      }),
    ).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'kafka_partition_mismatch' });
  });

  it('stores misrouted samples in their own shard and advances partitions with no own samples', async () => {
    for (let i = 0; i < 10; i++) {
      mem.append(0, record(own, 3));
      mem.append(0, record(other, 2)); // misrouted: shard 1's series in partition 0
      mem.append(1, record(own.slice(0, 1), 4)); // partition 1 holding only shard 0's series
    }
    mem.append(1, '{"metric": broken');
    await caughtUp();
    expect(await stored()).toEqual(expected);
    // Exactly one node consumes each partition: the shard's leader.
    for (let p = 0; p < S; p++) {
      const consumers = IDS.filter((id) =>
        glue
          .get(id)!
          .status()
          .some((s) => s.partition === p && s.consuming),
      );
      expect(consumers).toHaveLength(1);
      expect(cluster.node(consumers[0]!).replicas.get(p)!.isLeader()).toBe(true);
    }
  });

  it('hands a partition over on a leader transfer without loss or duplicates', async () => {
    const leader = IDS.find((id) => cluster.node(id).replicas.get(0)!.isLeader())!;
    for (let i = 0; i < 5; i++) mem.append(0, record(own, 5));
    await cluster.node(leader).transferLeader(0, '');
    for (let i = 0; i < 5; i++) mem.append(0, record([...own, ...other], 2));
    await caughtUp();
    expect(await stored()).toEqual(expected);
    // Whoever leads shard 0 now (the balancer may move it back) is its only consumer.
    await waitFor(() => {
      const consumers = IDS.filter((id) =>
        glue
          .get(id)!
          .status()
          .some((x) => x.partition === 0 && x.consuming),
      );
      return consumers.length === 1 && cluster.node(consumers[0]!).replicas.get(0)!.isLeader();
    }, 'one consumer of partition 0: its leader');
  });

  it('reports per-partition lag, records and dead letters in /metrics and status rows', async () => {
    // /metrics: every node that consumed a partition reports it; the consumer says so.
    for (const id of IDS) {
      const text = await cluster.node(id).metrics.registry.metrics();
      for (const k of glue.get(id)!.statusRows()) {
        expect(text).toContain(
          `tidemark_kafka_applied_offset{partition="${k.partition}"} ${k.appliedOffset}`,
        );
        expect(text).toContain(`tidemark_kafka_consuming{partition="${k.partition}"} ${k.consuming ? 1 : 0}`);
      }
    }
    // Status (what `tidemark status` joins): one row per partition.
    const rows = kafkaReport(new Map(IDS.map((id) => [id, { kafka: glue.get(id)!.statusRows() }])));
    expect(rows.map((r) => r.partition)).toEqual([0, 1]);
    for (const r of rows) {
      expect(r.consumer).not.toBe('');
      expect(r.lag).toBe(0);
      expect(r.appliedOffset).toBe(Number(mem.end(r.partition)));
      expect(r.records).toBeGreaterThanOrEqual(Number(mem.end(r.partition)));
    }
    expect(rows[1]!.deadLetters).toBe(1);
    expect(rows[0]!.deadLetters).toBe(0);
  });
});
