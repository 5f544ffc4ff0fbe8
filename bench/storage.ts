/**
 * Storage benchmark (npm run bench:storage). A benchmark, not a test: it prints numbers, never asserts.
 *
 *  1. Compression: every series of each dataset cut into chunks of the store's seal size and encoded
 *     with the codec Tidemark chooses and with Gorilla forced (the baseline): bytes/sample.
 *  2. Append: the tsbs dataset (24 h) into an LMDB shard store in time order, 10k-sample batches, a few
 *     batches in flight (group commit), each acknowledged only when durable.
 *  3. Decode: bulk decode of every sealed chunk of the loaded store.
 *  4. Queries on the loaded store: 1 series × 1 h raw; 100 series × 24 h in 1 h avg buckets.
 *
 * Options: --hosts N (tsbs hosts, default 100), --hours H (default 24), --quick (small run for smoke checks).
 * Last output line: {"bench":"storage",...} (see README).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeChunk, Encoding, encodeChunk } from '../src/chunk/index.js';
import type { Series } from '../src/model/index.js';
import { DEFAULT_STORE_OPTIONS, LmdbShardStore, type SampleBatch } from '../src/storage/index.js';
import { type Dataset, node, random, START_MS, tsbs } from './datasets.js';

const { values: args } = parseArgs({
  options: {
    hosts: { type: 'string', default: '100' },
    hours: { type: 'string', default: '24' },
    quick: { type: 'boolean', default: false },
  },
});
const quick = args.quick;
const hosts = quick ? 10 : Number(args.hosts);
const hours = quick ? 4 : Number(args.hours);
const CHUNK = DEFAULT_STORE_OPTIONS.sealSamples;

const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function compression(ds: Dataset): { chosen: number; gorilla: number; encodings: Record<string, number> } {
  let chosen = 0;
  let gorilla = 0;
  const encodings: Record<string, number> = {};
  for (const s of ds.series) {
    for (let off = 0; off < s.ts.length; off += CHUNK) {
      const n = Math.min(CHUNK, s.ts.length - off);
      const ts = s.ts.subarray(off, off + n);
      const vals = s.vals.subarray(off, off + n);
      const auto = encodeChunk(ts, vals, n);
      chosen += auto.length;
      gorilla += encodeChunk(ts, vals, n, { encoding: Encoding.Gorilla }).length;
      const name = Encoding[auto[1]!] ?? String(auto[1]);
      encodings[name] = (encodings[name] ?? 0) + 1;
    }
  }
  return { chosen: chosen / ds.samples, gorilla: gorilla / ds.samples, encodings };
}

/** Time-ordered batches of ~10k samples: all series at consecutive timestamps, as a live feed arrives. */
function* batches(ds: Dataset, batchSamples: number): Generator<SampleBatch> {
  const series: Series[] = ds.series.map((s) => s.series);
  const perStep = ds.series.length;
  const steps = Math.max(1, Math.floor(batchSamples / perStep));
  const total = ds.series[0]!.ts.length;
  for (let i0 = 0; i0 < total; i0 += steps) {
    const i1 = Math.min(total, i0 + steps);
    const length = (i1 - i0) * perStep;
    const b: SampleBatch = {
      series,
      seriesRef: new Uint32Array(length),
      timestamps: new Float64Array(length),
      values: new Float64Array(length),
      length,
    };
    let k = 0;
    for (let i = i0; i < i1; i++) {
      for (let s = 0; s < perStep; s++) {
        b.seriesRef[k] = s;
        b.timestamps[k] = ds.series[s]!.ts[i]!;
        b.values[k] = ds.series[s]!.vals[i]!;
        k++;
      }
    }
    yield b;
  }
}

