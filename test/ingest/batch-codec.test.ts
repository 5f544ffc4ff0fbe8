import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isTidemarkError, type TidemarkError } from '../../src/errors/index.js';
import {
  BatchBuilder,
  DECODED_SERIES_CACHE_SIZE,
  decodeBatch,
  decodeDelete,
  decodedSeriesCache,
  decodePolicy,
  EntryKind,
  emptyBatch,
  encodeBatch,
  encodeDelete,
  encodePolicy,
  entryKind,
  resetDecodedSeriesCache,
} from '../../src/ingest/index.js';
import { canonicalKey, MAX_TIMESTAMP_MS, makeSeries } from '../../src/model/index.js';
import type { DeleteRequest, SampleBatch } from '../../src/storage/store.js';
import { fcParams, float64BitsArb, rng, SEED, sameBits, seriesArb, setBits, withSeed } from './helpers.js';

function build(
  series: ReturnType<typeof makeSeries>[],
  samples: { ref: number; t: number; hi: number; lo: number }[],
): SampleBatch {
  const batch: SampleBatch = {
    series,
    seriesRef: new Uint32Array(samples.length),
    timestamps: new Float64Array(samples.length),
    values: new Float64Array(samples.length),
    length: samples.length,
  };
  samples.forEach((s, i) => {
    batch.seriesRef[i] = s.ref;
    batch.timestamps[i] = s.t;
    setBits(batch.values, i, s.hi, s.lo);
  });
  return batch;
}

function corruption(fn: () => unknown): TidemarkError {
  try {
    fn();
  } catch (err) {
    if (!isTidemarkError(err, 'DATA_CORRUPTION')) throw err;
    return err;
  }
  throw new Error('expected DATA_CORRUPTION');
}

const batchArb = fc
  .uniqueArray(seriesArb, {
    minLength: 1,
    maxLength: 8,
    selector: (s) => Buffer.from(canonicalKey(s)).toString('hex'),
  })
  .chain((series) =>
    fc.record({
      series: fc.constant(series),
      samples: fc.array(
        fc.record({
          ref: fc.nat(series.length - 1),
          t: fc.oneof(
            fc.integer({ min: 0, max: MAX_TIMESTAMP_MS }),
            fc.integer({ min: 1_700_000_000_000, max: 1_700_000_100_000 }),
            fc.constantFrom(0, MAX_TIMESTAMP_MS),
          ),
          hi: fc.oneof(
            float64BitsArb.map(([h]) => h),
            fc.constantFrom(0x7ff80000, 0x7ff00000, 0xfff80000, 0x80000000, 0x7ff7ffff, 0xffffffff),
          ),
          lo: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constant(0)),
        }),
        { maxLength: 200 },
      ),
    }),
  );

