/**
 * The hand-written WriteRequest codec against protobuf-es (the generated schema):
 *  - encoder: random batches encode to bytes that protobuf-es decodes back to exactly the input, and to the
 *    very bytes protobuf-es writes;
 *  - decoder: on the same bytes, `decodeWriteRequest` gives what protobuf-es's fromBinary followed by
 *    batchFromWriteRequest gives — the same batch, or the same error — for valid requests, requests with
 *    invalid content, other legal encodings (unpacked columns, unknown fields, split messages) and
 *    byte-level mutations (where it may only be stricter about the wire format).
 * Seeded: TIDEMARK_SEED=<n> npx vitest run test/transport/write-codec.test.ts replays.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { batchFromWriteRequest } from '../../src/api/grpc-service.js';
import { isTidemarkError, TidemarkError } from '../../src/errors/index.js';
import { WriteRequestSchema } from '../../src/gen/tidemark/v1/client_pb.js';
import { decodeWriteRequest, encodeWriteRequest, type WriteSeries } from '../../src/transport/write-codec.js';
import { Rng } from '../../src/util/random.js';
import { mutateBytes } from '../fuzz/harness.js';
import { int64Bytes } from './helpers.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 20261122);
const ALPHABET = ['a', 'b', 'z', '_', '0', '.', 'é', '中', '😀', ' '];

function text(rng: Rng, max: number): string {
  let s = '';
  const n = rng.int(0, max + 1);
  for (let i = 0; i < n; i++) s += rng.pick(ALPHABET);
  return s;
}

function timestamp(rng: Rng): number {
  switch (rng.int(0, 6)) {
    case 0:
      return rng.int(0, 128);
    case 1:
      return -rng.int(1, 2 ** 40); // negative int64: ten bytes on the wire
    case 2:
      return Number.MAX_SAFE_INTEGER - rng.int(0, 1000);
    case 3:
      return -Number.MAX_SAFE_INTEGER + rng.int(0, 1000);
    case 4:
      return rng.int(2 ** 31 - 5, 2 ** 32 + 5); // around the 32-bit boundaries
    default:
      return 1_700_000_000_000 + rng.int(0, 1e9);
  }
}

function value(rng: Rng): number {
  return rng.pick([0, -0, 1.5, -2, Number.NaN, Number.POSITIVE_INFINITY, 1e308, 5e-324, rng.next() * 1e6]);
}

function randomBatch(rng: Rng): WriteSeries[] {
  return Array.from({ length: rng.int(0, 6) }, () => {
    const tags: Record<string, string> = {};
    for (let i = rng.int(0, 4); i > 0; i--) tags[text(rng, 6) || 'k'] = text(rng, 8);
    const n = rng.int(0, 40);
    // Sometimes the columns disagree in length: the codec writes what it is given (the server checks).
    const m = rng.chance(0.1) ? rng.int(0, 40) : n;
    return {
      metric: text(rng, 12),
      tags,
      timestamps: Array.from({ length: n }, () => timestamp(rng)),
      values: rng.chance(0.5)
        ? Array.from({ length: m }, () => value(rng))
        : Float64Array.from({ length: m }, () => value(rng)),
    };
  });
}

function viaProtobufEs(batch: WriteSeries[]): Uint8Array {
  return toBinary(
    WriteRequestSchema,
    create(WriteRequestSchema, {
      batch: {
        series: batch.map((s) => ({
          series: { metric: s.metric, tags: { ...s.tags } },
          timestamps: Array.from(s.timestamps, (t) => BigInt(t)),
          values: Array.from(s.values),
        })),
      },
    }),
  );
}

describe('encodeWriteRequest', () => {
  it('writes what protobuf-es decodes back to the input, byte for byte what protobuf-es writes', () => {
    for (let i = 0; i < 2000; i++) {
      const rng = new Rng(SEED + i);
      const batch = randomBatch(rng);
      const where = `seed ${SEED + i} (replay: TIDEMARK_SEED=${SEED + i} npx vitest run test/transport/write-codec.test.ts)`;
      const bytes = encodeWriteRequest(batch);
      const back = fromBinary(WriteRequestSchema, bytes);
      expect(back.batch?.series.length ?? 0, where).toBe(batch.length);
      batch.forEach((s, j) => {
        const got = back.batch!.series[j]!;
        expect(got.series?.metric, where).toBe(s.metric);
        expect(got.series?.tags, where).toEqual(s.tags);
        expect(got.timestamps.map(Number), where).toEqual(Array.from(s.timestamps));
        expect(got.values, where).toEqual(Array.from(s.values));
      });
      expect(Buffer.from(bytes).equals(Buffer.from(viaProtobufEs(batch))), where).toBe(true);
    }
  });

  it('an empty request is the empty batch', () => {
    expect(fromBinary(WriteRequestSchema, encodeWriteRequest([])).batch?.series).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Decoder

type Outcome =
  | { ok: true; batch: ReturnType<typeof decodeWriteRequest> }
  | { ok: false; err: TidemarkError | Error };

function outcome(fn: () => ReturnType<typeof decodeWriteRequest>): Outcome {
  try {
    return { ok: true, batch: fn() };
  } catch (err) {
    return { ok: false, err: err as Error };
  }
}

const reference = (bytes: Uint8Array, check?: (n: number, s: number) => void) =>
  outcome(() => batchFromWriteRequest(fromBinary(WriteRequestSchema, bytes), check));
const fast = (bytes: Uint8Array, check?: (n: number, s: number) => void) =>
  outcome(() => decodeWriteRequest(bytes, check));

function plain(o: ReturnType<typeof decodeWriteRequest>) {
  return {
    series: o.batch.series,
    seriesRef: Array.from(o.batch.seriesRef),
    timestamps: Array.from(o.batch.timestamps),
    values: Array.from(o.batch.values),
    length: o.batch.length,
    offsets: o.offsets,
  };
}

function errorOf(e: TidemarkError | Error) {
  return isTidemarkError(e)
    ? { code: e.code, reason: e.reason, field: e.details.field, message: e.message }
    : { wire: true };
}

/** Content that is sometimes invalid: bad names, timestamps out of range, columns of different lengths. */
function riskyBatch(rng: Rng): WriteSeries[] {
  const batch = randomBatch(rng);
  return batch.map((s) => ({
    metric: rng.chance(0.9) ? `m_${s.metric.replace(/[^a-z0-9_.]/g, '')}` : s.metric,
    tags: rng.chance(0.9)
      ? { host: `h${rng.int(0, 9)}`, ...(rng.chance(0.3) ? { 'bad tag': 'x' } : {}) }
      : s.tags,
    timestamps: Array.from(s.timestamps, (t) => (rng.chance(0.95) ? Math.abs(t) % 4e12 : t)),
    values: s.values,
  }));
}

