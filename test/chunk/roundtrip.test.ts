import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CHUNK_FORMAT_VERSION,
  CHUNK_HEADER_SIZE,
  ChunkIterator,
  decodeChunk,
  Encoding,
  encodeChunk,
  MAX_CHUNK_SAMPLES,
  MAX_TIMESTAMP,
  readChunkHeader,
} from '../../src/chunk/index.js';
import { isTidemarkError } from '../../src/errors/index.js';
import {
  type Case,
  caseArb,
  fcParams,
  firstBitDiff,
  gauss,
  genTimestamps,
  rng,
  SEED,
  SPECIAL_BITS,
  sameBits,
  setBits,
} from './helpers.js';

/** Encodes with the given encoding (undefined = auto); null when a forced encoding does not apply. */
function tryEncode(c: Case, encoding?: Encoding): Uint8Array | null {
  try {
    return encodeChunk(c.ts, c.vals, c.count, encoding === undefined ? undefined : { encoding });
  } catch (e) {
    if (
      encoding !== undefined &&
      isTidemarkError(e, 'INVALID_ARGUMENT') &&
      e.reason === 'encoding_not_applicable'
    ) {
      return null;
    }
    throw e;
  }
}

function firstTsDiff(ts: Float64Array, c: Case): number {
  for (let i = 0; i < c.count; i++) if (ts[i] !== c.ts[i]) return i;
  return -1;
}

/** Full check of one chunk against its source samples: header, bulk decode, iterator. */
function checkChunk(bytes: Uint8Array, c: Case, encoding?: Encoding): void {
  const h = readChunkHeader(bytes);
  expect(h.version).toBe(CHUNK_FORMAT_VERSION);
  if (encoding !== undefined) expect(h.encoding).toBe(encoding);
  expect(h.count).toBe(c.count);
  expect(h.minT).toBe(c.ts[0]);
  expect(h.maxT).toBe(c.ts[c.count - 1]);
  expect(h.byteLength).toBe(bytes.length);

  const d = decodeChunk(bytes);
  expect(d.count).toBe(c.count);
  expect(firstTsDiff(d.ts, c)).toBe(-1);
  if (!sameBits(d.vals, c.vals, c.count)) {
    throw new Error(`value bits differ (encoding ${h.encoding}): ${firstBitDiff(d.vals, c.vals, c.count)}`);
  }

  // Reused, oversized output buffers.
  const outTs = new Float64Array(c.count + 5).fill(-1);
  const outVals = new Float64Array(c.count + 5).fill(-1);
  const d2 = decodeChunk(bytes, outTs, outVals);
  expect(d2.ts).toBe(outTs);
  expect(d2.vals).toBe(outVals);
  expect(sameBits(outVals, c.vals, c.count)).toBe(true);
  expect(outTs[c.count]).toBe(-1);

  const it = new ChunkIterator(bytes);
  let i = 0;
  let bad = -1;
  while (it.next()) {
    const s = it.at();
    const sameV = Object.is(s.v, c.vals[i]) || (Number.isNaN(s.v) && Number.isNaN(c.vals[i]));
    if (bad < 0 && (s.t !== c.ts[i] || it.t !== c.ts[i] || !sameV || !Object.is(it.v, s.v))) bad = i;
    i++;
  }
  expect(bad).toBe(-1);
  expect(i).toBe(c.count);
  expect(it.err()).toBeNull();
  expect(it.next()).toBe(false);
}

