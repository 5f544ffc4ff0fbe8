/** Record decoding and config validation: pure, no broker. */
import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, test } from 'vitest';
import { WriteRequestSchema } from '../../../src/gen/tidemark/v1/client_pb.js';
import { BatchBuilder } from '../../../src/ingest/batch.js';
import {
  appendBatch,
  decodeNextOffset,
  decodeRecord,
  decodeRecordInto,
  detectFormat,
  encodeNextOffset,
  kafkaApplyDecision,
  parseKafkaConfig,
  truncateBatch,
} from '../../../src/ingest/kafka/index.js';
import { formatSeries } from '../../../src/model/index.js';
import type { SampleBatch } from '../../../src/storage/store.js';

const utf8 = (s: string) => new TextEncoder().encode(s);
const OPTS = { recordTimestampMs: 1_700_000_000_123 };

function samples(b: SampleBatch): string[] {
  const out: string[] = [];
  for (let i = 0; i < b.length; i++) {
    out.push(`${formatSeries(b.series[b.seriesRef[i]!]!)} ${b.timestamps[i]} ${b.values[i]}`);
  }
  return out;
}

function ok(r: ReturnType<typeof decodeRecord>): SampleBatch {
  if (!r.ok) throw new Error(`expected ok, got ${r.reason}: ${r.message}`);
  return r.batch;
}

