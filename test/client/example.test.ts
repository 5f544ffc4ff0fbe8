/**
 * The example in docs/client.md, run against fake nodes. The code between the markers must stay identical
 * to the doc's snippet (checked below).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TidemarkClient } from '../../src/client/index.js';
import { type FakeCluster, startFakeCluster } from './fake-cluster.js';

let cluster: FakeCluster;

beforeAll(async () => {
  cluster = await startFakeCluster({ nodes: 3, shards: 8 });
});

afterAll(async () => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
  await cluster.stop();
});

async function example(): Promise<void> {
  // example:start
  const client = await TidemarkClient.connect({
    endpoints: [process.env.TIDEMARK_ADDR ?? '127.0.0.1:4243'],
    deadlineMs: 5000,
  });
  try {
    // Row style: one object per sample.
    const { accepted } = await client.write([
      { metric: 'cpu.load', tags: { host: 'web-1' }, timestamp: 1_700_000_000_000, value: 0.42 },
      { metric: 'cpu.load', tags: { host: 'web-2' }, timestamp: 1_700_000_000_000, value: 0.17 },
    ]);
    console.log(`stored ${accepted} samples`);

    // Columnar: one series, many samples.
    await client.write({
      series: { metric: 'cpu.load', tags: { host: 'web-1' } },
      timestamps: [1_700_000_010_000, 1_700_000_020_000],
      values: [0.47, 0.51],
    });

    // Many small writes, coalesced into batches.
    const writer = client.writer({ maxSamples: 1000, maxDelayMs: 50 });
    for (let i = 0; i < 100; i++) {
      await writer.write([
        { metric: 'requests', tags: { path: '/' }, timestamp: 1_700_000_000_000 + i, value: i },
      ]);
    }
    await writer.close();

    for await (const series of client.query({
      metric: 'cpu.load',
      matchers: [{ name: 'host', op: '=', value: 'web-1' }],
      start: 1_700_000_000_000,
      end: 1_700_000_060_000,
    })) {
      console.log(series.tags.host, series.timestamps, series.values);
    }
  } finally {
    await client.close();
  }
  // example:end
}

function dedent(lines: string[]): string {
  const indent = Math.min(
    ...lines.filter((l) => l.trim() !== '').map((l) => l.length - l.trimStart().length),
  );
  return lines
    .map((l) => l.slice(indent))
    .join('\n')
    .trim();
}

describe('docs/client.md example', () => {
  it('runs against a cluster', async () => {
    vi.stubEnv('TIDEMARK_ADDR', cluster.endpoints[0]!);
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    await example();
    expect(log.mock.calls).toEqual([
      ['stored 2 samples'],
      ['web-1', [1_700_000_000_000, 1_700_000_010_000, 1_700_000_020_000], [0.42, 0.47, 0.51]],
    ]);
    expect(cluster.stored().filter((s) => s.metric === 'requests').length).toBe(100);
  });

  it('is the code shown in the doc', () => {
    const src = readFileSync(new URL(import.meta.url), 'utf8').split('\n');
    const from = src.findIndex((l) => l.trim() === '// example:start');
    const to = src.findIndex((l) => l.trim() === '// example:end');
    const code = dedent(src.slice(from + 1, to));
    const doc = readFileSync(new URL('../../docs/client.md', import.meta.url), 'utf8');
    const m = /<!-- example: test\/client\/example\.test\.ts -->\n```ts\n([\s\S]*?)\n```/.exec(doc);
    expect(m, 'docs/client.md has the example block').not.toBeNull();
    expect(dedent(m![1]!.split('\n'))).toBe(code);
  });
});