describe('chunk round trip', () => {
  it('round-trips random cases bit-exactly for auto and every forced encoding', () => {
    fc.assert(
      fc.property(caseArb(), (c) => {
        const auto = tryEncode(c)!;
        checkChunk(auto, c);
        const gorilla = tryEncode(c, Encoding.Gorilla)!;
        checkChunk(gorilla, c, Encoding.Gorilla);
        expect(auto.length).toBeLessThanOrEqual(gorilla.length);
        for (const enc of [Encoding.Decimal, Encoding.Constant]) {
          const b = tryEncode(c, enc);
          if (b !== null) checkChunk(b, c, enc);
        }
        if (c.kind === 'integer' || c.kind === 'decimal' || c.kind === 'counter') {
          // These generators only produce exact decimals in range: the Decimal codec must apply.
          expect(tryEncode(c, Encoding.Decimal)).not.toBeNull();
        }
      }),
      fcParams(1000),
    );
  });

  it('accepts plain arrays as input', () => {
    const b = encodeChunk([1, 2, 3], [0.5, -1.25, 3], 3);
    const d = decodeChunk(b);
    expect(Array.from(d.ts)).toEqual([1, 2, 3]);
    expect(Array.from(d.vals)).toEqual([0.5, -1.25, 3]);
  });

  it('encodes only the first `count` samples of larger arrays', () => {
    const ts = new Float64Array([10, 20, 30, 5]);
    const vals = new Float64Array([1, 2, 3, 4]);
    const d = decodeChunk(encodeChunk(ts, vals, 3));
    expect(d.count).toBe(3);
    expect(Array.from(d.ts)).toEqual([10, 20, 30]);
  });

  it('handles every special value, alone and in sequence, for every applicable encoding', () => {
    for (const [hi, lo] of SPECIAL_BITS) {
      for (const count of [1, 2, 70]) {
        const vals = new Float64Array(count);
        for (let i = 0; i < count; i++) setBits(vals, i, hi, lo);
        const c = { ts: new Float64Array(count).map((_, i) => i * 1000), vals, count };
        for (const enc of [undefined, Encoding.Gorilla, Encoding.Constant, Encoding.Decimal]) {
          const b = tryEncode(c, enc);
          if (b !== null) checkChunk(b, c, enc);
        }
      }
    }
    const n = SPECIAL_BITS.length * 3;
    const vals = new Float64Array(n);
    for (let i = 0; i < n; i++) setBits(vals, i, ...SPECIAL_BITS[(i * 7) % SPECIAL_BITS.length]);
    const c = { ts: new Float64Array(n).map((_, i) => i), vals, count: n };
    checkChunk(tryEncode(c)!, c);
    checkChunk(tryEncode(c, Encoding.Gorilla)!, c, Encoding.Gorilla);
  });

  it('never uses Decimal for -0, NaN or infinities', () => {
    for (const special of [
      -0,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      0.1 + 0.2,
      2 ** 60,
    ]) {
      const vals = new Float64Array([1, 2, special, 3]);
      const c = { ts: new Float64Array([1, 2, 3, 4]), vals, count: 4 };
      expect(tryEncode(c, Encoding.Decimal)).toBeNull();
      const b = tryEncode(c)!;
      expect(readChunkHeader(b).encoding).not.toBe(Encoding.Decimal);
      checkChunk(b, c);
    }
  });

  it('round-trips decimals with 0 to 15 fractional digits and large magnitudes', () => {
    const r = rng(SEED + 1);
    for (let digits = 0; digits <= 15; digits++) {
      const count = 200;
      const vals = new Float64Array(count);
      const scale = 10 ** digits;
      let m = Math.floor(r() * 1000);
      for (let i = 0; i < count; i++) {
        m += Math.round(gauss(r) * 1000);
        vals[i] = m / scale;
      }
      const c = { ts: genTimestamps(r, count), vals, count };
      const b = tryEncode(c, Encoding.Decimal);
      expect(b).not.toBeNull();
      checkChunk(b!, c, Encoding.Decimal);
      checkChunk(tryEncode(c)!, c);
    }
    // Mantissas near the 2^49 limit, and integers beyond it (must fall back to Gorilla).
    for (const base of [2 ** 49 - 1000, -(2 ** 49) + 1000, 2 ** 49, 2 ** 52, 1e15]) {
      const vals = new Float64Array(100).map((_, i) => base + (i % 7) * (i % 2 === 0 ? 1 : -1));
      const c = { ts: new Float64Array(100).map((_, i) => i), vals, count: 100 };
      checkChunk(tryEncode(c)!, c);
      const d = tryEncode(c, Encoding.Decimal);
      if (d !== null) checkChunk(d, c, Encoding.Decimal);
    }
  });

  it('round-trips extreme timestamps: 0, 2^48 - 1, gaps of 2^48 - 1, all equal', () => {
    const cases: number[][] = [
      [0],
      [MAX_TIMESTAMP],
      [0, MAX_TIMESTAMP],
      [0, MAX_TIMESTAMP, MAX_TIMESTAMP],
      [0, 0, MAX_TIMESTAMP, MAX_TIMESTAMP],
      [5, 5, 5, 5, 5],
      [0, 1, MAX_TIMESTAMP - 1, MAX_TIMESTAMP],
      [0, 2 ** 47, 2 ** 47 + 1, MAX_TIMESTAMP],
    ];
    for (const t of cases) {
      const c = {
        ts: Float64Array.from(t),
        vals: new Float64Array(t.length).map((_, i) => i * 0.5),
        count: t.length,
      };
      for (const enc of [undefined, Encoding.Gorilla, Encoding.Decimal])
        checkChunk(tryEncode(c, enc)!, c, enc);
    }
  });

  it('round-trips a maximum-size chunk', () => {
    const r = rng(SEED + 2);
    const count = MAX_CHUNK_SAMPLES;
    const ts = genTimestamps(r, count);
    for (const kind of ['decimal', 'bits'] as const) {
      const vals = new Float64Array(count);
      let m = 0;
      for (let i = 0; i < count; i++) {
        if (kind === 'bits') setBits(vals, i, Math.floor(r() * 2 ** 32), Math.floor(r() * 2 ** 32));
        else {
          m += Math.round(gauss(r) * 100);
          vals[i] = m / 100;
        }
      }
      const c = { ts, vals, count };
      checkChunk(tryEncode(c)!, c);
      checkChunk(tryEncode(c, Encoding.Gorilla)!, c, Encoding.Gorilla);
    }
  });

  it('writes a header at the documented offsets', () => {
    const b = encodeChunk([1000, 2000, 3000], [1, 1, 1], 3);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    expect(dv.getUint8(0)).toBe(1);
    expect(dv.getUint8(1)).toBe(Encoding.Constant);
    expect(dv.getUint16(2, true)).toBe(0);
    expect(dv.getUint32(4, true)).toBe(3);
    expect(Number(dv.getBigUint64(8, true))).toBe(1000);
    expect(Number(dv.getBigUint64(16, true))).toBe(3000);
    const h = readChunkHeader(b);
    expect(dv.getUint32(24, true)).toBe(h.tsLength);
    expect(dv.getUint32(28, true)).toBe(h.valuesLength);
    expect(CHUNK_HEADER_SIZE + h.tsLength + h.valuesLength).toBe(b.length);
    expect(h.valuesLength).toBe(8); // constant: the 64-bit value only
  });
});
