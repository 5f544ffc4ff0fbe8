import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TidemarkError } from '../../src/errors/index.js';
import {
  canonicalKey,
  formatSeries,
  jumpHash,
  MAX_TAGS,
  makeSeries,
  parseCanonicalKey,
  seriesId,
  seriesIdFromHex,
  seriesIdHex,
  shardOf,
} from '../../src/model/index.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 0x5eed);

function invalid(fn: () => unknown): TidemarkError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TidemarkError);
    expect((err as TidemarkError).code).toBe('INVALID_ARGUMENT');
    return err as TidemarkError;
  }
  throw new Error('expected an INVALID_ARGUMENT error');
}

describe('canonical key and series id', () => {
  it('sorts tags by name and separates fields with 0xff', () => {
    const key = canonicalKey({ metric: 'cpu', tags: { host: 'a', dc: 'x' } });
    expect(Buffer.from(key).toString('latin1')).toBe('cpu\xffdc\xffx\xffhost\xffa');
  });

  it('is independent of tag insertion order', () => {
    const a = seriesId({ metric: 'm', tags: { a: '1', b: '2', c: '3' } });
    const b = seriesId({ metric: 'm', tags: { c: '3', a: '1', b: '2' } });
    expect(seriesIdHex(a)).toBe(seriesIdHex(b));
  });

  it('matches xxh64 reference vectors (seed 0, big-endian bytes)', () => {
    // xxh64("a", seed 0) = d24ec4f1a98c6e5b (xxHash's reference); a metric-only key is its UTF-8 bytes.
    expect(seriesIdHex(seriesId({ metric: 'a', tags: {} }))).toBe('d24ec4f1a98c6e5b');
    const id = seriesId({ metric: 'cpu.usage', tags: { host: 'web01' } });
    expect(id).toBeInstanceOf(Uint8Array);
    expect(id.length).toBe(8);
    expect(seriesIdFromHex(seriesIdHex(id))).toEqual(id);
  });

  it('distinguishes series that concatenate to the same text', () => {
    const a = seriesIdHex(seriesId({ metric: 'm', tags: { ab: 'c' } }));
    const b = seriesIdHex(seriesId({ metric: 'm', tags: { a: 'bc' } }));
    expect(a).not.toBe(b);
  });

  it('round-trips through parseCanonicalKey for any valid series', () => {
    const name = fc.stringMatching(/^[a-zA-Z0-9_.\-/é]{1,20}$/);
    const value = fc
      .string({ minLength: 1, maxLength: 30, unit: 'grapheme' })
      .filter((s) => !/[\u0000-\u001f\u007f]/.test(s));
    fc.assert(
      fc.property(
        name,
        fc.dictionary(
          name.filter((n) => !n.startsWith('__')),
          value,
          { maxKeys: 8 },
        ),
        (metric, tags) => {
          const s = makeSeries(metric, tags);
          const back = parseCanonicalKey(canonicalKey(s));
          expect(back.metric).toBe(s.metric);
          expect({ ...back.tags }).toEqual({ ...s.tags });
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('formats series for humans', () => {
    expect(formatSeries({ metric: 'cpu', tags: { b: '2', a: '1' } })).toBe('cpu{a=1,b=2}');
  });
});

describe('validation', () => {
  it('accepts OpenTSDB characters and Unicode letters', () => {
    const s = makeSeries('sys.cpu-user_total/x', { hôst: 'wéb 01 (eu)', 名前: '値' });
    expect(s.metric).toBe('sys.cpu-user_total/x');
  });

  it('rejects empty and invalid metric names, naming the field', () => {
    expect(invalid(() => makeSeries('', {})).reason).toBe('metric_empty');
    const e = invalid(() => makeSeries('cpu usage', {}, 'series[3]'));
    expect(e.reason).toBe('metric_name_invalid');
    expect(e.field).toBe('series[3].metric');
    expect(e.message).toContain('series[3].metric');
    invalid(() => makeSeries('cpu{x}', {}));
    invalid(() => makeSeries('\ud800', {}));
    invalid(() => makeSeries(42, {}));
  });

  it('rejects bad tags with a reason and the tag in the field', () => {
    expect(invalid(() => makeSeries('m', { 'bad name': 'v' })).reason).toBe('tag_name_invalid');
    expect(invalid(() => makeSeries('m', { '': 'v' })).reason).toBe('tag_name_empty');
    expect(invalid(() => makeSeries('m', { __name__: 'v' })).reason).toBe('tag_name_reserved');
    const e = invalid(() => makeSeries('m', { host: '' }));
    expect(e.reason).toBe('tag_value_empty');
    expect(e.field).toBe('tags.host');
    expect(invalid(() => makeSeries('m', { host: 'a\nb' })).reason).toBe('tag_value_invalid');
    expect(
      invalid(() =>
        makeSeries('m', [
          ['host', 'a'],
          ['host', 'b'],
        ]),
      ).reason,
    ).toBe('tag_name_duplicate');
  });

  it('enforces tag count and byte-length limits', () => {
    const tags: Record<string, string> = {};
    for (let i = 0; i < MAX_TAGS; i++) tags[`t${i}`] = 'v';
    expect(Object.keys(makeSeries('m', tags).tags)).toHaveLength(MAX_TAGS);
    tags.extra = 'v';
    expect(invalid(() => makeSeries('m', tags)).reason).toBe('too_many_tags');
    expect(invalid(() => makeSeries('m'.repeat(257), {})).reason).toBe('metric_name_too_long');
    makeSeries('m'.repeat(256), {});
    // 129 two-byte letters = 258 bytes: the limit is in bytes, not characters.
    expect(invalid(() => makeSeries('é'.repeat(129), {})).reason).toBe('metric_name_too_long');
    expect(invalid(() => makeSeries('m', { k: 'v'.repeat(257) })).reason).toBe('tag_value_too_long');
  });
});

describe('jump consistent hash', () => {
  it('maps into range and is stable', () => {
    for (let i = 0n; i < 1000n; i++) {
      const b = jumpHash(i * 0x9e3779b97f4a7c15n, 16);
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThan(16);
    }
    // Vectors computed with the paper's C implementation (key, buckets) -> bucket.
    expect(jumpHash(0n, 1)).toBe(0);
    expect(jumpHash(1n, 10)).toBe(6);
    expect(jumpHash(0xffffffffffffffffn, 100)).toBe(92);
    expect(jumpHash(123456789n, 16)).toBe(7);
    expect(jumpHash(0xdeadbeefcafebaben, 1000)).toBe(144);
  });

  it('moves only ~1/(n+1) of keys when a bucket is added', () => {
    let moved = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const id = seriesId({ metric: 'm', tags: { i: String(i) } });
      if (shardOf(id, 16) !== shardOf(id, 17)) moved++;
    }
    expect(moved / n).toBeGreaterThan(0.04);
    expect(moved / n).toBeLessThan(0.08);
  });

  it('spreads series evenly across shards', () => {
    const counts = new Array(16).fill(0);
    for (let i = 0; i < 16_000; i++)
      counts[shardOf(seriesId({ metric: 'cpu', tags: { host: `h${i}` } }), 16)]++;
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(150);
  });
});
