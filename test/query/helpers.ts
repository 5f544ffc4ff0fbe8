import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Series } from '../../src/model/index.js';
import type { SampleBatch, ShardStore } from '../../src/storage/index.js';
import type { RefSeries } from './reference.js';

/** Base seed for the randomized query tests; TIDEMARK_SEED=<n> (or <a>-<b>) replays or explores. */
export function seedList(spec: string | undefined, dflt: number[]): number[] {
  if (!spec) return dflt;
  const [a, b] = spec.split('-').map(Number);
  return Array.from({ length: (b ?? a!) - a! + 1 }, (_, i) => a! + i);
}

export function tempDir(prefix = 'tidemark-query-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Every sample of the given series as one batch. */
export function batchOf(data: readonly RefSeries[]): SampleBatch {
  let n = 0;
  for (const d of data) n += d.ts.length;
  const series: Series[] = [];
  const seriesRef = new Uint32Array(n);
  const timestamps = new Float64Array(n);
  const values = new Float64Array(n);
  let k = 0;
  data.forEach((d, i) => {
    series.push(d.series);
    for (let j = 0; j < d.ts.length; j++) {
      seriesRef[k] = i;
      timestamps[k] = d.ts[j]!;
      values[k++] = d.vals[j]!;
    }
  });
  return { series, seriesRef, timestamps, values, length: n };
}

export async function load(store: ShardStore, data: readonly RefSeries[]): Promise<void> {
  if (data.length === 0) return;
  const r = await store.append(batchOf(data));
  if (r.rejected.length > 0)
    throw new Error(`store rejected ${r.rejected.length} samples: ${r.rejected[0]!.reason}`);
}