describe('decodeRecord', () => {
  test('influx: several lines per record, ns precision, record time for lines without one', () => {
    const rec = 'cpu,host=a usage=1.5,idle=2i 1700000000000000000\n\n# c\nmem,host=b free=3 \ndisk used=1u';
    expect(samples(ok(decodeRecord('influx', utf8(rec), OPTS)))).toEqual([
      'cpu_usage{host=a} 1700000000000 1.5',
      'cpu_idle{host=a} 1700000000000 2',
      'mem_free{host=b} 1700000000123 3',
      'disk_used{} 1700000000123 1',
    ]);
    expect(
      samples(ok(decodeRecord('influx', utf8('x f=1 5'), { ...OPTS, precision: 's', separator: '.' }))),
    ).toEqual(['x.f{} 5000 1']);
  });

  test('influx: one bad line makes the whole record bad (nothing partial)', () => {
    const r = decodeRecord('influx', utf8('cpu v=1 1\ncpu v=oops 2\ncpu v=3 3'), OPTS);
    expect(r).toMatchObject({ ok: false, reason: 'field_value_invalid' });
    expect(!r.ok && r.message).toContain('1 of 3 lines rejected; line 2');
    expect(decodeRecord('influx', new Uint8Array([0xff, 0xfe]), OPTS)).toMatchObject({
      ok: false,
      reason: 'body_not_utf8',
    });
  });

  test('opentsdb: an object or an array; a bad datapoint makes the record bad', () => {
    expect(
      samples(
        ok(
          decodeRecord(
            'opentsdb',
            utf8('{"metric":"a.b","timestamp":1700000000,"value":"2.5","tags":{"h":"x"}}'),
            OPTS,
          ),
        ),
      ),
    ).toEqual(['a.b{h=x} 1700000000000 2.5']);
    const arr =
      '[{"metric":"a","timestamp":1700000000001,"value":1},{"metric":"b","timestamp":1700000000002,"value":2}]';
    expect(samples(ok(decodeRecord('opentsdb', utf8(arr), OPTS)))).toEqual([
      'a{} 1700000000001 1',
      'b{} 1700000000002 2',
    ]);
    expect(
      decodeRecord('opentsdb', utf8('[{"metric":"a","timestamp":1,"value":1},{"metric":""}]'), OPTS),
    ).toMatchObject({
      ok: false,
      reason: 'datapoint_invalid',
    });
    expect(decodeRecord('opentsdb', utf8('{not json'), OPTS)).toMatchObject({
      ok: false,
      reason: 'json_invalid',
    });
    expect(decodeRecord('opentsdb', utf8('[]'), OPTS)).toMatchObject({ ok: false, reason: 'no_datapoints' });
  });

  test('protobuf WriteRequest; malformed bytes, mismatched arrays and bad series are bad records', () => {
    const req = create(WriteRequestSchema, {
      batch: {
        series: [
          { series: { metric: 'm', tags: { k: 'v' } }, timestamps: [1n, 2n], values: [0.5, -1] },
          { series: { metric: 'n', tags: {} }, timestamps: [3n], values: [Number.NaN] },
        ],
      },
    });
    expect(samples(ok(decodeRecord('protobuf', toBinary(WriteRequestSchema, req), OPTS)))).toEqual([
      'm{k=v} 1 0.5',
      'm{k=v} 2 -1',
      'n{} 3 NaN',
    ]);
    const bad = (series: object[]) =>
      decodeRecord(
        'protobuf',
        toBinary(WriteRequestSchema, create(WriteRequestSchema, { batch: { series } })),
        OPTS,
      );
    expect(bad([{ series: { metric: 'm' }, timestamps: [1n], values: [] }])).toMatchObject({
      ok: false,
      reason: 'batch_invalid',
    });
    expect(bad([{ timestamps: [1n], values: [1] }])).toMatchObject({ ok: false, reason: 'series_missing' });
    expect(bad([{ series: { metric: '' }, timestamps: [1n], values: [1] }])).toMatchObject({ ok: false });
    expect(bad([{ series: { metric: 'm' }, timestamps: [-5n], values: [1] }])).toMatchObject({
      ok: false,
      reason: 'timestamp_out_of_range',
    });
    expect(decodeRecord('protobuf', new Uint8Array([0x0a, 0xff, 0xff]), OPTS)).toMatchObject({
      ok: false,
      reason: 'protobuf_invalid',
    });
  });

  test('auto: detects protobuf, OpenTSDB JSON and line protocol per record', () => {
    const pb = toBinary(
      WriteRequestSchema,
      create(WriteRequestSchema, {
        batch: {
          series: [
            { series: { metric: 'm', tags: { a: 'b' } }, timestamps: [1_700_000_000_000n], values: [1.5] },
          ],
        },
      }),
    );
    const json = ' [{"metric":"m","timestamp":1700000000000,"value":2.5,"tags":{"a":"b"}}]';
    const line = 'm,a=b value=3.5 1700000000000000000';
    expect([detectFormat(pb), detectFormat(Buffer.from(json)), detectFormat(Buffer.from(line))]).toEqual([
      'protobuf',
      'opentsdb',
      'influx',
    ]);
    expect(samples(ok(decodeRecord('auto', pb, OPTS)))).toEqual(
      samples(ok(decodeRecord('protobuf', pb, OPTS))),
    );
    expect(samples(ok(decodeRecord('auto', Buffer.from(json), OPTS)))).toEqual(
      samples(ok(decodeRecord('opentsdb', Buffer.from(json), OPTS))),
    );
    expect(samples(ok(decodeRecord('auto', Buffer.from(line), OPTS)))).toEqual(
      samples(ok(decodeRecord('influx', Buffer.from(line), OPTS))),
    );
    // A bad record stays bad under auto (here: broken JSON).
    expect(decodeRecord('auto', Buffer.from('{"metric": '), OPTS).ok).toBe(false);
  });

  test('an empty or missing value is a bad record', () => {
    for (const f of ['influx', 'opentsdb', 'protobuf'] as const) {
      expect(decodeRecord(f, null, OPTS)).toMatchObject({ ok: false, reason: 'record_empty' });
      expect(decodeRecord(f, new Uint8Array(0), OPTS)).toMatchObject({ ok: false, reason: 'record_empty' });
    }
  });

  test('appendBatch merges records into one batch, deduplicating series', () => {
    const b = new BatchBuilder();
    appendBatch(
      b,
      ok(decodeRecord('influx', utf8('m,h=a v=1 1\nm,h=b v=2 2'), { ...OPTS, precision: 'ms' })),
    );
    appendBatch(b, ok(decodeRecord('influx', utf8('m,h=a v=3 3'), { ...OPTS, precision: 'ms' })));
    const out = b.build();
    expect(out.series).toHaveLength(2);
    expect(samples(out)).toEqual(['m_v{h=a} 1 1', 'm_v{h=b} 2 2', 'm_v{h=a} 3 3']);
  });
});

