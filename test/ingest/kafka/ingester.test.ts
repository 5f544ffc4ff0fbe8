/**
 * The ingester's own logic, fast and without a broker (an in-memory partition log stands in; Kafka
 * behaviour itself is tested against the real broker in broker.test.ts): positions cover every offset
 * exactly once, the apply rule drops a replay, backpressure, dead letters, retention gaps, prompt stop.
 */
import { describe, expect, test } from 'vitest';
import {
  DLQ_HEADERS,
  deadLetterKey,
  IN_FLIGHT_MIN_BYTES,
  type KafkaShardTarget,
  PartitionIngester,
  parseKafkaConfig,
} from '../../../src/ingest/kafka/index.js';
import { MemoryShardStore } from '../../../src/storage/index.js';
import { poll } from '../../helpers/wait.js';
import { StoreTarget, storeContent } from './helpers.js';
import { MemoryKafka } from './memory-kafka.js';

function config(extra: Record<string, unknown> = {}) {
  return parseKafkaConfig({
    brokers: 'localhost:9092',
    topic: 't',
    format: 'influx',
    precision: 'ms',
    fetchMaxWaitMs: 20,
    ...extra,
  });
}

function target(): StoreTarget {
  return new StoreTarget(0, new MemoryShardStore({ oooWindowMs: 0 }));
}

/** Runs the ingester until `done`, then stops it and waits for it. */
async function runUntil(ing: PartitionIngester, done: () => boolean, what: string): Promise<void> {
  const ac = new AbortController();
  const running = ing.run(ac.signal);
  try {
    await poll(done, what, { timeoutMs: 10_000 });
  } finally {
    ac.abort();
    await running;
  }
}

/**
 * An ingester on a clock that stands still, whose proposals stay pending until released; stop() aborts it,
 * releases them and waits for it.
 */
function heldProposals(io: MemoryKafka, extra: Record<string, unknown>) {
  const proposed: { first: bigint; last: bigint; release: () => void }[] = [];
  const target: KafkaShardTarget = {
    shard: 0,
    nextOffset: () => 0n,
    propose: (_batch, pos) =>
      new Promise<void>((release) =>
        proposed.push({ first: pos.firstOffset, last: pos.lastOffset, release }),
      ),
  };
  const ing = new PartitionIngester({ config: config(extra), io, target, now: () => 0 });
  const ac = new AbortController();
  const running = ing.run(ac.signal);
  const stop = async () => {
    ac.abort();
    for (const p of proposed) p.release();
    await running;
  };
  return { ing, proposed, stop };
}

