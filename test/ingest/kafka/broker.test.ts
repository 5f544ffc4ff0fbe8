/**
 * The Kafka ingester against a REAL Apache Kafka broker (scripts/kafka.sh; one broker for this file):
 * the partition-count check, each record format end to end into a real store, bad records to the
 * dead-letter topic while the partition keeps flowing, leadership loss, and exactly-once in effect under
 * seeded random aborts and proposal faults. Replay: TIDEMARK_SEED=<n> npx vitest run test/ingest/kafka
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { Consumer } from '@platformatic/kafka';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { kafkaPartitionOf, TidemarkKafkaProducer } from '../../../src/client/kafka-producer.js';
import { WriteRequestSchema } from '../../../src/gen/tidemark/v1/client_pb.js';
import {
  checkTopic,
  createTopic,
  DLQ_HEADERS,
  deadLetterKey,
  type KafkaIngestConfigInput,
  KafkaIngester,
  PlatformaticKafkaIo,
} from '../../../src/ingest/kafka/index.js';
import { makeSeries } from '../../../src/model/index.js';
import { MemoryShardStore, openShardStore } from '../../../src/storage/index.js';
import { Rng } from '../../../src/util/random.js';
import { KAFKA_HOOK_TIMEOUT_MS, startKafka, type TestKafka } from '../../helpers/kafka.js';
import { poll } from '../../helpers/wait.js';
import {
  Expected,
  produce,
  type RawRecord,
  SEED,
  StoreTarget,
  sortedEntries,
  storeContent,
} from './helpers.js';

// TIDEMARK_KAFKA_LOG=debug shows the ingesters' logs.
const logger = pino({ level: process.env.TIDEMARK_KAFKA_LOG ?? 'silent' });
let kafka: TestKafka;
let io: PlatformaticKafkaIo;
beforeAll(async () => {
  kafka = await startKafka();
  io = new PlatformaticKafkaIo({ brokers: kafka.brokers, clientId: 'tidemark-test' });
}, KAFKA_HOOK_TIMEOUT_MS);
afterAll(async () => {
  await io?.close();
  await kafka?.stop();
}, 60_000);

function stores(n: number): StoreTarget[] {
  return Array.from({ length: n }, (_, i) => new StoreTarget(i, new MemoryShardStore({ oooWindowMs: 0 })));
}

/** Runs an ingester over the targets until each has applied `ends[p]` offsets, then closes it. */
async function ingestUntil(
  config: Omit<KafkaIngestConfigInput, 'brokers'>,
  targets: StoreTarget[],
  ends: bigint[],
): Promise<KafkaIngester> {
  const ing = await KafkaIngester.open(
    { brokers: kafka.brokers, ...config },
    { shardCount: targets.length, logger },
  );
  for (const t of targets) ing.lead(t);
  try {
    await poll(() => targets.every((t, i) => t.nextOffset() === ends[i]), 'every partition applied', {
      timeoutMs: 30_000,
    });
  } finally {
    await ing.close();
  }
  return ing;
}

function mergedContent(targets: StoreTarget[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const t of targets) for (const [k, v] of storeContent(t.store)) out.set(k, v);
  return out;
}

describe('topic check', () => {
  test('exactly S partitions passes; anything else says how to fix it', async () => {
    await createTopic(kafka.brokers, 'check-3', 3);
    await checkTopic(io, kafka.brokers, 'check-3', 3);

    const more = await checkTopic(io, kafka.brokers, 'check-3', 4).catch((e: unknown) => e);
    expect(more).toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'kafka_partition_mismatch' });
    expect((more as Error).message).toContain('has 3 partitions but the cluster has 4 shards');
    expect((more as Error).message).toContain(
      `kafka-topics.sh --bootstrap-server ${kafka.bootstrap} --alter --topic check-3 --partitions 4`,
    );

    const fewer = await checkTopic(io, kafka.brokers, 'check-3', 2).catch((e: unknown) => e);
    expect(fewer).toMatchObject({ reason: 'kafka_partition_mismatch' });
    expect((fewer as Error).message).toContain('cannot remove partitions');

    const missing = await checkTopic(io, kafka.brokers, 'no-such-topic', 2).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'kafka_topic_missing' });
    expect((missing as Error).message).toContain('--create --topic no-such-topic --partitions 2');

    await expect(
      KafkaIngester.open(
        { brokers: kafka.brokers, topic: 'check-3', format: 'influx', deadLetterTopic: 'no-such-dlq' },
        { shardCount: 3 },
      ),
    ).rejects.toMatchObject({ reason: 'kafka_dead_letter_topic_missing' });
    // KafkaIngester.open runs the same check.
    await expect(
      KafkaIngester.open({ brokers: kafka.brokers, topic: 'check-3', format: 'influx' }, { shardCount: 5 }),
    ).rejects.toMatchObject({ reason: 'kafka_partition_mismatch' });
  });
});

