import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  CHUNK_HEADER_SIZE,
  ChunkIterator,
  decodeChunk,
  Encoding,
  encodeChunk,
  readChunkHeader,
} from '../../src/chunk/index.js';
import { TidemarkError } from '../../src/errors/index.js';
import { node, tsbs } from './datasets.js';
import { genTimestamps, genValues, rng, SEED, type ValueKind } from './helpers.js';

/** Recomputes the checksum so a mutation reaches the decoders instead of stopping at the CRC. */
function fixCrc(b: Uint8Array): void {
  if (b.length < CHUNK_HEADER_SIZE) return;
  const c = crc32(b.subarray(CHUNK_HEADER_SIZE), crc32(b.subarray(0, 32)));
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(32, c, true);
}

function setU32(b: Uint8Array, off: number, v: number): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(off, v >>> 0, true);
}

function getU32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off, true);
}

function corruptionReason(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (!(e instanceof TidemarkError) || e.code !== 'DATA_CORRUPTION') throw e;
    return e.reason;
  }
}

function sample(): Uint8Array {
  const ts = new Float64Array(100).map((_, i) => 1_700_000_000_000 + i * 10_000 + (i % 3));
  const vals = new Float64Array(100).map((_, i) => Math.round(Math.sin(i) * 1000) / 100);
  return encodeChunk(ts, vals, 100);
}

describe('corrupt chunks: targeted cases', () => {
  const good = sample();

  it('rejects every truncation', () => {
    for (let len = 0; len < good.length; len++) {
      expect(corruptionReason(() => decodeChunk(good.subarray(0, len)))).toMatch(/^chunk_/);
    }
  });

  it('rejects trailing bytes', () => {
    const ext = new Uint8Array(good.length + 1);
    ext.set(good);
    expect(corruptionReason(() => decodeChunk(ext))).toBe('chunk_trailing_data');
  });

  it('detects any single bit flip through the checksum', () => {
    for (let bit = 0; bit < good.length * 8; bit++) {
      const b = good.slice();
      b[bit >>> 3] ^= 1 << (bit & 7);
      expect(corruptionReason(() => decodeChunk(b))).not.toBeNull();
    }
  });

  it('refuses unknown versions and encodings (even with a valid checksum)', () => {
    const v = good.slice();
    v[0] = 2;
    fixCrc(v);
    expect(corruptionReason(() => readChunkHeader(v))).toBe('chunk_unsupported_version');
    const e = good.slice();
    e[1] = 77;
    fixCrc(e);
    expect(corruptionReason(() => decodeChunk(e))).toBe('chunk_unsupported_encoding');
    const r = good.slice();
    r[2] = 1;
    fixCrc(r);
    expect(corruptionReason(() => decodeChunk(r))).toBe('chunk_bad_header');
  });

  it('sanity-checks the count before allocating', () => {
    for (const count of [0, 65536, 2 ** 32 - 1, 99, 101]) {
      const b = good.slice();
      setU32(b, 4, count);
      fixCrc(b);
      expect(corruptionReason(() => decodeChunk(b))).not.toBeNull();
    }
  });

  it('rejects inconsistent timestamp range fields', () => {
    for (const [off, v] of [
      [8 + 4, 0x10000], // minT >= 2^48
      [16 + 4, 0xffffffff],
      [16, 0], // maxT < minT
      [8, 5], // minT changed: last timestamp no longer maxT... or > maxT
    ] as const) {
      const b = good.slice();
      setU32(b, off, v);
      fixCrc(b);
      expect(corruptionReason(() => decodeChunk(b))).not.toBeNull();
    }
  });

  it('rejects section lengths that disagree with the data', () => {
    const tsLen = getU32(good, 24);
    const valLen = getU32(good, 28);
    for (const [a, b] of [
      [tsLen + 1, valLen - 1],
      [tsLen - 1, valLen + 1],
      [0, tsLen + valLen],
      [tsLen + valLen, 0],
    ]) {
      const c = good.slice();
      setU32(c, 24, a);
      setU32(c, 28, b);
      fixCrc(c);
      expect(corruptionReason(() => decodeChunk(c))).not.toBeNull();
    }
  });

  it('a bit reader that runs past its section errors instead of reading zeros', () => {
    // Gorilla chunk whose value section is cut short, lengths and CRC made consistent.
    const ts = new Float64Array(50).map((_, i) => i);
    const vals = new Float64Array(50).map((_, i) => Math.PI * i);
    const g = encodeChunk(ts, vals, 50, { encoding: Encoding.Gorilla });
    const cut = g.slice(0, g.length - 3);
    setU32(cut, 28, getU32(g, 28) - 3);
    fixCrc(cut);
    expect(corruptionReason(() => decodeChunk(cut))).toBe('chunk_truncated');
    const it = new ChunkIterator(cut);
    expect(it.next()).toBe(false);
    expect(it.err()?.reason).toBe('chunk_truncated');
  });

  it('skipping the checksum still never crashes on corrupt bodies', () => {
    const b = good.slice();
    for (let i = CHUNK_HEADER_SIZE; i < b.length; i++) b[i] = 0xff;
    expect(
      corruptionReason(() => decodeChunk(b, undefined, undefined, { verifyChecksum: false })),
    ).not.toBeNull();
  });
});