test('decodeRecordInto + truncateBatch: a bad record is taken back out of a shared batch', () => {
  let b = new BatchBuilder();
  expect(decodeRecordInto('influx', utf8('a v=1 1\nb v=2 2'), b, { ...OPTS, precision: 'ms' })).toEqual({
    ok: true,
    samples: 2,
  });
  const before = b.length;
  const bad = decodeRecordInto('influx', utf8('c v=3 3\nbroken'), b, { ...OPTS, precision: 'ms' });
  expect(bad.ok).toBe(false);
  b = truncateBatch(b, before);
  expect(b.seriesCount).toBe(2);
  expect(samples(b.build())).toEqual(['a_v{} 1 1', 'b_v{} 2 2']);
});

describe('offsets and the apply rule', () => {
  test('stored offsets round-trip; nothing stored is 0', () => {
    expect(decodeNextOffset(undefined)).toBe(0n);
    for (const o of [0n, 1n, 123_456_789_012n, 2n ** 62n])
      expect(decodeNextOffset(encodeNextOffset(o))).toBe(o);
  });
  test('apply only a position that continues the stored offset', () => {
    expect(kafkaApplyDecision(10n, { partition: 0, firstOffset: 10n, lastOffset: 19n })).toBe('apply');
    expect(kafkaApplyDecision(10n, { partition: 0, firstOffset: 0n, lastOffset: 9n })).toBe('replay');
    expect(kafkaApplyDecision(10n, { partition: 0, firstOffset: 20n, lastOffset: 29n })).toBe('gap');
  });
});

describe('parseKafkaConfig', () => {
  const base = { brokers: 'a:9092,b:9093', topic: 'metrics', format: 'influx' };
  test('defaults', () => {
    expect(parseKafkaConfig(base)).toMatchObject({
      brokers: ['a:9092', 'b:9093'],
      topic: 'metrics',
      format: 'influx',
      deadLetterTopic: null,
      precision: 'ns',
      separator: '_',
      maxInFlight: 2,
      batch: { maxRecords: 10_000, maxSamples: 50_000, lingerMs: 50 },
    });
  });
  test.each([
    [{ ...base, brokers: [] }, 'kafka.brokers'],
    [{ ...base, brokers: ['nohost'] }, 'kafka.brokers[0]'],
    [{ ...base, brokers: 'a:99999' }, 'kafka.brokers[0]'],
    [{ ...base, topic: 'bad topic' }, 'kafka.topic'],
    [{ ...base, format: 'csv' }, 'kafka.format'],
    [{ ...base, deadLetterTopic: 'metrics' }, 'kafka.deadLetterTopic'],
    [{ ...base, batch: { maxRecords: 0 } }, 'kafka.batch.maxRecords'],
    [{ ...base, batch: { lingerMs: 1.5 } }, 'kafka.batch.lingerMs'],
    [{ ...base, batch: { maxRecord: 5 } }, 'kafka.batch.maxRecord'],
    [{ ...base, precision: 'ps' }, 'kafka.precision'],
    [{ ...base, maxInFlight: 0 }, 'kafka.maxInFlight'],
    [{ ...base, topics: ['x'] }, 'kafka.topics'],
  ])('rejects %j naming %s', (input, field) => {
    let err: unknown;
    try {
      parseKafkaConfig(input);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'config_invalid', details: { field } });
    expect((err as Error).message).toContain(field);
  });
});