describe('formats end to end', () => {
  const P = 2;
  const RECORDS = 60;

  test('InfluxDB line protocol: several lines per record; a line without timestamp takes the record time', async () => {
    await createTopic(kafka.brokers, 'fmt-influx', P);
    const exp = new Expected();
    const recs: RawRecord[] = [];
    for (let r = 0; r < RECORDS; r++) {
      const p = r % P;
      const lines: string[] = [];
      for (let l = 0; l < 3; l++) {
        const t = 1_700_000_000_000 + r * 10 + l;
        const host = `h${p}-${l}`;
        lines.push(`cpu,host=${host} usage=${r + l / 4},idle=${-r}i,note="skipped" ${t}000000`);
        exp.add(`cpu_usage{host=${host}}`, t, r + l / 4);
        exp.add(`cpu_idle{host=${host}}`, t, -r);
      }
      lines.push(`# a comment line`);
      lines.push(`mem,host=m${p} free=${r}`);
      const recordTs = 1_700_000_500_000 + r;
      exp.add(`mem_free{host=m${p}}`, recordTs, r);
      recs.push({ partition: p, value: lines.join('\n'), timestamp: recordTs });
    }
    await produce(kafka.brokers, 'fmt-influx', recs);
    const targets = stores(P);
    await ingestUntil({ topic: 'fmt-influx', format: 'influx' }, targets, [30n, 30n]);
    expect(sortedEntries(mergedContent(targets))).toEqual(sortedEntries(exp.content()));
    expect(targets.reduce((a, t) => a + t.appliedSamples, 0)).toBe(exp.samples);
  });

  test('OpenTSDB JSON: objects and arrays, seconds and milliseconds', async () => {
    await createTopic(kafka.brokers, 'fmt-otsdb', P);
    const exp = new Expected();
    const recs: RawRecord[] = [];
    for (let r = 0; r < RECORDS; r++) {
      const p = r % P;
      if (r % 3 === 0) {
        const t = 1_700_000_000 + r; // seconds
        recs.push({
          partition: p,
          value: JSON.stringify({ metric: 'sys.load', timestamp: t, value: r / 8, tags: { host: `a${p}` } }),
        });
        exp.add(`sys.load{host=a${p}}`, t * 1000, r / 8);
      } else {
        const pts = [0, 1, 2, 3].map((k) => ({
          metric: 'sys.cpu.user',
          timestamp: 1_700_000_000_000 + r * 4 + k, // milliseconds
          value: String(r * 100 + k),
          tags: { host: `b${p}`, cpu: String(k) },
        }));
        for (const d of pts)
          exp.add(`sys.cpu.user{cpu=${d.tags.cpu},host=${d.tags.host}}`, d.timestamp, Number(d.value));
        recs.push({ partition: p, value: JSON.stringify(pts) });
      }
    }
    await produce(kafka.brokers, 'fmt-otsdb', recs);
    const targets = stores(P);
    await ingestUntil({ topic: 'fmt-otsdb', format: 'opentsdb' }, targets, [30n, 30n]);
    expect(sortedEntries(mergedContent(targets))).toEqual(sortedEntries(exp.content()));
  });

  test('Tidemark protobuf WriteRequest', async () => {
    await createTopic(kafka.brokers, 'fmt-proto', P);
    const exp = new Expected();
    const recs: RawRecord[] = [];
    for (let r = 0; r < RECORDS; r++) {
      const p = r % P;
      const series = [0, 1].map((k) => {
        const ts = [0, 1, 2].map((j) => 1_700_000_000_000 + r * 3 + j);
        const vs = ts.map((_t, j) => r * 1.25 + k - j);
        const tags = { host: `c${p}`, k: String(k) };
        for (const [j, t] of ts.entries()) exp.add(`proto.metric{host=c${p},k=${k}}`, t, vs[j]!);
        return { series: { metric: 'proto.metric', tags }, timestamps: ts.map(BigInt), values: vs };
      });
      const req = create(WriteRequestSchema, { batch: { series } });
      recs.push({ partition: p, value: Buffer.from(toBinary(WriteRequestSchema, req)) });
    }
    await produce(kafka.brokers, 'fmt-proto', recs);
    const targets = stores(P);
    // Tiny batches: many proposals per partition, several in flight.
    await ingestUntil(
      { topic: 'fmt-proto', format: 'protobuf', batch: { maxRecords: 4 }, maxInFlight: 3 },
      targets,
      [30n, 30n],
    );
    expect(sortedEntries(mergedContent(targets))).toEqual(sortedEntries(exp.content()));
    expect(targets.every((t) => t.appliedEntries >= 30 / 4)).toBe(true);
    expect(targets.reduce((a, t) => a + t.appliedSamples, 0)).toBe(exp.samples);
  });
});