/**
 * Fuzzer: mutates valid chunks in many ways (bit flips, truncation, extension, random bytes, header
 * tampering), usually recomputing the checksum so the decoders themselves are exercised. Every input
 * must decode to a self-consistent result or fail with DATA_CORRUPTION; nothing else is acceptable.
 */
describe('corrupt chunks: fuzz', () => {
  const ITERATIONS = Number(process.env.CHUNK_FUZZ_ITERATIONS ?? 100_000);

  it(`survives ${ITERATIONS} mutated chunks (seed ${SEED})`, () => {
    const r = rng(SEED ^ 0x5eed);
    const rint = (n: number) => Math.floor(r() * n);
    const kinds: ValueKind[] = ['bits', 'special', 'integer', 'decimal', 'counter', 'constant', 'mixed'];
    const corpus: Uint8Array[] = [];
    for (let i = 0; i < 60; i++) {
      const count = [1, 2, 3, 64, 65, 130][i % 6] + rint(40);
      const kind = kinds[i % kinds.length];
      const ts = genTimestamps(r, count);
      const vals = genValues(r, count, kind);
      const enc = [undefined, Encoding.Gorilla, Encoding.Decimal][i % 3];
      try {
        corpus.push(encodeChunk(ts, vals, count, enc === undefined ? undefined : { encoding: enc }));
      } catch {
        corpus.push(encodeChunk(ts, vals, count));
      }
    }
    // Realistic chunks too (sparse Rice blocks, order-1/2 decimals with bias).
    for (const s of [...node(SEED, 8, 130), ...tsbs(SEED, 2, 130)])
      corpus.push(encodeChunk(s.ts, s.vals, 130));
    const encodings = new Set(corpus.map((c) => c[1]));
    expect(encodings.size).toBe(3);

    const outTs = new Float64Array(70_000);
    const outVals = new Float64Array(70_000);
    const it = new ChunkIterator();
    let decodedOk = 0;
    let failed = 0;
    // A decoder that hangs on some input fails this test by vitest's timeout; speed is not asserted.

    for (let n = 0; n < ITERATIONS; n++) {
      const orig = corpus[rint(corpus.length)];
      let b: Uint8Array = orig.slice();
      const op = rint(9);
      let fix = r() < 0.75;
      switch (op) {
        case 0:
        case 1: {
          // 1..8 bit flips anywhere (often the body)
          const flips = 1 + rint(8);
          for (let i = 0; i < flips; i++) {
            const pos =
              r() < 0.8 && b.length > CHUNK_HEADER_SIZE
                ? CHUNK_HEADER_SIZE + rint(b.length - CHUNK_HEADER_SIZE)
                : rint(b.length);
            b[pos] ^= 1 << rint(8);
          }
          break;
        }
        case 2: {
          // truncation, sometimes with lengths made consistent
          b = b.slice(0, rint(b.length));
          if (b.length >= CHUNK_HEADER_SIZE && r() < 0.7) {
            const tsLen = getU32(b, 24);
            const body = b.length - CHUNK_HEADER_SIZE;
            if (tsLen <= body) setU32(b, 28, body - tsLen);
            else {
              setU32(b, 24, body);
              setU32(b, 28, 0);
            }
          }
          break;
        }
        case 3: {
          // extension with random bytes, sometimes with lengths made consistent
          const extra = 1 + rint(32);
          const e = new Uint8Array(b.length + extra);
          e.set(b);
          for (let i = b.length; i < e.length; i++) e[i] = rint(256);
          b = e;
          if (r() < 0.7) setU32(b, 28, getU32(b, 28) + extra);
          break;
        }
        case 4: {
          // random bytes over a range
          const start = rint(b.length);
          const len = 1 + rint(16);
          for (let i = start; i < Math.min(b.length, start + len); i++) b[i] = rint(256);
          break;
        }
        case 5: {
          // header field tampering
          const field = rint(7);
          const edge = [0, 1, 2, 0xffffffff, 0xffff, 0x10000, 65535, 65536, rint(2 ** 32)];
          const v =
            r() < 0.5 ? edge[rint(edge.length)] : getU32(b, [4, 8, 12, 16, 20, 24, 28][field]) + rint(5) - 2;
          setU32(b, [4, 8, 12, 16, 20, 24, 28][field], v);
          break;
        }
        case 6: {
          // count +-1 or minT/maxT shifted consistently-looking
          if (r() < 0.5) setU32(b, 4, getU32(b, 4) + (r() < 0.5 ? 1 : -1));
          else setU32(b, r() < 0.5 ? 8 : 16, getU32(b, 8) + rint(3) - 1);
          break;
        }
        case 7: {
          // fully random body under a valid header
          for (let i = CHUNK_HEADER_SIZE; i < b.length; i++) b[i] = rint(256);
          fix = true;
          break;
        }
        default: {
          // byte-level version/encoding/reserved tampering
          const off = rint(4);
          b[off] = r() < 0.5 ? rint(4) : rint(256);
        }
      }
      if (fix) fixCrc(b);
      const changed = b.length !== orig.length || !Buffer.from(b).equals(Buffer.from(orig));

      let ok = false;
      try {
        const d = decodeChunk(b, outTs, outVals);
        ok = true;
        // A successful decode must be self-consistent with its header.
        const h = readChunkHeader(b);
        expect(d.count).toBe(h.count);
        expect(d.ts[0]).toBe(h.minT);
        expect(d.ts[d.count - 1]).toBe(h.maxT);
        for (let i = 1; i < d.count; i++) {
          if (!(d.ts[i] >= d.ts[i - 1])) throw new Error(`decoded timestamps decrease at ${i}`);
        }
      } catch (e) {
        if (!(e instanceof TidemarkError) || e.code !== 'DATA_CORRUPTION') {
          throw new Error(
            `mutation op ${op} (iteration ${n}, seed ${SEED}) threw a non-corruption error: ${e}`,
          );
        }
      }
      // Without a recomputed checksum, any change must be caught (CRC-32 detects these mutations).
      if (!fix && changed) expect(ok).toBe(false);
      if (ok) decodedOk++;
      else failed++;

      // The unchecked hot path and the iterator must behave too.
      if (n % 8 === 0) {
        try {
          decodeChunk(b, outTs, outVals, { verifyChecksum: false });
        } catch (e) {
          if (!(e instanceof TidemarkError) || e.code !== 'DATA_CORRUPTION') throw e;
        }
        it.reset(b);
        while (it.next()) {}
        const err = it.err();
        expect(err === null || err.code === 'DATA_CORRUPTION').toBe(true);
        expect(err === null).toBe(ok);
      }
    }
    expect(decodedOk + failed).toBe(ITERATIONS);
    // Sanity: the fuzzer reaches both outcomes.
    expect(decodedOk).toBeGreaterThan(0);
    expect(failed).toBeGreaterThan(ITERATIONS / 2);
  });
});
