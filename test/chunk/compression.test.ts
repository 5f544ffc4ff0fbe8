import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeChunk, Encoding, encodeChunk, readChunkHeader } from '../../src/chunk/index.js';
import { CHUNK, chunksOf, node, random, type Series, tsbs } from './datasets.js';
import { caseArb, fcParams, SEED } from './helpers.js';

function bytesPerSample(chunks: Series[], encoding?: Encoding): number {
  let bytes = 0;
  for (const c of chunks)
    bytes += encodeChunk(c.ts, c.vals, CHUNK, encoding === undefined ? undefined : { encoding }).length;
  return bytes / (chunks.length * CHUNK);
}

describe('compression', () => {
  it('is never larger than the Gorilla baseline (random cases)', () => {
    fc.assert(
      fc.property(caseArb(600), (c) => {
        const auto = encodeChunk(c.ts, c.vals, c.count);
        const gorilla = encodeChunk(c.ts, c.vals, c.count, { encoding: Encoding.Gorilla });
        expect(auto.length).toBeLessThanOrEqual(gorilla.length);
      }),
      fcParams(500),
    );
  });

  it('meets the tsbs-like target (<= 0.6 bytes/sample) and beats Gorilla', () => {
    const chunks = chunksOf(tsbs(SEED, 8, 2 * CHUNK));
    const auto = bytesPerSample(chunks);
    expect(auto).toBeLessThanOrEqual(0.6);
    expect(auto).toBeLessThan(bytesPerSample(chunks, Encoding.Gorilla));
  });

  it('meets the node-like target (<= 1.0 bytes/sample) and beats Gorilla', () => {
    const chunks = chunksOf(node(SEED, 16, 2 * CHUNK));
    const auto = bytesPerSample(chunks);
    expect(auto).toBeLessThanOrEqual(1.0);
    expect(auto).toBeLessThan(bytesPerSample(chunks, Encoding.Gorilla));
  });

  it('picks Gorilla for random floats', () => {
    for (const c of chunksOf(random(SEED, 2, 2 * CHUNK))) {
      const b = encodeChunk(c.ts, c.vals, CHUNK);
      expect(readChunkHeader(b).encoding).toBe(Encoding.Gorilla);
      expect(b.length).toBe(encodeChunk(c.ts, c.vals, CHUNK, { encoding: Encoding.Gorilla }).length);
    }
  });

  it('stores a constant series and a regular timestamp grid in a few bytes', () => {
    const ts = new Float64Array(CHUNK).map((_, i) => 1_700_000_000_000 + i * 15_000);
    const vals = new Float64Array(CHUNK).fill(Math.PI);
    const b = encodeChunk(ts, vals, CHUNK);
    expect(readChunkHeader(b).encoding).toBe(Encoding.Constant);
    expect(b.length).toBeLessThan(60);
    expect(decodeChunk(b).vals[CHUNK - 1]).toBe(Math.PI);
  });
});