describe('batch codec', () => {
  it('round-trips exactly (NaN payloads, -0, any timestamp order), with and without a Kafka position', () => {
    fc.assert(
      fc.property(
        batchArb,
        fc.option(
          fc
            .record({
              partition: fc.nat(0xffffffff),
              a: fc.nat(Number.MAX_SAFE_INTEGER),
              b: fc.nat(Number.MAX_SAFE_INTEGER),
            })
            .map(({ partition, a, b }) => ({
              partition,
              firstOffset: Math.min(a, b),
              lastOffset: Math.max(a, b),
            })),
        ),
        ({ series, samples }, kafka) => {
          const batch = build(series, samples);
          const bytes = encodeBatch(batch, kafka === null ? undefined : { kafka });
          const { batch: got, extra } = decodeBatch(bytes);
          expect(got.length).toBe(batch.length);
          expect(got.series.map((s) => Buffer.from(canonicalKey(s)).toString('hex'))).toEqual(
            series.map((s) => Buffer.from(canonicalKey(s)).toString('hex')),
          );
          expect(Array.from(got.seriesRef)).toEqual(Array.from(batch.seriesRef));
          expect(Array.from(got.timestamps)).toEqual(Array.from(batch.timestamps));
          expect(sameBits(got.values, batch.values, batch.length)).toBe(true);
          expect(extra).toEqual(kafka === null ? {} : { kafka });
          // Deterministic: re-encoding the decoded batch gives the same bytes.
          expect(Buffer.from(encodeBatch(got, extra)).equals(Buffer.from(bytes))).toBe(true);
        },
      ),
      fcParams(500),
    );
  });

  it('has the documented layout (golden bytes)', () => {
    const batch = build(
      [makeSeries('a', { h: 'x' })],
      [
        { ref: 0, t: 1000, hi: 0x3ff00000, lo: 0 },
        { ref: 0, t: 999, hi: 0x80000000, lo: 0 },
      ],
    );
    const bytes = encodeBatch(batch, { kafka: { partition: 3, firstOffset: 298, lastOffset: 300 } });
    expect(Buffer.from(bytes).toString('hex')).toBe(
      [
        '01', // version
        '01', // kind = write
        '01', // flags: kafka
        '03', // partition 3
        'aa02', // first offset 298
        'ac02', // last offset 300
        '01', // 1 series
        '05',
        '61ff68ff78', // key "a" ff "h" ff "x"
        '02', // 2 samples
        '00',
        '00', // refs
        'd00f', // zigzag(1000) = 2000
        '01', // zigzag(-1) = 1
        '000000000000f03f', // 1.0 LE
        '0000000000000080', // -0 LE
      ].join(''),
    );
    expect(entryKind(bytes)).toBe(EntryKind.write);
  });

  it('encodes an empty batch and a batch with unused series', () => {
    const e = decodeBatch(encodeBatch(emptyBatch()));
    expect(e.batch.length).toBe(0);
    const b = new BatchBuilder();
    b.ref(makeSeries('unused'));
    expect(decodeBatch(encodeBatch(b.build())).batch.series.length).toBe(1);
  });

  it('refuses to encode what it could not decode', () => {
    const s = [makeSeries('m')];
    const bad = (f: (b: SampleBatch) => void, extra?: Parameters<typeof encodeBatch>[1]) => {
      const b = build(s, [{ ref: 0, t: 1, hi: 0, lo: 0 }]);
      f(b);
      try {
        encodeBatch(b, extra);
      } catch (err) {
        expect(isTidemarkError(err, 'INVALID_ARGUMENT')).toBe(true);
        return (err as TidemarkError).reason;
      }
      throw new Error('expected INVALID_ARGUMENT');
    };
    expect(bad((b) => (b.timestamps[0] = -1))).toBe('timestamp_out_of_range');
    expect(bad((b) => (b.timestamps[0] = 1.5))).toBe('timestamp_invalid');
    expect(bad((b) => (b.timestamps[0] = Number.NaN))).toBe('timestamp_invalid');
    expect(bad((b) => (b.timestamps[0] = MAX_TIMESTAMP_MS + 1))).toBe('timestamp_out_of_range');
    expect(bad((b) => (b.seriesRef[0] = 1))).toBe('series_ref_invalid');
    expect(bad((b) => (b.series = [{ metric: 'bad name', tags: {} }]))).toBe('metric_name_invalid');
    expect(bad((b) => (b.length = 2))).toBe('batch_invalid');
    expect(bad(() => {}, { kafka: { partition: -1, firstOffset: 0, lastOffset: 0 } })).toBe(
      'kafka_partition_invalid',
    );
    expect(bad(() => {}, { kafka: { partition: 0, firstOffset: 0, lastOffset: 2 ** 53 } })).toBe(
      'kafka_offset_invalid',
    );
    expect(bad(() => {}, { kafka: { partition: 0, firstOffset: 5, lastOffset: 4 } })).toBe(
      'kafka_offset_invalid',
    );
  });

  it('rejects corrupt input with specific reasons', () => {
    const good = encodeBatch(build([makeSeries('m', { a: 'b' })], [{ ref: 0, t: 5, hi: 0, lo: 1 }]));
    const mut = (i: number, v: number) => {
      const c = good.slice();
      c[i] = v;
      return c;
    };
    expect(corruption(() => decodeBatch(new Uint8Array(0))).reason).toBe('truncated');
    expect(corruption(() => decodeBatch(mut(0, 2))).reason).toBe('unknown_format_version');
    expect(corruption(() => decodeBatch(mut(1, 2))).reason).toBe('unknown_entry_kind');
    expect(corruption(() => decodeBatch(mut(2, 0x80))).reason).toBe('unknown_flags');
    expect(corruption(() => decodeBatch(good.subarray(0, good.length - 1))).code).toBe('DATA_CORRUPTION');
    const longer = new Uint8Array(good.length + 1);
    longer.set(good);
    expect(corruption(() => decodeBatch(longer)).code).toBe('DATA_CORRUPTION');
    // Key "m\xffa\xffb" with "a" replaced by a disallowed name character.
    expect(corruption(() => decodeBatch(mut(7, 0x20))).reason).toBe('series_invalid');
    // Huge counts never allocate.
    const huge = Uint8Array.from([1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    expect(corruption(() => decodeBatch(huge)).reason).toBe('bad_series_count');
    const hugeSamples = Uint8Array.from([1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    expect(corruption(() => decodeBatch(hugeSamples)).reason).toBe('bad_sample_count');
    // Non-canonical key (tags out of order) and duplicate series.
    const twoTags = encodeBatch(build([makeSeries('m', { a: '1', b: '2' })], []));
    const swapped = Buffer.from(twoTags).toString('latin1').replace('a\xff1\xffb\xff2', 'b\xff2\xffa\xff1');
    expect(corruption(() => decodeBatch(Buffer.from(swapped, 'latin1'))).reason).toBe(
      'series_key_not_canonical',
    );
    const dup = Uint8Array.from([1, 1, 0, 2, 1, 0x6d, 1, 0x6d, 0]);
    expect(corruption(() => decodeBatch(dup)).reason).toBe('duplicate_series');
  });

  it('fuzz: 100,000 mutated entries decode validly or throw DATA_CORRUPTION, nothing else', () => {
    withSeed('codec fuzz', () => {
      const r = rng(0xc0dec);
      const seeds: Uint8Array[] = [];
      const samples = fc.sample(batchArb, { seed: SEED, numRuns: 40 });
      for (const { series, samples: ss } of samples) {
        seeds.push(
          encodeBatch(
            build(series, ss.slice(0, 20)),
            r.chance(0.5) ? { kafka: { partition: 1, firstOffset: 70, lastOffset: 77 } } : {},
          ),
        );
      }
      let valid = 0;
      let corrupt = 0;
      for (let iter = 0; iter < 100_000; iter++) {
        const base = r.pick(seeds);
        let c: Uint8Array;
        const op = r.int(0, 6);
        if (op === 0) c = base.subarray(0, r.int(0, base.length));
        else if (op === 1) {
          c = new Uint8Array(base.length + r.int(1, 8));
          c.set(base);
          for (let i = base.length; i < c.length; i++) c[i] = r.int(0, 256);
        } else if (op === 2) {
          c = new Uint8Array(r.int(0, 64));
          for (let i = 0; i < c.length; i++) c[i] = r.int(0, 256);
          if (c.length > 1 && r.chance(0.7)) {
            c[0] = 1;
            c[1] = 1;
          }
        } else {
          c = base.slice();
          const flips = r.int(1, 4);
          for (let k = 0; k < flips && c.length > 0; k++) {
            const i = r.int(0, c.length);
            c[i] =
              op === 3
                ? c[i] ^ (1 << r.int(0, 8))
                : op === 4
                  ? r.int(0, 256)
                  : (c[i] + r.pick([1, -1, 0x80])) & 0xff;
          }
        }
        try {
          const { batch } = decodeBatch(c);
          // A valid decode is internally consistent.
          for (let i = 0; i < batch.length; i++) {
            if (batch.seriesRef[i] >= batch.series.length || !Number.isInteger(batch.timestamps[i])) {
              throw new Error(`inconsistent decode of ${Buffer.from(c).toString('hex')}`);
            }
          }
          valid++;
        } catch (err) {
          if (!isTidemarkError(err, 'DATA_CORRUPTION')) {
            throw new Error(`input ${Buffer.from(c).toString('hex')} threw ${String(err)}`);
          }
          corrupt++;
        }
      }
      expect(valid + corrupt).toBe(100_000);
      expect(corrupt).toBeGreaterThan(0);
    });
  });

  it('delete entries round-trip (with and without a range) and refuse corrupt bytes', () => {
    const reqs: DeleteRequest[] = [
      { metric: 'cpu', matchers: [] },
      {
        metric: 'cpü',
        matchers: [
          { name: 'host', op: '=~', value: 'web-.*' },
          { name: 'dc', op: '!=', value: '' },
        ],
        minT: -1,
        maxT: MAX_TIMESTAMP_MS + 1,
      },
      { metric: 'm', matchers: [{ name: 'a', op: '!~', value: 'x' }], maxT: 5 },
    ];
    for (const r of reqs) {
      const bytes = encodeDelete(r);
      expect(entryKind(bytes)).toBe(EntryKind.delete);
      expect(decodeDelete(bytes)).toEqual({ ...r, matchers: r.matchers ?? [] });
    }
    const good = encodeDelete(reqs[1]!);
    const reason = (b: Uint8Array) => {
      try {
        decodeDelete(b);
        return 'ok';
      } catch (e) {
        return (e as { code: string; reason: string }).code === 'DATA_CORRUPTION'
          ? (e as { reason: string }).reason
          : 'wrong error';
      }
    };
    for (let cut = 0; cut < good.length; cut++) expect(reason(good.subarray(0, cut))).not.toBe('ok');
    expect(reason(Uint8Array.from([...good, 0]))).toBe('bad_length');
    const badFlags = good.slice();
    badFlags[2] = 0x80;
    expect(reason(badFlags)).toBe('unknown_flags');
    expect(() =>
      encodeDelete({ metric: 'm', matchers: [{ name: 'a', op: '~' as never, value: '' }] }),
    ).toThrow(/op/);
  });
});

describe('policy entries (kind 3)', () => {
  it('round-trip, and refuse what the layout cannot carry or a damaged entry', () => {
    for (const retentionMs of [0, 1, 30 * 86_400_000, Number.MAX_SAFE_INTEGER]) {
      const bytes = encodePolicy({ retentionMs });
      expect(entryKind(bytes)).toBe(EntryKind.policy);
      expect(decodePolicy(bytes)).toEqual({ retentionMs });
    }
    expect(() => encodePolicy({ retentionMs: -1 })).toThrow(/non-negative/);
    expect(() => encodePolicy({ retentionMs: 1.5 })).toThrow(/non-negative/);
    const ok = encodePolicy({ retentionMs: 86_400_000 });
    expect(() => decodePolicy(ok.subarray(0, ok.length - 1))).toThrow(/truncated/);
    expect(() => decodePolicy(Uint8Array.from([...ok, 0]))).toThrow(/trailing/);
    expect(() => decodePolicy(encodeDelete({ metric: 'm' }))).toThrow(/not a policy/);
  });
});

describe('decoded series cache', () => {
  const one = (series: { metric: string; tags: Record<string, string> }[]): SampleBatch => ({
    series,
    seriesRef: new Uint32Array(series.map((_, i) => i)),
    timestamps: new Float64Array(series.map(() => 1000)),
    values: new Float64Array(series.map(() => 1)),
    length: series.length,
  });

  it('hands out the same frozen Series for a key seen before, so the store resolves it by identity', () => {
    const s = { metric: 'cache_same', tags: { host: 'a', dc: 'x' } };
    const a = decodeBatch(encodeBatch(one([s]))).batch.series[0]!;
    const b = decodeBatch(encodeBatch(one([{ metric: 'cache_same', tags: { dc: 'x', host: 'a' } }]))).batch
      .series[0]!;
    expect(b).toBe(a);
    expect(a).toEqual({ metric: 'cache_same', tags: { dc: 'x', host: 'a' } });
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.tags)).toBe(true);
  });

  it('stays bounded: never more than its capacity, and evicted series decode again', () => {
    expect(decodedSeriesCache().capacity).toBe(DECODED_SERIES_CACHE_SIZE);
    resetDecodedSeriesCache(100);
    try {
      const first = decodeBatch(encodeBatch(one([{ metric: 'cache_bound', tags: { i: 'first' } }]))).batch
        .series[0]!;
      for (let done = 0; done < 250; done += 50) {
        const series = Array.from({ length: 50 }, (_, k) => ({
          metric: 'cache_bound',
          tags: { i: String(done + k) },
        }));
        decodeBatch(encodeBatch(one(series)));
        expect(decodedSeriesCache().size).toBeLessThanOrEqual(100);
      }
      expect(decodedSeriesCache().size).toBe(100);
      const again = decodeBatch(encodeBatch(one([{ metric: 'cache_bound', tags: { i: 'first' } }]))).batch
        .series[0]!;
      expect(again).not.toBe(first); // evicted, decoded afresh
      expect(again).toEqual(first);
    } finally {
      resetDecodedSeriesCache();
    }
  });

  it('refuses to encode the same series twice (INVALID_ARGUMENT), so no entry fails to decode', () => {
    const err = (() => {
      try {
        encodeBatch(
          one([
            { metric: 'enc_dup', tags: { a: '1', b: '2' } },
            { metric: 'enc_dup', tags: { b: '2', a: '1' } },
          ]),
        );
      } catch (e) {
        return e as { code: string; reason: string; details: { field?: string } };
      }
      return undefined;
    })();
    expect(err).toMatchObject({
      code: 'INVALID_ARGUMENT',
      reason: 'duplicate_series',
      details: { field: 'series[1]' },
    });
  });

  it('still rejects a key repeated within one entry, cached or not', () => {
    const s = { metric: 'cache_dup', tags: { host: 'a' } };
    decodeBatch(encodeBatch(one([s])));
    const bytes = encodeBatch(one([s, { metric: 'cache_dup', tags: { host: 'b' } }]));
    // Rewrite the second key's last byte ('b' → 'a'): the same series twice.
    const at = bytes.lastIndexOf(0x62);
    bytes[at] = 0x61;
    const err = (() => {
      try {
        decodeBatch(bytes);
      } catch (e) {
        return e as TidemarkError;
      }
      return undefined;
    })();
    expect(err?.reason).toBe('duplicate_series');
  });
});
