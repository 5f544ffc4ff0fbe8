import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatSeries, type Series } from '../../src/model/index.js';
import type { SampleBatch, SelectRequest, ShardStore } from '../../src/storage/index.js';

export function series(metric: string, tags: Record<string, string> = {}): Series {
  return { metric, tags };
}

/** A batch from [series, t, v] triples (series deduplicated by identity). */
export function batch(samples: readonly (readonly [Series, number, number])[]): SampleBatch {
  const list: Series[] = [];
  const idx = new Map<Series, number>();
  const seriesRef = new Uint32Array(samples.length);
  const timestamps = new Float64Array(samples.length);
  const values = new Float64Array(samples.length);
  samples.forEach(([s, t, v], i) => {
    let j = idx.get(s);
    if (j === undefined) {
      j = list.length;
      list.push(s);
      idx.set(s, j);
    }
    seriesRef[i] = j;
    timestamps[i] = t;
    values[i] = v;
  });
  return { series: list, seriesRef, timestamps, values, length: samples.length };
}

export interface Dumped {
  series: string;
  ts: number[];
  vals: number[];
}

/** Everything a select returns, in plain arrays; also cross-checks iterator vs bulk access. */
export function dump(store: ShardStore, req: SelectRequest): Dumped[] {
  return store.select(req).map((s) => {
    const a = s.toArrays();
    const it = s.iterator();
    const ts: number[] = [];
    const vals: number[] = [];
    while (it.next()) {
      ts.push(it.at().t);
      vals.push(it.at().v);
    }
    if (it.err() !== null) throw it.err();
    const bulk = { ts: [...a.ts], vals: [...a.vals] };
    if (JSON.stringify(bulk) !== JSON.stringify({ ts, vals }))
      throw new Error('iterator and bulk access disagree');
    return { series: formatSeries(s.series), ts, vals };
  });
}

export function tempDir(prefix = 'tidemark-store-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** mulberry32: a small seeded PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
