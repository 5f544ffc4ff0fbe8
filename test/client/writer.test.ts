import { afterEach, describe, expect, it } from 'vitest';
import { type Point, TidemarkClient, type TidemarkError } from '../../src/client/index.js';
import { invalidArgument } from '../../src/errors/index.js';
import { poll } from '../helpers/wait.js';
import { type FakeCluster, startFakeCluster } from './fake-cluster.js';

let cluster: FakeCluster | undefined;
let client: TidemarkClient | undefined;

afterEach(async () => {
  await client?.close();
  await cluster?.stop();
  client = undefined;
  cluster = undefined;
});

const point = (i: number, host = `h${i % 7}`): Point => ({
  metric: 'requests',
  tags: { host },
  timestamp: 1_700_000_000_000 + i,
  value: i,
});

const pts = (from: number, n: number) => Array.from({ length: n }, (_, i) => point(from + i));

async function waitFor(fn: () => boolean, ms = 5000): Promise<void> {
  await poll(() => fn() || undefined, 'condition', { timeoutMs: ms });
}

/** Whether `p` is still pending after `ms`. */
async function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  p.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await new Promise((r) => setTimeout(r, ms));
  return !settled;
}

describe('BatchWriter', () => {
  it('coalesces many small writes into few batches', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 4 });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    const w = client.writer({ maxSamples: 10, maxDelayMs: 60_000 });
    for (let i = 0; i < 35; i++) await w.write([point(i)]);
    await w.flush();
    const node = cluster.nodes[0]!;
    expect(node.samples.length).toBe(35);
    // 35 writes of one sample: batches of 10, 10, 10 and the flushed 5.
    expect(node.requests.length).toBe(4);
    const sizes = node.requests.map((r) =>
      (r.batch?.series ?? []).reduce((n, s) => n + s.timestamps.length, 0),
    );
    expect(sizes).toEqual([10, 10, 10, 5]);
    // Each series appears once per request.
    for (const r of node.requests) {
      const hosts = (r.batch?.series ?? []).map((s) => s.series?.tags.host);
      expect(new Set(hosts).size).toBe(hosts.length);
    }
    expect(w.stats).toEqual({ batches: 4, failedBatches: 0, accepted: 35, rejected: 0 });
  });

  it('sends a partial batch after maxDelayMs', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    const w = client.writer({ maxSamples: 1000, maxDelayMs: 20 });
    await w.write(pts(0, 2));
    await w.write(pts(2, 1));
    const node = cluster.nodes[0]!;
    await waitFor(() => node.samples.length === 3);
    expect(node.requests.length).toBe(1);
    expect(w.buffered).toBe(0);
  });

  it('applies backpressure when the buffer is full', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    const node = cluster.nodes[0]!;
    let release!: () => void;
    node.gate = new Promise<void>((r) => {
      release = r;
    });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    const w = client.writer({ maxSamples: 10, maxBufferedSamples: 20, maxInFlight: 1, maxDelayMs: 60_000 });
    await w.write(pts(0, 10)); // a full batch: sent, held at the gate
    await waitFor(() => node.requests.length === 1);
    await w.write(pts(10, 10)); // buffered: 10 in flight + 10 pending = the limit
    expect(w.buffered).toBe(10);
    const blocked = w.write(pts(20, 1));
    expect(await stillPending(blocked, 100)).toBe(true);
    expect(w.buffered).toBe(10); // nothing grew while waiting
    release();
    await blocked;
    await w.flush();
    expect(node.samples.length).toBe(21);
  });

  it('validates each write and buffers nothing from a bad one', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    const w = client.writer({ maxSamples: 10 });
    await expect(w.write([point(0), { ...point(1), timestamp: -5 }])).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'points[1].timestamp',
    });
    expect(w.buffered).toBe(0);
    await w.flush();
    expect(cluster.nodes[0]!.requests.length).toBe(0);
  });

  it('reports failed batches from flush and onError', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1 });
    const node = cluster.nodes[0]!;
    node.failures.push(invalidArgument('batch_too_large', 'batch', 'batch: too large'));
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    const seen: TidemarkError[] = [];
    const w = client.writer({ maxSamples: 5, onError: (e) => seen.push(e) });
    await w.write(pts(0, 5));
    await expect(w.flush()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', field: 'batch' });
    expect(seen.map((e) => e.reason)).toEqual(['batch_too_large']);
    await w.write(pts(5, 5));
    await w.flush(); // the error was reported once
    expect(w.stats.failedBatches).toBe(1);
    expect(w.stats.batches).toBe(1);
    expect(node.samples.length).toBe(5);
  });

  it('flushes on close and refuses writes after it', async () => {
    cluster = await startFakeCluster({ nodes: 2, shards: 4 });
    client = await TidemarkClient.connect({ endpoints: cluster.endpoints });
    const w = client.writer({ maxSamples: 100, maxDelayMs: 60_000 });
    await w.write(pts(0, 7));
    await client.close();
    expect(cluster.stored().length).toBe(7);
    await expect(w.write(pts(7, 1))).rejects.toMatchObject({ code: 'CLOSED' });
    expect(() => client!.writer()).toThrow(/closed/);
  });
});