// A small proto writer for other legal encodings of the same message.
function varint(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}
const len = (field: number, body: number[]) => [...varint((field << 3) | 2), ...varint(body.length), ...body];
const str = (field: number, s: string) => len(field, [...Buffer.from(s, 'utf8')]);
function unknownField(rng: Rng): number[] {
  const field = rng.int(4, 40);
  switch (rng.int(0, 4)) {
    case 0:
      return [...varint(field << 3), ...varint(rng.int(0, 1e6))];
    case 1:
      return [...varint((field << 3) | 1), 1, 2, 3, 4, 5, 6, 7, 8];
    case 2:
      return [...varint((field << 3) | 5), 1, 2, 3, 4];
    default:
      return str(field, 'unknown');
  }
}

/** The batch in a random legal encoding: unpacked or split columns, unknown fields, split messages. */
function variantEncoding(rng: Rng, batch: WriteSeries[]): Uint8Array {
  const noise = () => (rng.chance(0.2) ? unknownField(rng) : []);
  const samples = batch.map((s) => {
    const seriesParts = [
      str(1, s.metric),
      ...Object.entries(s.tags).map(([k, v]) => len(2, [...str(1, k), ...str(2, v)])),
    ];
    const body: number[] = [];
    // The Series message, whole or in two occurrences (proto merges them).
    if (rng.chance(0.2) && seriesParts.length > 1) {
      const cut = rng.int(1, seriesParts.length);
      body.push(
        ...len(1, seriesParts.slice(0, cut).flat()),
        ...noise(),
        ...len(1, seriesParts.slice(cut).flat()),
      );
    } else {
      body.push(...len(1, [...seriesParts.flat(), ...noise()]));
    }
    const ts = Array.from(s.timestamps);
    if (rng.chance(0.5)) for (const t of ts) body.push(...varint(2 << 3), ...int64Bytes(t), ...noise());
    else if (ts.length > 0) body.push(...len(2, ts.flatMap(int64Bytes)));
    const vs = Array.from(s.values);
    const dbl = (v: number) => [...new Uint8Array(Float64Array.of(v).buffer)];
    if (rng.chance(0.5)) for (const v of vs) body.push(...varint((3 << 3) | 1), ...dbl(v), ...noise());
    else if (vs.length > 0) body.push(...len(3, vs.flatMap(dbl)));
    return len(1, [...body, ...noise()]);
  });
  // The batch field itself, whole or split in two (repeated series concatenate).
  const cut = rng.chance(0.3) ? rng.int(0, samples.length + 1) : samples.length;
  const out = [...len(1, samples.slice(0, cut).flat()), ...noise()];
  if (cut < samples.length) out.push(...len(1, samples.slice(cut).flat()));
  return Uint8Array.from(out);
}

