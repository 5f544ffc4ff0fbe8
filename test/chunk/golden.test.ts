import { describe, expect, it } from 'vitest';
import { decodeChunk, Encoding, encodeChunk } from '../../src/chunk/index.js';

/** The test vectors of docs/format/chunk.md: any change here is a format change (new version!). */
const ts = [1700000000000, 1700000010000, 1700000020000, 1700000030000, 1700000045000];
const vectors: { vals: number[]; encoding?: Encoding; hex: string }[] = [
  {
    vals: [0.5, 0.75, 1.25, 1.25, -3],
    hex: '01020000050000000068e5cf8b010000c817e6cf8b010000080000000900000007be920a3a7101fffe74e200287c8047323263fd44',
  },
  {
    vals: [0.5, 0.75, 1.25, 1.25, -3],
    encoding: Encoding.Gorilla,
    hex: '01010000050000000068e5cf8b010000c817e6cf8b010000080000001000000031ce50273a7101fffe74e2003fe0000000000000d80f587d80efffc0',
  },
  {
    vals: [7, 7, 7, 7, 7],
    hex: '01030000050000000068e5cf8b010000c817e6cf8b0100000800000008000000b4b0ae1d3a7101fffe74e200401c000000000000',
  },
];

describe('format test vectors', () => {
  for (const v of vectors) {
    it(`encodes ${JSON.stringify(v.vals)} (${v.encoding ?? 'auto'}) to the documented bytes`, () => {
      const b = encodeChunk(
        ts,
        v.vals,
        ts.length,
        v.encoding === undefined ? undefined : { encoding: v.encoding },
      );
      expect(Buffer.from(b).toString('hex')).toBe(v.hex);
      const d = decodeChunk(new Uint8Array(Buffer.from(v.hex, 'hex')));
      expect(Array.from(d.ts)).toEqual(ts);
      expect(Array.from(d.vals)).toEqual(v.vals);
    });
  }
});
