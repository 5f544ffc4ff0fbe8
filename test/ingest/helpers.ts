/** Shared seeds and generators for the ingest tests. Every random source is seeded. */
import fc from 'fast-check';
import type { Series } from '../../src/model/index.js';
import type { SampleBatch } from '../../src/storage/store.js';
import { Rng } from '../../src/util/random.js';

/** Base seed for every property/fuzz test; TIDEMARK_SEED=<n> reproduces or explores. */
export const SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);

export function fcParams(numRuns: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns, verbose: 1 };
}

export function rng(salt: number): Rng {
  return new Rng((SEED ^ salt) >>> 0);
}

/** Reports the seed when a seeded test fails. */
export function withSeed(name: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    console.error(
      `${name} failed with seed ${SEED} (rerun: TIDEMARK_SEED=${SEED} npx vitest run test/ingest)`,
    );
    throw err;
  }
}

const nameChars = 'abcxyzABC019_-./é';
export const nameArb = fc
  .array(fc.constantFrom(...nameChars.split('')), { minLength: 1, maxLength: 12 })
  .map((cs) => cs.join(''))
  .filter((s) => !s.startsWith('__'));
export const valueArb = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 12 })
  .filter((s) => s.isWellFormed() && !/[\u0000-\u001f\u007f]/.test(s) && Buffer.byteLength(s) <= 256);

export const seriesArb: fc.Arbitrary<Series> = fc.record({
  metric: nameArb,
  tags: fc.dictionary(nameArb, valueArb, { maxKeys: 5 }).map((t) => {
    const o: Record<string, string> = Object.create(null);
    for (const [k, v] of Object.entries(t)) o[k] = v;
    return o;
  }),
});

/** Any float64 bit pattern (NaN payloads, -0, subnormals, infinities). */
export const float64BitsArb = fc.tuple(
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.integer({ min: 0, max: 0xffffffff }),
);

const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function setBits(f: Float64Array, i: number, hi: number, lo: number): void {
  const u = new Uint32Array(f.buffer, f.byteOffset + i * 8, 2);
  u[LE ? 1 : 0] = hi >>> 0;
  u[LE ? 0 : 1] = lo >>> 0;
}

export function sameBits(a: Float64Array, b: Float64Array, n: number): boolean {
  return Buffer.from(a.buffer, a.byteOffset, n * 8).equals(Buffer.from(b.buffer, b.byteOffset, n * 8));
}

/** Series and samples of a batch as plain tuples (series by formatted identity), for comparisons. */
export function samplesOf(b: SampleBatch): [string, number, string][] {
  const out: [string, number, string][] = [];
  for (let i = 0; i < b.length; i++) {
    const s = b.series[b.seriesRef[i]];
    const bits = Buffer.from(b.values.buffer, b.values.byteOffset + i * 8, 8).toString('hex');
    out.push([seriesKeyOf(s), b.timestamps[i], bits]);
  }
  return out;
}

export function seriesKeyOf(s: Series): string {
  const names = Object.keys(s.tags).sort();
  return `${s.metric}{${names.map((n) => `${n}=${s.tags[n]}`).join(',')}}`;
}
