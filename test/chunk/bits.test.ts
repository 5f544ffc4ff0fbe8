import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BitReader, BitWriter, bitLength, unzigzag, zigzag } from '../../src/chunk/bits.js';
import { RICE_BLOCK, RiceDecoder, riceCost, writeRice } from '../../src/chunk/rice.js';
import { TidemarkError } from '../../src/errors/index.js';
import { fcParams } from './helpers.js';

/** An unsigned integer of exactly up to `bits` bits (bits <= 53). */
const fieldArb = fc
  .integer({ min: 0, max: 53 })
  .chain((bits) =>
    fc
      .tuple(fc.integer({ min: 0, max: 2 ** 21 - 1 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }))
      .map(([hi, lo]) => ({ bits, value: (hi * 2 ** 32 + lo) % 2 ** bits })),
  );

describe('bit writer/reader', () => {
  it('round-trips fields of 0..53 bits at every alignment', () => {
    fc.assert(
      fc.property(fc.array(fieldArb, { maxLength: 200 }), (fields) => {
        const w = new BitWriter(8); // small initial buffer: exercises growth
        let total = 0;
        for (const f of fields) {
          w.writeBitsN(f.value, f.bits);
          total += f.bits;
        }
        expect(w.bitLength).toBe(total);
        const len = w.finish();
        expect(len).toBe(Math.ceil(total / 8));
        const r = new BitReader().init(w.bytes(), 0, len);
        for (const f of fields) expect(r.readBitsN(f.bits)).toBe(f.value);
        r.expectEnd('test');
      }),
      fcParams(500),
    );
  });

  it('errors instead of reading past the end', () => {
    const r = new BitReader().init(new Uint8Array([0xff, 0xff]), 0, 1);
    expect(r.readBits(8)).toBe(0xff);
    expect(() => r.readBits(1)).toThrow(TidemarkError);
    const r2 = new BitReader().init(new Uint8Array([0xab]), 0, 1);
    expect(() => r2.readBitsN(33)).toThrow(TidemarkError);
  });

  it('rejects non-zero padding and trailing bytes', () => {
    const r = new BitReader().init(new Uint8Array([0b10000001]), 0, 1);
    r.readBits(1);
    expect(() => r.expectEnd('test')).toThrow(/padding/);
    const r2 = new BitReader().init(new Uint8Array([0, 0]), 0, 2);
    r2.readBits(1);
    expect(() => r2.expectEnd('test')).toThrow(/trailing/);
  });

  it('zigzag and bitLength are exact up to 2^52', () => {
    for (const v of [0, 1, -1, 2 ** 31, -(2 ** 31), 2 ** 32 + 1, -(2 ** 51), 2 ** 51 - 1]) {
      expect(unzigzag(zigzag(v))).toBe(v);
    }
    expect(zigzag(-1)).toBe(1);
    expect(zigzag(1)).toBe(2);
    expect(bitLength(0)).toBe(0);
    expect(bitLength(1)).toBe(1);
    expect(bitLength(2 ** 32)).toBe(33);
    expect(bitLength(2 ** 53 - 1)).toBe(53);
  });
});

/** Residual streams of varied shapes: zeros, sparse, geometric, outliers, huge. */
const residualsArb = fc
  .tuple(
    fc.integer({ min: 0, max: 5 * RICE_BLOCK }),
    fc.constantFrom('zero', 'sparse', 'small', 'wide', 'huge', 'mixed'),
    fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  )
  .map(([n, shape, seed]) => {
    let s = seed;
    const rnd = () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 2 ** 32;
    };
    const z = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const pick =
        shape === 'mixed' ? ['zero', 'sparse', 'small', 'wide', 'huge'][Math.floor(rnd() * 5)] : shape;
      switch (pick) {
        case 'zero':
          z[i] = 0;
          break;
        case 'sparse':
          z[i] = rnd() < 0.05 ? 1 + Math.floor(rnd() * 100) : 0;
          break;
        case 'small':
          z[i] = Math.floor(-Math.log(1 - rnd()) * 3);
          break;
        case 'wide':
          z[i] = Math.floor(rnd() * 2 ** Math.floor(rnd() * 40));
          break;
        default:
          z[i] = Math.floor(rnd() * 2 ** 21) * 2 ** 32 + Math.floor(rnd() * 2 ** 32); // up to 2^53 - 1
      }
    }
    return z;
  });

describe('block-adaptive Rice code', () => {
  it('round-trips and its cost model matches the written size exactly', () => {
    fc.assert(
      fc.property(residualsArb, (z) => {
        const w = new BitWriter();
        writeRice(w, z, z.length);
        expect(w.bitLength).toBe(riceCost(z, z.length));
        const len = w.finish();
        const r = new BitReader().init(w.bytes(), 0, len);
        const d = new RiceDecoder();
        d.init(r, z.length);
        for (let i = 0; i < z.length; i++) {
          if (d.next() !== z[i]) throw new Error(`residual ${i} differs`);
        }
        r.expectEnd('test');
      }),
      fcParams(1000),
    );
  });

  it('bulk readInto decodes the same residuals as next(), in any mix of run lengths', () => {
    fc.assert(
      fc.property(residualsArb, fc.array(fc.integer({ min: 1, max: 150 }), { minLength: 1 }), (z, runs) => {
        const w = new BitWriter();
        writeRice(w, z, z.length);
        const len = w.finish();
        const r = new BitReader().init(w.bytes(), 0, len);
        const d = new RiceDecoder();
        d.init(r, z.length);
        const out = new Float64Array(z.length + 3);
        let i = 0;
        for (let k = 0; i < z.length; k++) {
          const n = Math.min(z.length - i, runs[k % runs.length]!);
          if (k % 3 === 2) {
            out[3 + i] = d.next(); // interleaved single reads
            i++;
            continue;
          }
          d.readInto(out, 3 + i, n);
          i += n;
        }
        expect([...out.subarray(3)]).toEqual([...z]);
        r.expectEnd('test');
      }),
      fcParams(1000),
    );
  });
});