test('a bad record goes to the dead-letter topic with the error in a header; the partition keeps flowing', async () => {
  await createTopic(kafka.brokers, 'dlq-src', 1);
  await createTopic(kafka.brokers, 'dlq-dead', 1, { 'cleanup.policy': 'compact' });
  const exp = new Expected();
  const recs: RawRecord[] = [];
  const bad = new Map<bigint, string>();
  for (let r = 0; r < 40; r++) {
    if (r % 7 === 3) {
      const v = r % 2 === 0 ? `cpu,host=x usage=notanumber 1` : `cpu,host=x usage=1 2\nthis line is broken`;
      bad.set(BigInt(r), v);
      recs.push({ partition: 0, value: v });
      continue;
    }
    recs.push({ partition: 0, value: `cpu,host=good v=${r} ${1_700_000_000_000 + r}`, timestamp: 1 });
    exp.add('cpu_v{host=good}', 1_700_000_000_000 + r, r);
  }
  await produce(kafka.brokers, 'dlq-src', recs);
  const [target] = stores(1);
  const ing = await ingestUntil(
    { topic: 'dlq-src', format: 'influx', deadLetterTopic: 'dlq-dead', precision: 'ms' },
    [target!],
    [40n],
  );
  expect(sortedEntries(storeContent(target!.store))).toEqual(sortedEntries(exp.content()));
  expect(ing.stats()[0]).toMatchObject({ partition: 0, records: 40, badRecords: bad.size, lag: 0n });

  const fetcher = io.openFetcher('dlq-dead', 0);
  const dead = await fetcher.fetch(0n, 1000, 1 << 20);
  fetcher.close();
  expect(dead.records.map((r) => r.value?.toString())).toEqual([...bad.values()]);
  for (const [i, r] of dead.records.entries()) {
    const offset = [...bad.keys()][i]!;
    expect(r.key?.toString()).toBe(deadLetterKey('dlq-src', 0, offset));
    const h = new Map(r.headers.map(([k, v]) => [k?.toString(), v?.toString()]));
    expect(h.get(DLQ_HEADERS.offset)).toBe(String(offset));
    expect(h.get(DLQ_HEADERS.partition)).toBe('0');
    expect(h.get(DLQ_HEADERS.topic)).toBe('dlq-src');
    expect(h.get(DLQ_HEADERS.error)).toMatch(/rejected/);
  }
});

