/**
 * The storage benchmark's datasets (bench/datasets.ts), cut to a size for tests: the compression targets are
 * checked on the same generators the benchmark measures.
 */
import * as bench from '../../bench/datasets.js';

export const CHUNK = 1024;

export interface Series {
  ts: Float64Array;
  vals: Float64Array;
}

const NODE_SERIES_PER_HOST = bench.node(1, 1).series.length;

/** `series` TSBS cpu-only series (10 per host) of n samples. */
export function tsbs(seed: number, series: number, n: number): Series[] {
  return bench.tsbs(Math.ceil(series / 10), n, seed).series.slice(0, series);
}

/** node_exporter-like: whole hosts (every metric kind in its real proportion), at least `series` series. */
export function node(seed: number, series: number, n: number): Series[] {
  return bench.node(Math.ceil(series / NODE_SERIES_PER_HOST), n, seed).series;
}

export function random(seed: number, series: number, n: number): Series[] {
  return bench.random(series, n, seed).series;
}

export function chunksOf(data: Series[]): Series[] {
  const out: Series[] = [];
  for (const s of data) {
    for (let i = 0; i + CHUNK <= s.ts.length; i += CHUNK) {
      out.push({ ts: s.ts.subarray(i, i + CHUNK), vals: s.vals.subarray(i, i + CHUNK) });
    }
  }
  return out;
}
