import { describe, expect, it } from 'vitest';
import { TidemarkError } from '../../src/errors/index.js';
import { MAX_TIMESTAMP_MS, validateTimestamp, validateValue } from '../../src/model/index.js';

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TidemarkError);
    return (err as TidemarkError).reason;
  }
  return 'none';
}

describe('timestamps', () => {
  it('accepts the documented range', () => {
    expect(validateTimestamp(0)).toBe(0);
    expect(validateTimestamp(MAX_TIMESTAMP_MS)).toBe(MAX_TIMESTAMP_MS);
    expect(validateTimestamp(1_700_000_000_000)).toBe(1_700_000_000_000);
  });

  it('rejects outside the range or non-integers', () => {
    expect(reasonOf(() => validateTimestamp(-1))).toBe('timestamp_out_of_range');
    expect(reasonOf(() => validateTimestamp(MAX_TIMESTAMP_MS + 1))).toBe('timestamp_out_of_range');
    expect(reasonOf(() => validateTimestamp(1.5))).toBe('timestamp_invalid');
    expect(reasonOf(() => validateTimestamp(Number.NaN))).toBe('timestamp_invalid');
    expect(reasonOf(() => validateTimestamp('1'))).toBe('timestamp_invalid');
  });
});

describe('values', () => {
  it('accepts any float64, including NaN and infinities', () => {
    expect(validateValue(-0)).toBe(-0);
    expect(validateValue(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
    expect(Number.isNaN(validateValue(Number.NaN))).toBe(true);
  });

  it('rejects non-numbers', () => {
    expect(reasonOf(() => validateValue('1'))).toBe('value_invalid');
    expect(reasonOf(() => validateValue(null))).toBe('value_invalid');
  });
});
