/** Shared generators and checks for the chunk tests. Every random source is seeded. */
import fc from 'fast-check';
import { MAX_TIMESTAMP } from '../../src/chunk/index.js';
import { Rng } from '../../src/util/random.js';

/** Base seed for every property/fuzz test; override with TIDEMARK_SEED=<n> to reproduce or explore. */
export const SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);

export function fcParams(numRuns: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns, verbose: 1 };
}

/** A seeded uniform [0, 1) source for the fuzzer and generators. */
export function rng(seed: number): () => number {
  return new Rng(seed).fn();
}

export function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r());
}

const LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** A float64 from its two 32-bit halves, written into f[i] without passing through a JS number. */
export function setBits(f: Float64Array, i: number, hi: number, lo: number): void {
  const u = new Uint32Array(f.buffer, f.byteOffset + i * 8, 2);
  u[LE ? 1 : 0] = hi >>> 0;
  u[LE ? 0 : 1] = lo >>> 0;
}

export function bitsHex(f: Float64Array, i: number): string {
  const u = new Uint32Array(f.buffer, f.byteOffset + i * 8, 2);
  const hi = u[LE ? 1 : 0];
  const lo = u[LE ? 0 : 1];
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

/** Byte-wise equality of the first n doubles (bit-exact, NaN payloads included). */
export function sameBits(a: Float64Array, b: Float64Array, n: number): boolean {
  return Buffer.from(a.buffer, a.byteOffset, n * 8).equals(Buffer.from(b.buffer, b.byteOffset, n * 8));
}

export function firstBitDiff(a: Float64Array, b: Float64Array, n: number): string {
  for (let i = 0; i < n; i++) {
    if (bitsHex(a, i) !== bitsHex(b, i)) return `index ${i}: ${bitsHex(a, i)} vs ${bitsHex(b, i)}`;
  }
  return 'none';
}

/** Special float64 bit patterns [hi, lo]: NaN payloads (quiet/signalling, both signs), zeros, infinities, subnormals, extremes. */
export const SPECIAL_BITS: readonly [number, number][] = [
  [0x7ff80000, 0], // canonical quiet NaN
  [0x7ff80000, 1], // quiet NaN with payload
  [0x7ff00000, 1], // signalling NaN
  [0x7ff7ffff, 0xffffffff], // signalling NaN, full payload
  [0xfff80000, 0], // negative NaN
  [0xffffffff, 0xffffffff], // all-ones NaN
  [0x7ff12345, 0x6789abcd],
  [0x80000000, 0], // -0
  [0, 0], // +0
  [0x7ff00000, 0], // +Inf
  [0xfff00000, 0], // -Inf
  [0, 1], // min subnormal
  [0x000fffff, 0xffffffff], // max subnormal
  [0x80000000, 1], // negative min subnormal
  [0x7fefffff, 0xffffffff], // MAX_VALUE
  [0xffefffff, 0xffffffff], // -MAX_VALUE
  [0x00100000, 0], // min normal
  [0x3ff00000, 0], // 1
  [0x43400000, 0], // 2^53
];

export type ValueKind = 'bits' | 'special' | 'integer' | 'decimal' | 'counter' | 'constant' | 'mixed';

export interface Case {
  ts: Float64Array;
  vals: Float64Array;
  count: number;
}

/** Timestamps: a start anywhere in [0, 2^48), then deltas from a mix of regimes, clamped to MAX_TIMESTAMP. */
export function genTimestamps(r: () => number, count: number): Float64Array {
  const ts = new Float64Array(count);
  const regime = Math.floor(r() * 6);
  let t = regime === 5 ? Math.floor(r() * MAX_TIMESTAMP) : Math.floor(r() * 2e12);
  const step = [1000, 10_000, 15_000, 1, 60_000][Math.floor(r() * 5)];
  for (let i = 0; i < count; i++) {
    ts[i] = t;
    let d: number;
    switch (regime) {
      case 0: // exactly regular
        d = step;
        break;
      case 1: // jittered
        d = step + Math.round(gauss(r) * 5);
        break;
      case 2: // equal timestamps and bursts
        d = r() < 0.3 ? 0 : Math.floor(r() * 100);
        break;
      case 3: // huge gaps, up to 2^48 - 1
        d = r() < 0.2 ? Math.floor(r() * MAX_TIMESTAMP) : Math.floor(r() * 1e6);
        break;
      case 4: // random walk of deltas
        d = Math.floor(r() * 2 ** Math.floor(r() * 40));
        break;
      default:
        d = r() < 0.5 ? 0 : Math.floor(r() * 2 ** 47);
    }
    t = Math.min(MAX_TIMESTAMP, t + Math.max(0, d));
  }
  return ts;
}

export function genValues(r: () => number, count: number, kind: ValueKind): Float64Array {
  const v = new Float64Array(count);
  const pick = (): ValueKind =>
    (['bits', 'special', 'integer', 'decimal', 'counter', 'constant'] as const)[Math.floor(r() * 6)];
  let k = kind === 'mixed' ? pick() : kind;
  const digits = 1 + Math.floor(r() * 3);
  const scale = 10 ** digits;
  let acc = Math.floor(r() * 1e6);
  let constHi = Math.floor(r() * 2 ** 32);
  let constLo = Math.floor(r() * 2 ** 32);
  for (let i = 0; i < count; i++) {
    if (kind === 'mixed' && r() < 0.05) k = pick();
    switch (k) {
      case 'bits':
        setBits(v, i, Math.floor(r() * 2 ** 32), Math.floor(r() * 2 ** 32));
        break;
      case 'special': {
        const [hi, lo] = SPECIAL_BITS[Math.floor(r() * SPECIAL_BITS.length)];
        setBits(v, i, hi, lo);
        break;
      }
      case 'integer':
        acc += Math.round(gauss(r) * 3);
        v[i] = acc;
        break;
      case 'decimal':
        acc += Math.round(gauss(r) * 50);
        v[i] = acc / scale;
        break;
      case 'counter':
        acc += r() < 0.1 ? 0 : Math.floor(r() * 1000);
        v[i] = acc;
        break;
      default:
        if (i > 0 && r() < 0.01) {
          constHi = Math.floor(r() * 2 ** 32);
          constLo = Math.floor(r() * 2 ** 32);
        }
        setBits(v, i, constHi, constLo);
    }
  }
  return v;
}

/** An fc arbitrary over whole cases, built from a seed so shrinking stays meaningful for count/kind. */
export function caseArb(maxCount = 300): fc.Arbitrary<Case & { kind: ValueKind; seed: number }> {
  return fc
    .record({
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      count: fc.oneof(fc.constantFrom(1, 2, 3, 63, 64, 65, 128, 129), fc.integer({ min: 1, max: maxCount })),
      kind: fc.constantFrom<ValueKind>(
        'bits',
        'special',
        'integer',
        'decimal',
        'counter',
        'constant',
        'mixed',
      ),
    })
    .map(({ seed, count, kind }) => {
      const r = rng(seed);
      return { seed, count, kind, ts: genTimestamps(r, count), vals: genValues(r, count, kind) };
    });
}
