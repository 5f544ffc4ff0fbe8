import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatSeries, type Series } from '../../src/model/index.js';
import type { SampleBatch, SelectRequest, ShardStore } from '../../src/storage/index.js';
import { Rng } from '../../src/util/random.js';

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

/**
 * Everything a select returns, in plain arrays; also cross-checks iterator vs bulk access, and selectLast
 * against the last sample of each selected series (same series, same order).
 */
export function dump(store: ShardStore, req: SelectRequest): Dumped[] {
  const out = dumpSelect(store, req);
  const last = store.selectLast(req).map((x) => ({ series: formatSeries(x.series), t: x.t, v: x.v }));
  const want = out.map((d) => ({ series: d.series, t: d.ts.at(-1)!, v: d.vals.at(-1)! }));
  if (JSON.stringify(last) !== JSON.stringify(want) || !last.every((x, i) => Object.is(x.v, want[i]!.v)))
    throw new Error(`selectLast ${JSON.stringify(last)} != last of select ${JSON.stringify(want)}`);
  return out;
}

function dumpSelect(store: ShardStore, req: SelectRequest): Dumped[] {
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

/** A seeded uniform [0, 1) source. */
export function rng(seed: number): () => number {
  return new Rng(seed).fn();
}
