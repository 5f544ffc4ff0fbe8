import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatSeries, makeSeries, type Series } from '../model/index.js';
import { LmdbShardStore, type SampleBatch } from '../storage/index.js';
import { Rng } from '../util/random.js';

const SPARK = '▁▂▃▄▅▆▇█';

function sparkline(values: number[]): string {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return values.map((v) => SPARK[hi === lo ? 0 : Math.round(((v - lo) / (hi - lo)) * 7)]).join('');
}

/**
 * A single-node walkthrough: writes a day of cpu metrics for a few hosts into an LMDB shard store, reopens it
 * (the data is durable), and prints queries over it. The cluster commands replace this as the quick start.
 */
export async function demo(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' },
      hosts: { type: 'string', default: '8' },
      hours: { type: 'string', default: '24' },
    },
  });
  const hosts = Number(values.hosts);
  const hours = Number(values.hours);
  if (!Number.isInteger(hosts) || hosts < 1 || hosts > 10_000) throw new Error('--hosts must be 1..10000');
  if (!Number.isInteger(hours) || hours < 1 || hours > 24 * 31) throw new Error('--hours must be 1..744');
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'tidemark-demo-'));
  const keep = values.dir !== undefined;
  const intervalMs = 10_000;
  const end = Math.floor(Date.now() / intervalMs) * intervalMs;
  const start = end - hours * 3600_000;
  const steps = (end - start) / intervalMs;
  const rng = new Rng(42);

  const series: Series[] = [];
  for (let h = 0; h < hosts; h++) {
    for (const mode of ['user', 'system', 'idle']) {
      series.push(makeSeries('cpu.usage', { host: `web-${h}`, mode, dc: h % 2 ? 'eu-west' : 'us-east' }));
    }
  }
  const walks = series.map(() => 20 + rng.next() * 40);

  let store = await LmdbShardStore.open(dir);
  try {
    const t0 = performance.now();
    const perBatch = Math.max(1, Math.floor(10_000 / series.length));
    for (let i0 = 0; i0 < steps; i0 += perBatch) {
      const n = Math.min(perBatch, steps - i0) * series.length;
      const batch: SampleBatch = {
        series,
        seriesRef: new Uint32Array(n),
        timestamps: new Float64Array(n),
        values: new Float64Array(n),
        length: n,
      };
      let k = 0;
      for (let i = i0; i < Math.min(steps, i0 + perBatch); i++) {
        for (let s = 0; s < series.length; s++) {
          walks[s] = Math.min(100, Math.max(0, walks[s]! + (rng.next() - 0.5) * 4));
          batch.seriesRef[k] = s;
          batch.timestamps[k] = start + i * intervalMs;
          batch.values[k] = Math.round(walks[s]! * 10) / 10;
          k++;
        }
      }
      await store.append(batch);
    }
    const written = steps * series.length;
    const ms = performance.now() - t0;
    console.log(`wrote ${written} samples for ${series.length} series into ${dir} in ${ms.toFixed(0)} ms`);

    // Close and reopen: what was acknowledged is on disk.
    await store.close();
    store = await LmdbShardStore.open(dir);
    const st = store.stats();
    console.log(
      `reopened: ${st.series} series, ${st.chunks} sealed chunks (${(st.chunkBytes / Math.max(1, st.chunkSamples)).toFixed(2)} bytes/sample), ${st.headSamples} samples in the head`,
    );
    console.log(`metrics: ${store.metricNames().join(', ')}; tag keys: ${store.labelNames().join(', ')}`);

    console.log(`\ncpu.usage{mode=user,dc=eu-west}: hourly average over the last ${hours} h`);
    const sel = store.select({
      metric: 'cpu.usage',
      matchers: [
        { name: 'mode', op: '=', value: 'user' },
        { name: 'dc', op: '=', value: 'eu-west' },
      ],
      minT: start,
      maxT: end,
    });
    const byName = (a: { series: Series }, b: { series: Series }) =>
      formatSeries(a.series).localeCompare(formatSeries(b.series));
    for (const s of [...sel].sort(byName)) {
      const sums = new Array<number>(hours).fill(0);
      const counts = new Array<number>(hours).fill(0);
      s.forEachBlock((ts, vals, n) => {
        for (let i = 0; i < n; i++) {
          const b = Math.min(hours - 1, Math.floor((ts[i]! - start) / 3600_000));
          sums[b]! += vals[i]!;
          counts[b]!++;
        }
      });
      const avg = sums.map((x, i) => x / Math.max(1, counts[i]!));
      console.log(
        `  ${formatSeries(s.series).padEnd(48)} ${sparkline(avg)}  last hour ${avg.at(-1)!.toFixed(1)}`,
      );
    }
    const last = store.select({
      metric: 'cpu.usage',
      matchers: [{ name: 'host', op: '=~', value: 'web-[01]' }],
      minT: end - 60_000,
      maxT: end,
    });
    console.log(`\nlast minute, host=~web-[01]:`);
    for (const s of [...last].sort(byName)) {
      const { ts, vals, count } = s.toArrays();
      const pts = Array.from(
        { length: count },
        (_, i) => `${new Date(ts[i]!).toISOString().slice(11, 19)}=${vals[i]}`,
      );
      console.log(`  ${formatSeries(s.series).padEnd(48)} ${pts.join(' ')}`);
    }
    return 0;
  } finally {
    await store.close();
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}