describe('PartitionIngester', () => {
  test('positions are contiguous, cover every offset once, and respect maxRecords', async () => {
    const io = new MemoryKafka('t', 1);
    // A bad record's good first line must not survive in the batch (records are all or nothing).
    for (let i = 0; i < 100; i++) {
      io.append(0, i % 10 === 5 ? `partial v=${i} ${1000 + i}\nbad line` : `m v=${i} ${1000 + i}`);
    }
    const t = target();
    const ing = new PartitionIngester({
      config: config({ batch: { maxRecords: 6 }, deadLetterTopic: 'dead' }),
      io,
      target: t,
    });
    await runUntil(ing, () => t.nextOffset() === 100n, 'all applied');
    let next = 0n;
    for (const p of t.positions) {
      expect(p.firstOffset).toBe(next);
      expect(p.lastOffset - p.firstOffset + 1n).toBeLessThanOrEqual(6n);
      next = p.lastOffset + 1n;
    }
    expect(next).toBe(100n);
    expect(t.appliedSamples).toBe(90);
    expect([...storeContent(t.store).keys()]).toEqual(['m_v{}']);
    expect(ing.stats()).toMatchObject({ records: 100, badRecords: 10, samples: 90, running: false });
    expect(io.dead.map((d) => d.key)).toEqual(
      Array.from({ length: 10 }, (_, k) => deadLetterKey('t', 0, BigInt(k * 10 + 5))),
    );
  });

  test('a bad record goes to the dead-letter topic before the offset moves past it', async () => {
    const io = new MemoryKafka('t', 1);
    io.append(0, 'm v=1 1');
    io.append(0, null);
    io.append(0, 'm v=x 2');
    const t = target();
    const ing = new PartitionIngester({ config: config({ deadLetterTopic: 'dead' }), io, target: t });
    await runUntil(ing, () => t.nextOffset() === 3n, 'all applied');
    expect(io.dead).toHaveLength(2);
    expect(io.dead[0]!.headers[DLQ_HEADERS.reason]).toBe('record_empty');
    expect(io.dead[1]!.headers[DLQ_HEADERS.offset]).toBe('2');
    expect(io.dead[1]!.headers[DLQ_HEADERS.error]).toContain('invalid value');
    expect(io.dead[1]!.value?.toString()).toBe('m v=x 2');
    expect(storeContent(t.store).get('m_v{}')).toEqual(['1=1']);
  });

  test('a proposal that commits after its proposer gave up is applied once (the replay is dropped)', async () => {
    const io = new MemoryKafka('t', 1);
    for (let i = 0; i < 30; i++) io.append(0, `m v=${i} ${1000 + i}`);
    const t = target();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let calls = 0;
    t.fault = () => (calls++ === 0 ? 'late' : undefined);
    // The late entry commits only once the ingester has re-read the offset and proposed the range again.
    t.lateDelayMs = () => gate;
    const ing = new PartitionIngester({
      config: config({ maxInFlight: 1, batch: { maxRecords: 10 } }),
      io,
      target: t,
      retryDelayMs: 1,
    });
    const ac = new AbortController();
    const running = ing.run(ac.signal);
    await poll(() => t.positions.filter((p) => p.firstOffset === 0n).length >= 2, 'offset 0 proposed twice');
    release();
    await poll(() => t.nextOffset() === 30n, 'all applied');
    ac.abort();
    await running;
    await t.drain();
    expect(t.replays).toBeGreaterThanOrEqual(1);
    expect(t.appliedSamples).toBe(30);
    expect(storeContent(t.store).get('m_v{}')).toHaveLength(30);
  });

  test('backpressure: at most maxInFlight proposals, and fetching pauses while they are pending', async () => {
    const io = new MemoryKafka('t', 1);
    for (let i = 0; i < 200; i++) io.append(0, `m v=${i} ${1000 + i}`);
    const pending: (() => void)[] = [];
    let proposals = 0;
    const t: KafkaShardTarget = {
      shard: 0,
      nextOffset: () => 0n,
      propose: () => {
        proposals++;
        return new Promise<void>((r) => pending.push(r));
      },
    };
    const ing = new PartitionIngester({
      config: config({ maxInFlight: 2, batch: { maxRecords: 5 } }),
      io,
      target: t,
    });
    const ac = new AbortController();
    const running = ing.run(ac.signal);
    await poll(() => proposals === 2, 'two proposals in flight');
    const fetches = io.fetches;
    await new Promise((r) => setTimeout(r, 200));
    // Blocked in flush: no third proposal and at most the one fetch that filled the next batch.
    expect(proposals).toBe(2);
    expect(io.fetches - fetches).toBeLessThanOrEqual(1);
    pending.shift()!();
    await poll(() => proposals === 3, 'a third proposal once one completed');
    ac.abort();
    for (const r of pending) r();
    await running;
  });

  test('caught up: flushes at once when idle, and batches what arrives while a proposal is in flight', async () => {
    const io = new MemoryKafka('t', 1);
    // lingerMs never expires (the clock stands still), so only the in-flight rule decides.
    const { ing, proposed, stop } = heldProposals(io, { maxInFlight: 2, batch: { lingerMs: 1000 } });
    try {
      io.append(0, 'm v=0 1000');
      await poll(() => proposed.length === 1, 'the first record proposed at once');
      // One record at a time, each fetched (and caught up) while the first proposal is pending.
      for (let i = 1; i < 10; i++) {
        io.append(0, `m v=${i} ${1000 + i}`);
        await poll(() => ing.stats().records === i + 1, `record ${i} fetched`);
      }
      expect(proposed).toHaveLength(1);
      proposed[0]!.release();
      await poll(() => proposed.length === 2, 'the batch proposed once the first settled');
      expect(proposed.map((p) => [p.first, p.last])).toEqual([
        [0n, 0n],
        [1n, 9n],
      ]);
    } finally {
      await stop();
    }
  });

  test('while a proposal is in flight, a fetch lets the broker gather records instead of one request each', async () => {
    const io = new MemoryKafka('t', 1);
    // The linger never expires: fetches wait at most fetchMaxWaitMs.
    const { ing, proposed, stop } = heldProposals(io, {
      maxInFlight: 2,
      fetchMaxWaitMs: 1000,
      batch: { lingerMs: 5000 },
    });
    try {
      io.append(0, 'm v=0 1000');
      await poll(() => proposed.length === 1, 'the first record proposed at once');
      // The next batch's first record is fetched as soon as it is there (nothing to gather it with yet).
      io.append(0, 'm v=1 1001');
      await poll(() => ing.stats().records === 2, 'record 1 fetched');
      expect(io.minBytesAsked.at(-2)).toBe(1);
      const before = io.fetches;
      // Eight more trickle in while the first proposal is pending: one fetch gathers them.
      for (let i = 2; i < 10; i++) {
        io.append(0, `m v=${i} ${1000 + i}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      await poll(() => ing.stats().records === 10, 'records 2-9 fetched');
      expect(io.fetches - before).toBeLessThanOrEqual(3);
      expect(io.minBytesAsked.slice(-2)).toEqual([IN_FLIGHT_MIN_BYTES, IN_FLIGHT_MIN_BYTES]);
      expect(proposed).toHaveLength(1);
    } finally {
      await stop();
    }
  });

  test('records deleted by retention before being applied: one empty proposal skips to the log start', async () => {
    const io = new MemoryKafka('t', 1);
    for (let i = 0; i < 20; i++) io.append(0, `m v=${i} ${1000 + i}`);
    io.truncate(0, 12n);
    const t = target();
    const ing = new PartitionIngester({ config: config(), io, target: t, retryDelayMs: 1 });
    await runUntil(ing, () => t.nextOffset() === 20n, 'all applied');
    expect(t.positions[0]).toEqual({ firstOffset: 0n, lastOffset: 11n, samples: 0 });
    expect(t.appliedSamples).toBe(8);
  });

  test('stops promptly on abort, even while a fetch waits for data, and proposes nothing after', async () => {
    const io = new MemoryKafka('t', 1);
    io.append(0, 'm v=1 1');
    const t = target();
    const ing = new PartitionIngester({ config: config({ fetchMaxWaitMs: 30_000 }), io, target: t });
    const ac = new AbortController();
    const running = ing.run(ac.signal);
    await poll(() => t.nextOffset() === 1n, 'first record applied');
    await poll(() => io.fetches >= 2, 'a long-polling fetch in flight');
    ac.abort();
    await running; // would take 30 s if the pending fetch were awaited
    const proposals = t.proposals;
    io.append(0, 'm v=2 2');
    await new Promise((r) => setTimeout(r, 100));
    expect(t.proposals).toBe(proposals);
    expect(ing.stats().running).toBe(false);
  }, 10_000);
});