function expectSame(bytes: Uint8Array, where: string, check?: (n: number, s: number) => void): 'ok' | 'err' {
  const want = reference(bytes, check);
  const got = fast(bytes, check);
  if (want.ok) {
    expect(got.ok ? plain(got.batch) : errorOf(got.err), where).toEqual(plain(want.batch));
    return 'ok';
  }
  expect(got.ok, where).toBe(false);
  const err = (got as { err: Error }).err;
  // protobuf-es's own wire errors are plain Errors; ours is a client error naming the request.
  if (isTidemarkError(want.err)) expect(errorOf(err), where).toEqual(errorOf(want.err));
  else expect(errorOf(err), where).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'request_malformed' });
  return 'err';
}

describe('decodeWriteRequest', () => {
  it('decodes what protobuf-es + batchFromWriteRequest decode, with the same errors', () => {
    const seen = { ok: 0, err: 0 };
    for (let i = 0; i < 3000; i++) {
      const rng = new Rng(SEED + i);
      const where = `seed ${SEED + i} (replay: TIDEMARK_SEED=${SEED + i} npx vitest run test/transport/write-codec.test.ts)`;
      const batch = riskyBatch(rng);
      const canonical = viaProtobufEs(batch);
      // A size check that sometimes refuses (the limits' hook runs before anything is allocated).
      const cap = rng.int(0, 200);
      const check = rng.chance(0.2)
        ? (n: number) => {
            if (n > cap) throw new TidemarkError('RESOURCE_EXHAUSTED', 'too_many_samples', `over ${cap}`);
          }
        : undefined;
      seen[expectSame(canonical, where, check)]++;
      expectSame(variantEncoding(rng, batch), `${where} (variant encoding)`);
    }
    // Both outcomes were exercised.
    expect(seen.ok).toBeGreaterThan(100);
    expect(seen.err).toBeGreaterThan(100);
  });

  it('on mutated bytes: the same batch or error as protobuf-es, or a stricter wire-format refusal', () => {
    let stricter = 0;
    for (let i = 0; i < 10_000; i++) {
      const rng = new Rng(SEED + 1e6 + i);
      const where = `seed ${SEED + 1e6 + i}`;
      const bytes = mutateBytes(rng, viaProtobufEs(riskyBatch(rng)));
      const want = reference(bytes);
      const got = fast(bytes);
      if (!got.ok) {
        // Always a client error naming a field, never a crash.
        expect(isTidemarkError(got.err) && got.err.code === 'INVALID_ARGUMENT', `${where}: ${got.err}`).toBe(
          true,
        );
        expect((got.err as TidemarkError).details.field, where).toBeTruthy();
      }
      if (want.ok && got.ok) expect(plain(got.batch), where).toEqual(plain(want.batch));
      else if (want.ok) {
        // protobuf-es reads some malformed input anyway (a known field with another wire type); we refuse it.
        expect((got as { err: TidemarkError }).err.reason, where).toBe('request_malformed');
        stricter++;
      } else if (got.ok) {
        throw new Error(
          `${where}: decoded what protobuf-es refused (${String(want.err)}): ${Buffer.from(bytes).toString('hex')}`,
        );
      } else if (isTidemarkError(want.err) && (got.err as TidemarkError).reason !== 'request_malformed') {
        expect(errorOf(got.err), where).toEqual(errorOf(want.err));
      }
    }
    // Logged, not asserted: how often the stricter wire checks mattered.
    console.log(`write codec fuzz: ${stricter} of 10000 mutated inputs refused only by the stricter decoder`);
  });
});