test('leadership loss stops consuming; the next leader resumes from the stored offset', async () => {
  await createTopic(kafka.brokers, 'lead', 1);
  const line = (r: number) => ({ partition: 0, value: `m v=${r} ${1_700_000_000_000 + r}` });
  await produce(
    kafka.brokers,
    'lead',
    Array.from({ length: 20 }, (_, r) => line(r)),
  );
  const [target] = stores(1);
  const t = target!;
  const ing = await KafkaIngester.open(
    {
      brokers: kafka.brokers,
      topic: 'lead',
      format: 'influx',
      precision: 'ms',
      batch: { maxRecords: 5 },
      monitorGroup: 'tidemark-monitor',
    },
    { shardCount: 1 },
  );
  try {
    ing.lead(t);
    await poll(() => t.nextOffset() === 20n, 'first 20 records applied', { timeoutMs: 30_000 });
    await ing.unlead(0); // resolves only once the loop has stopped and its proposals settled
    expect(ing.leading()).toEqual([]);
    const proposals = t.proposals;
    await produce(
      kafka.brokers,
      'lead',
      Array.from({ length: 20 }, (_, r) => line(20 + r)),
    );
    // Not a timing assertion: nothing may ever propose after unlead, however long we look.
    await new Promise((r) => setTimeout(r, 1200));
    expect(t.proposals).toBe(proposals);
    expect(t.nextOffset()).toBe(20n);

    ing.lead(t);
    await poll(() => t.nextOffset() === 40n, 'all 40 records applied', { timeoutMs: 30_000 });
    expect(t.appliedSamples).toBe(40);
    expect(t.replays).toBe(0);
    expect(storeContent(t.store).get('m_v{}')).toHaveLength(40);
    // The monitoring commit trails the applied offset (at most one per second); it only ever moves forward.
    const monitor = new Consumer({
      clientId: 'monitor',
      bootstrapBrokers: kafka.brokers,
      groupId: 'tidemark-monitor',
    });
    try {
      const committed = await monitor.listCommittedOffsets({ topics: [{ topic: 'lead', partitions: [0] }] });
      const c = committed.get('lead')?.[0] ?? -1n;
      expect(c).toBeGreaterThan(0n);
      expect(c).toBeLessThanOrEqual(40n);
    } finally {
      await monitor.close();
    }
  } finally {
    await ing.close();
  }
});

