import { describe, expect, it } from 'vitest';
import { Encoding, encodeChunk, MAX_CHUNK_SAMPLES, MAX_TIMESTAMP } from '../../src/chunk/index.js';
import { TidemarkError } from '../../src/errors/index.js';

function expectInvalid(fn: () => unknown, reason?: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TidemarkError);
    expect((e as TidemarkError).code).toBe('INVALID_ARGUMENT');
    if (reason !== undefined) expect((e as TidemarkError).reason).toBe(reason);
    return;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

describe('encodeChunk input validation', () => {
  it('rejects bad counts', () => {
    expectInvalid(() => encodeChunk([], [], 0), 'bad_count');
    expectInvalid(() => encodeChunk([1], [1], -1), 'bad_count');
    expectInvalid(() => encodeChunk([1, 2], [1, 2], 1.5), 'bad_count');
    expectInvalid(() => encodeChunk([1], [1], Number.NaN), 'bad_count');
    const n = MAX_CHUNK_SAMPLES + 1;
    const ts = new Float64Array(n).map((_, i) => i);
    expectInvalid(() => encodeChunk(ts, new Float64Array(n), n), 'bad_count');
  });

  it('rejects arrays shorter than count', () => {
    expectInvalid(() => encodeChunk([1, 2], [1, 2, 3], 3), 'count_mismatch');
    expectInvalid(() => encodeChunk([1, 2, 3], [1, 2], 3), 'count_mismatch');
  });

  it('rejects non-integer, non-finite and out-of-range timestamps', () => {
    for (const t of [1.5, Number.NaN, Number.POSITIVE_INFINITY, -1, MAX_TIMESTAMP + 1, 2 ** 53, -0.5]) {
      expectInvalid(() => encodeChunk([0, t], [1, 2], 2), 'bad_timestamp');
    }
    expectInvalid(() => encodeChunk(['5' as unknown as number], [1], 1), 'bad_timestamp');
  });

  it('rejects decreasing timestamps but accepts equal ones', () => {
    expectInvalid(() => encodeChunk([5, 4], [1, 2], 2), 'decreasing_timestamp');
    expectInvalid(() => encodeChunk([1, 5, 5, 4], [1, 2, 3, 4], 4), 'decreasing_timestamp');
    expect(encodeChunk([5, 5], [1, 2], 2)).toBeInstanceOf(Uint8Array);
  });

  it('rejects non-number values in plain arrays', () => {
    expectInvalid(() => encodeChunk([1, 2], [1, '2' as unknown as number], 2), 'bad_value');
  });

  it('rejects unknown or inapplicable forced encodings', () => {
    expectInvalid(() => encodeChunk([1], [1], 1, { encoding: 99 as Encoding }), 'bad_encoding');
    expectInvalid(
      () => encodeChunk([1, 2], [1, 2], 2, { encoding: Encoding.Constant }),
      'encoding_not_applicable',
    );
    expectInvalid(
      () => encodeChunk([1, 2], [1, Number.NaN], 2, { encoding: Encoding.Decimal }),
      'encoding_not_applicable',
    );
    expectInvalid(
      () => encodeChunk([1, 2], [1, -0], 2, { encoding: Encoding.Decimal }),
      'encoding_not_applicable',
    );
    expectInvalid(
      () => encodeChunk([1, 2], [1, Math.PI], 2, { encoding: Encoding.Decimal }),
      'encoding_not_applicable',
    );
  });

  it('reports the offending field', () => {
    try {
      encodeChunk([1, 2, 1], [1, 2, 3], 3);
    } catch (e) {
      expect((e as TidemarkError).field).toBe('ts[2]');
    }
  });
});