async function main(): Promise<void> {
  const samplesPerTsbs = (hours * 3600) / 10;
  const datasets = [
    tsbs(hosts, samplesPerTsbs),
    node(quick ? 2 : 20, (hours * 3600) / 15),
    random(quick ? 10 : 100, samplesPerTsbs),
  ];
  const bytesPerSample: Record<string, number> = {};
  const gorillaBytesPerSample: Record<string, number> = {};
  for (const ds of datasets) {
    const c = compression(ds);
    bytesPerSample[ds.name] = round(c.chosen);
    gorillaBytesPerSample[ds.name] = round(c.gorilla);
    console.log(
      `compression ${ds.name.padEnd(6)} ${ds.samples} samples: chosen ${c.chosen.toFixed(3)} B/sample, ` +
        `gorilla ${c.gorilla.toFixed(3)} B/sample, encodings ${JSON.stringify(c.encodings)}`,
    );
  }

  const ds = datasets[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-'));
  try {
    const store = await LmdbShardStore.open(dir);
    const all = [...batches(ds, 10_000)];
    const inFlight: Promise<unknown>[] = [];
    const t0 = performance.now();
    for (const b of all) {
      inFlight.push(store.append(b));
      if (inFlight.length >= 8) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const appendSec = (performance.now() - t0) / 1000;
    const appendSamplesPerSec = ds.samples / appendSec;
    console.log(
      `append: ${ds.samples} samples in ${all.length} durable batches, ${appendSec.toFixed(2)} s → ` +
        `${Math.round(appendSamplesPerSec)} samples/s`,
    );
    await store.checkpoint();
    const st = store.stats();
    console.log(
      `store: ${st.series} series, ${st.chunks} chunks, ${(st.chunkBytes / Math.max(1, st.chunkSamples)).toFixed(3)} B/sample in sealed chunks, ${st.headSamples} head samples, ${(st.diskBytes / 1e6).toFixed(1)} MB on disk`,
    );

    // Decode: every chunk of the dataset as the store would hold it.
    const chunks: Uint8Array[] = [];
    for (const s of ds.series) {
      for (let off = 0; off < s.ts.length; off += CHUNK) {
        const n = Math.min(CHUNK, s.ts.length - off);
        chunks.push(encodeChunk(s.ts.subarray(off, off + n), s.vals.subarray(off, off + n), n));
      }
    }
    const outTs = new Float64Array(CHUNK);
    const outVals = new Float64Array(CHUNK);
    let decoded = 0;
    let reps = 0;
    const d0 = performance.now();
    do {
      for (const c of chunks) decoded += decodeChunk(c, outTs, outVals).count;
      reps++;
    } while (performance.now() - d0 < 2000 || reps < 2);
    const decodeSamplesPerSec = decoded / ((performance.now() - d0) / 1000);
    console.log(`decode: ${Math.round(decodeSamplesPerSec)} samples/s (bulk, checksum verified)`);

    // Query 1: one series, one hour, raw samples.
    const mid = START_MS + Math.floor(hours / 2) * 3600_000;
    const q1: number[] = [];
    let q1Samples = 0;
    for (let r = 0; r < 50; r++) {
      const q0 = performance.now();
      const sel = store.select({
        metric: 'cpu_usage_user',
        matchers: [{ name: 'hostname', op: '=', value: `host_${r % hosts}` }],
        minT: mid,
        maxT: mid + 3600_000 - 1,
      });
      q1Samples = 0;
      for (const s of sel) q1Samples += s.toArrays().count;
      q1.push(performance.now() - q0);
    }
    console.log(`query 1 series × 1 h raw: ${q1Samples} samples, median ${median(q1).toFixed(3)} ms`);

    // Query 2: 100 series × 24 h, average per 1 h bucket.
    const span = hours * 3600_000;
    const buckets = Math.ceil(span / 3600_000);
    const sums = new Float64Array(buckets);
    const counts = new Float64Array(buckets);
    const q2: number[] = [];
    let q2Series = 0;
    for (let r = 0; r < 10; r++) {
      const q0 = performance.now();
      const sel = store.select({ metric: 'cpu_usage_user', minT: START_MS, maxT: START_MS + span - 1 });
      q2Series = sel.length;
      for (const s of sel) {
        sums.fill(0);
        counts.fill(0);
        s.forEachBlock((ts, vals, n) => {
          for (let i = 0; i < n; i++) {
            const b = Math.floor((ts[i]! - START_MS) / 3600_000);
            sums[b]! += vals[i]!;
            counts[b]!++;
          }
        });
      }
      q2.push(performance.now() - q0);
    }
    console.log(`query ${q2Series} series × ${hours} h, 1 h avg: median ${median(q2).toFixed(2)} ms`);
    await store.close();

    console.log(
      JSON.stringify({
        bench: 'storage',
        bytesPerSample,
        gorillaBytesPerSample,
        appendSamplesPerSec: Math.round(appendSamplesPerSec),
        decodeSamplesPerSec: Math.round(decodeSamplesPerSec),
        query1hMs: round(median(q1)),
        query100x24hMs: round(median(q2)),
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