test('exactly once in effect: random aborts and proposal faults, restart from the stored offset', async () => {
  const seed = SEED;
  const rng = new Rng(seed);
  const P = 3;
  const PER_PARTITION = 400;
  await createTopic(kafka.brokers, 'eo', P);
  const exp = new Expected();
  const recs: RawRecord[] = [];
  for (let p = 0; p < P; p++) {
    for (let r = 0; r < PER_PARTITION; r++) {
      const lines: string[] = [];
      const n = rng.int(1, 6);
      for (let l = 0; l < n; l++) {
        const t = 1_700_000_000_000 + r * 8 + l;
        const v = rng.int(0, 1_000_000) / 16;
        lines.push(`eo,p=${p},s=${l % 3} v=${v} ${t}`);
        exp.add(`eo_v{p=${p},s=${l % 3}}`, t, v);
      }
      recs.push({ partition: p, value: lines.join('\n') });
    }
  }
  await produce(kafka.brokers, 'eo', recs);

  // LMDB stores, closed and reopened half-way: the restart resumes from the offset stored with the data.
  const dirs = await Promise.all(Array.from({ length: P }, () => mkdtemp(join(tmpdir(), 'tidemark-eo-'))));
  // 'late' twice: it is the fault that makes replays, which only the apply rule keeps out.
  const faults = ['reject', 'ackLost', 'late', 'late'] as const;
  const openTargets = async () =>
    await Promise.all(
      dirs.map(async (d, i) => {
        const t = new StoreTarget(i, await openShardStore(d, { oooWindowMs: 0 }));
        t.fault = () => (rng.chance(0.2) ? faults[rng.int(0, 4)] : undefined);
        t.lateDelayMs = () => rng.int(5, 60);
        return t;
      }),
    );
  const config = {
    brokers: kafka.brokers,
    topic: 'eo',
    format: 'influx' as const,
    precision: 'ms' as const,
    batch: { maxRecords: rng.int(3, 12), lingerMs: 5 },
    maxInFlight: 3,
  };
  const done = (ts: StoreTarget[]) => ts.every((t) => t.nextOffset() === BigInt(PER_PARTITION));
  let restarts = 0;
  let appliedSamples = 0;
  let replays = 0;
  /** Flaps leadership for `rounds` rounds (or until done); with `finish`, then lets every partition complete. */
  const phase = async (targets: StoreTarget[], rounds: number, finish: boolean) => {
    const ing = await KafkaIngester.open(config, { shardCount: P, retryDelayMs: 1, logger });
    try {
      for (let round = 0; round < rounds && !done(targets); round++) {
        for (const t of targets) {
          if (ing.leading().includes(t.shard)) {
            if (rng.chance(0.3)) {
              await ing.unlead(t.shard);
              restarts++;
            }
          } else ing.lead(t);
        }
        await new Promise((r) => setTimeout(r, rng.int(1, 40)));
      }
      if (finish) {
        for (const t of targets) t.fault = undefined;
        for (const t of targets) ing.lead(t);
        await poll(() => done(targets), 'every partition applied', { timeoutMs: 30_000 });
      }
    } catch (err) {
      console.error(
        ing.stats(),
        targets.map((t) => [t.nextOffset(), t.proposals, t.replays, t.gaps]),
      );
      throw err;
    } finally {
      await ing.close();
      for (const t of targets) await t.drain();
      for (const t of targets) appliedSamples += t.appliedSamples;
      for (const t of targets) replays += t.replays;
    }
  };
  try {
    const first = await openTargets();
    await phase(first, rng.int(10, 60), false);
    const stopped = first.map((t) => t.nextOffset());
    for (const t of first) await t.store.close();
    const targets = await openTargets();
    expect(targets.map((t) => t.nextOffset())).toEqual(stopped);
    await phase(targets, 400, true);
    expect(restarts).toBeGreaterThan(0);
    expect(sortedEntries(mergedContent(targets))).toEqual(sortedEntries(exp.content()));
    // No sample applied twice (the store's (series, t) dedup would hide that in the content).
    expect(appliedSamples).toBe(exp.samples);
    for (const t of targets) await t.store.close();
  } catch (err) {
    console.error(
      `seed ${seed} failed (${restarts} restarts, ${replays} replays dropped); ` +
        `replay: TIDEMARK_SEED=${seed} npx vitest run test/ingest/kafka/broker.test.ts`,
    );
    throw err;
  } finally {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
});

describe('SDK producer helper', () => {
  test.each(['protobuf', 'opentsdb'] as const)(
    '%s: each series goes to partition jump(seriesId, S) and arrives intact',
    async (format) => {
      const S = 4;
      const topic = `sdk-${format}`;
      await createTopic(kafka.brokers, topic, S);
      const exp = new Expected();
      const points = [];
      for (let h = 0; h < 40; h++) {
        for (let k = 0; k < 5; k++) {
          const t = 1_700_000_000_000 + k * 1000;
          const v = h * 10 + k + 0.25;
          points.push({ metric: 'sdk.cpu', tags: { host: `h${h}` }, timestamp: t, value: v });
          exp.add(`sdk.cpu{host=h${h}}`, t, v);
        }
      }
      const producer = new TidemarkKafkaProducer({
        brokers: kafka.bootstrap,
        topic,
        shards: S,
        format,
        maxSamplesPerRecord: 7,
      });
      let sent: Awaited<ReturnType<TidemarkKafkaProducer['send']>>;
      try {
        sent = await producer.send(points);
        // A topic whose partition count differs from the shard count is refused before anything is sent.
        const wrong = new TidemarkKafkaProducer({ brokers: kafka.bootstrap, topic, shards: S + 1, format });
        await expect(wrong.send(points.slice(0, 1))).rejects.toMatchObject({
          reason: 'kafka_partition_mismatch',
        });
        await wrong.close();
      } finally {
        await producer.close();
      }
      expect(sent.samples).toBe(200);
      expect(sent.partitions).toEqual([0, 1, 2, 3]);
      const ends = await Promise.all(
        Array.from({ length: S }, async (_, p) => {
          const f = io.openFetcher(topic, p);
          try {
            return (await f.fetch(0n, 100, 1 << 20)).highWatermark;
          } finally {
            f.close();
          }
        }),
      );
      expect(ends.reduce((a, b) => a + b, 0n)).toBe(BigInt(sent.records));
      const targets = stores(S);
      await ingestUntil({ topic, format }, targets, ends);
      for (const t of targets) {
        for (const key of storeContent(t.store).keys()) {
          const [, metric, tags] = /^([^{]*)\{(.*)\}$/.exec(key)!;
          const series = makeSeries(metric, Object.fromEntries(tags!.split(',').map((kv) => kv.split('='))));
          expect(kafkaPartitionOf(series, S)).toBe(t.shard);
        }
      }
      expect(sortedEntries(mergedContent(targets))).toEqual(sortedEntries(exp.content()));
    },
  );
});
