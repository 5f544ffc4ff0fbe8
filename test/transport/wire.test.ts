/**
 * Wire primitives: the packed int64 reader (no tuple per varint) must give exactly what readInt64 gives,
 * varint by varint, for every length of varint and for negative two's complement values.
 * Seeded: TIDEMARK_SEED=<n> npx vitest run test/transport/wire.test.ts replays.
 */
import { describe, expect, it } from 'vitest';
import {
  countVarints,
  int64Size,
  readInt64,
  readPackedInt64s,
  writeInt64,
} from '../../src/transport/wire.js';
import { Rng } from '../../src/util/random.js';
import { int64Bytes } from './helpers.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 20261122);

const EDGES = [
  0n,
  1n,
  127n,
  128n,
  2n ** 14n - 1n,
  2n ** 14n,
  2n ** 28n - 1n,
  2n ** 28n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 35n,
  1_763_000_000_000n, // a millisecond timestamp: 6 bytes
  2n ** 53n - 1n,
  2n ** 53n + 1n, // rounds like Number(bigint)
  2n ** 63n - 1n,
  -1n,
  -(2n ** 31n),
  -(2n ** 40n),
  -(2n ** 63n),
];

describe('readPackedInt64s', () => {
  it('decodes what readInt64 decodes, varint by varint', () => {
    const rng = new Rng(SEED);
    const where = `seed ${SEED} (replay: TIDEMARK_SEED=${SEED} npx vitest run test/transport/wire.test.ts)`;
    const values = [...EDGES];
    for (let i = 0; i < 2000; i++) {
      const bits = rng.int(0, 64);
      const v = BigInt(Math.floor(rng.next() * 2 ** 30)) << BigInt(Math.max(0, bits - 30));
      values.push(rng.chance(0.2) ? -v : v);
    }
    const bytes = Uint8Array.from(values.flatMap(int64Bytes));
    // A prefix of junk before `start` must not be read.
    const padded = new Uint8Array(bytes.length + 3);
    padded.set([0xff, 0xff, 0xff]);
    padded.set(bytes, 3);
    expect(countVarints(padded, 3, padded.length), where).toBe(values.length);
    const out = new Float64Array(values.length + 2);
    out[0] = 42;
    const next = readPackedInt64s(padded, 3, padded.length, out, 1);
    expect(next, where).toBe(values.length + 1);
    expect(out[0]).toBe(42);
    let pos = 3;
    for (let i = 0; i < values.length; i++) {
      const [want, p] = readInt64(padded, pos, padded.length);
      pos = p;
      expect(Object.is(out[i + 1], want), `${where}: value ${values[i]} → ${out[i + 1]}, want ${want}`).toBe(
        true,
      );
      expect(want, where).toBe(Number(values[i]));
    }
  });
});

describe('writeInt64 / int64Size', () => {
  it('write the bytes protobuf writes for an int64, and say how many', () => {
    const rng = new Rng(SEED + 1);
    const where = `seed ${SEED + 1} (replay: TIDEMARK_SEED=${SEED} npx vitest run test/transport/wire.test.ts)`;
    const values = EDGES.filter((v) => v <= 2n ** 53n && v >= -(2n ** 53n)).map(Number);
    values.push(2 ** 60 + 2 ** 40, 2 ** 63 - 2 ** 20); // beyond 2^53: the general path
    for (let i = 0; i < 2000; i++) values.push(Math.floor(rng.next() * 2 ** rng.int(0, 54)));
    const buf = Buffer.alloc(16);
    for (const v of values) {
      const want = int64Bytes(BigInt.asIntN(64, BigInt(v)));
      const end = writeInt64(buf, 0, v);
      expect([...buf.subarray(0, end)], `${where}: ${v}`).toEqual(want);
      expect(int64Size(v), `${where}: ${v}`).toBe(want.length);
    }
  });
});
