import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isTidemarkError, type TidemarkError, toHttpStatus } from '../../src/errors/index.js';
import {
  BatchBuilder,
  openTsdbErrorBody,
  openTsdbPutResponse,
  parseOpenTsdbPut,
  putDatapoints,
} from '../../src/ingest/index.js';
import { MAX_TIMESTAMP_MS, makeSeries } from '../../src/model/index.js';
import { rng, seriesKeyOf, withSeed } from './helpers.js';

const dp = (over: Record<string, unknown> = {}) => ({
  metric: 'sys.cpu.user',
  timestamp: 1346846400,
  value: 18,
  tags: { host: 'web01', dc: 'lga' },
  ...over,
});

function rows(body: unknown) {
  const r = parseOpenTsdbPut(JSON.stringify(body));
  const out: [string, number, number][] = [];
  for (let i = 0; i < r.batch.length; i++) {
    out.push([seriesKeyOf(r.batch.series[r.batch.seriesRef[i]]), r.batch.timestamps[i], r.batch.values[i]]);
  }
  return { r, out };
}

function requestError(fn: () => unknown): TidemarkError {
  try {
    fn();
  } catch (err) {
    if (isTidemarkError(err, 'INVALID_ARGUMENT')) return err;
    throw err;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

describe('OpenTSDB /api/put', () => {
  it('accepts a single object (the documented example)', () => {
    const { r, out } = rows(dp());
    expect(r).toMatchObject({ success: 1, failed: 0, errors: [] });
    expect(out).toEqual([['sys.cpu.user{dc=lga,host=web01}', 1346846400000, 18]]);
  });

  it('accepts an array, deduplicating series', () => {
    const { r, out } = rows([
      dp(),
      dp({ timestamp: 1346846401, value: 9 }),
      dp({ tags: { host: 'web02', dc: 'lga' } }),
    ]);
    expect(r.success).toBe(3);
    expect(r.batch.series.length).toBe(2);
    expect(out.map((x) => x[1])).toEqual([1346846400000, 1346846401000, 1346846400000]);
  });

  it('reads timestamps below 2^32 as seconds and others as milliseconds (at most 13 digits)', () => {
    const ts = (timestamp: unknown) => rows(dp({ timestamp }));
    expect(ts(1346846400).out[0][1]).toBe(1346846400000);
    expect(ts(1346846400123).out[0][1]).toBe(1346846400123);
    expect(ts(0).out[0][1]).toBe(0);
    expect(ts(4294967295).out[0][1]).toBe(4294967295000);
    expect(ts(4294967296).out[0][1]).toBe(4294967296);
    expect(ts(9999999999999).out[0][1]).toBe(9999999999999);
    expect(ts('1346846400').out[0][1]).toBe(1346846400000);
    for (const bad of [10000000000000, -1, 1.5, '12a', true, [], {}, '']) {
      const { r } = ts(bad);
      expect(r.failed).toBe(1);
      expect(r.errors[0].error).toMatch(/timestamp/i);
    }
    expect(MAX_TIMESTAMP_MS).toBeGreaterThan(9999999999999);
  });

  it('accepts numeric values and numeric strings; rejects the rest', () => {
    const v = (value: unknown) => rows(dp({ value }));
    expect(v(42.5).out[0][2]).toBe(42.5);
    expect(v(-7).out[0][2]).toBe(-7);
    expect(v('42.5').out[0][2]).toBe(42.5);
    expect(v('42').out[0][2]).toBe(42);
    expect(v(' -1e3 ').out[0][2]).toBe(-1000);
    expect(v('.5').out[0][2]).toBe(0.5);
    expect(v('9223372036854775807').out[0][2]).toBe(2 ** 63);
    for (const [bad, msg] of [
      ['abc', /parse value/],
      ['NaN', /parse value/],
      ['Infinity', /parse value/],
      ['1e999', /NaN or Infinite/],
      ['0x10', /parse value/],
      ['9223372036854775808', /64-bit/],
      ['', /Empty value/],
      [null, /Empty value/],
      [true, /parse value/],
      [[1], /parse value/],
    ] as [unknown, RegExp][]) {
      const { r } = v(bad);
      expect(r.failed, String(bad)).toBe(1);
      expect(r.errors[0].error).toMatch(msg);
    }
  });

  it('accepts zero tags (OpenTSDB requires one) and coerces numeric tag values', () => {
    expect(rows(dp({ tags: {} })).out[0][0]).toBe('sys.cpu.user{}');
    expect(rows(dp({ tags: undefined })).out[0][0]).toBe('sys.cpu.user{}');
    expect(rows(dp({ tags: { port: 8080, up: true } })).out[0][0]).toBe('sys.cpu.user{port=8080,up=true}');
  });

  it('reports bad points with the original datapoint and stores the good ones', () => {
    const body = [
      dp(),
      dp({ metric: undefined }),
      dp({ metric: '' }),
      dp({ metric: 42 }),
      dp({ timestamp: undefined }),
      dp({ value: undefined }),
      dp({ metric: 'bad metric' }),
      dp({ tags: { 'bad tag': 'x' } }),
      dp({ tags: { __name__: 'x' } }),
      dp({ tags: { host: '' } }),
      dp({ tags: { host: { nested: 1 } } }),
      dp({ tags: ['a'] }),
      42,
      null,
      [dp()],
      dp({ value: 3 }),
    ];
    const { r, out } = rows(body);
    expect(r.success).toBe(2);
    expect(r.failed).toBe(14);
    expect(out.map((x) => x[2])).toEqual([18, 3]);
    expect(r.errors.map((e) => e.error)).toEqual([
      'Metric name was empty',
      'Metric name was empty',
      'Metric name must be a string',
      'Missing timestamp',
      'Empty value',
      expect.stringMatching(/metric name "bad metric"/),
      expect.stringMatching(/tag name "bad tag"/),
      expect.stringMatching(/reserved/),
      expect.stringMatching(/tag value is empty/),
      expect.stringMatching(/string value/),
      'tags must be a JSON object',
      'datapoint must be a JSON object',
      'datapoint must be a JSON object',
      'datapoint must be a JSON object',
    ]);
    expect(r.errors[0].datapoint).toEqual(body[1]);
    expect(r.errors[11].datapoint).toBe(42);
  });

  it('rejects bad JSON, bodies of the wrong shape and empty arrays as one request error', () => {
    expect(requestError(() => parseOpenTsdbPut('{"metric": ')).reason).toBe('json_invalid');
    expect(requestError(() => parseOpenTsdbPut('42')).reason).toBe('body_invalid');
    expect(requestError(() => parseOpenTsdbPut('"x"')).reason).toBe('body_invalid');
    expect(requestError(() => parseOpenTsdbPut('null')).reason).toBe('body_invalid');
    expect(requestError(() => parseOpenTsdbPut('[]')).reason).toBe('no_datapoints');
    expect(requestError(() => parseOpenTsdbPut(Uint8Array.from([0x7b, 0xff]))).reason).toBe('body_not_utf8');
    const err = requestError(() => parseOpenTsdbPut('{'));
    expect(toHttpStatus(err)).toBe(400);
    expect(openTsdbErrorBody(err, 400)).toEqual({ error: { code: 400, message: err.message } });
  });

  it('enforces maxPoints and the batch limits', () => {
    const body = JSON.stringify([dp(), dp(), dp()]);
    expect(requestError(() => parseOpenTsdbPut(body, { maxPoints: 2 })).reason).toBe('too_many_datapoints');
    expect(requestError(() => parseOpenTsdbPut(body, { limits: { maxSamples: 2 } })).reason).toBe(
      'batch_too_many_samples',
    );
    const many = JSON.stringify([dp(), dp({ tags: { host: 'b' } })]);
    expect(requestError(() => parseOpenTsdbPut(many, { limits: { maxSeries: 1 } })).reason).toBe(
      'batch_too_many_series',
    );
  });

  it('adds to a given builder; accepts parsed JSON and bytes', () => {
    const builder = new BatchBuilder();
    putDatapoints(dp(), { builder });
    const r = parseOpenTsdbPut(new TextEncoder().encode(JSON.stringify(dp({ value: 2 }))), { builder });
    expect(r.batch.length).toBe(2);
    expect(r.batch.series.length).toBe(1);
  });

  it('shapes the response as OpenTSDB does for the summary and details flags', () => {
    const ok = parseOpenTsdbPut(JSON.stringify([dp()]));
    const bad = parseOpenTsdbPut(JSON.stringify([dp(), dp({ value: 'x' })]));
    expect(openTsdbPutResponse(ok)).toEqual({ status: 204 });
    expect(openTsdbPutResponse(ok, { summary: true })).toEqual({
      status: 200,
      body: { failed: 0, success: 1 },
    });
    expect(openTsdbPutResponse(ok, { details: true })).toEqual({
      status: 200,
      body: { errors: [], failed: 0, success: 1 },
    });
    expect(openTsdbPutResponse(bad)).toMatchObject({
      status: 400,
      body: { error: { code: 400, message: 'One or more data points had errors' } },
    });
    expect(openTsdbPutResponse(bad, { summary: true })).toEqual({
      status: 400,
      body: { failed: 1, success: 1 },
    });
    expect(openTsdbPutResponse(bad, { details: true, summary: true })).toEqual({
      status: 400,
      body: {
        errors: [{ datapoint: dp({ value: 'x' }), error: 'Unable to parse value to a number: "x"' }],
        failed: 1,
        success: 1,
      },
    });
  });
});

describe('OpenTSDB /api/put: fuzz', () => {
  it('100,000 JSON-ish bodies: per-point errors or one request error, never a crash', () => {
    withSeed('opentsdb fuzz', () => {
      const r = rng(0x75db);
      const jsonValue = fc.oneof(
        fc.constant(dp()),
        fc.record(
          {
            metric: fc.oneof(
              fc.constantFrom('sys.cpu', 'a b', '', 'é.x', '__x'),
              fc.string(),
              fc.integer(),
              fc.constant(null),
            ),
            timestamp: fc.oneof(
              fc.integer({ min: -10, max: 2 ** 45 }),
              fc.double(),
              fc.string(),
              fc.constantFrom(0, 4294967295, 4294967296, 9999999999999, 1e13, '1346846400'),
            ),
            value: fc.oneof(
              fc.double({ noNaN: true, noDefaultInfinity: true }),
              fc.string(),
              fc.constantFrom('1.5', '-3', '1e999', null, true),
            ),
            tags: fc.oneof(
              fc.dictionary(
                fc.string({ maxLength: 6 }),
                fc.oneof(fc.string({ maxLength: 6 }), fc.integer(), fc.constant(null)),
              ),
              fc.constant([]),
              fc.constant(null),
              fc.string(),
            ),
          },
          { requiredKeys: [] },
        ),
        fc.jsonValue({ maxDepth: 2 }),
      );
      const samples = fc.sample(fc.oneof(jsonValue, fc.array(jsonValue, { maxLength: 5 })), {
        seed: r.nextU32(),
        numRuns: 2000,
      });
      const texts = samples.map((s) => JSON.stringify(s) ?? 'undefined');
      const noise = ['{', '}', '[', ']', '"', ',', ':', '\\', '0', '-', 'e', 'null', ' ', '\u0000', '\ud800'];
      let accepted = 0;
      for (let iter = 0; iter < 100_000; iter++) {
        let body = r.pick(texts);
        const muts = r.chance(0.5) ? 0 : r.int(1, 4);
        for (let k = 0; k < muts; k++) {
          const at = r.int(0, body.length + 1);
          body = r.chance(0.5)
            ? body.slice(0, at) + r.pick(noise) + body.slice(at + r.int(0, 2))
            : body.slice(0, at) + body.slice(at + r.int(1, 3));
        }
        let res: ReturnType<typeof parseOpenTsdbPut>;
        try {
          res = parseOpenTsdbPut(body, { maxPoints: 4 });
        } catch (err) {
          if (isTidemarkError(err, 'INVALID_ARGUMENT')) continue;
          throw new Error(`body ${JSON.stringify(body)} threw ${String(err)}`);
        }
        accepted += res.success;
        if (res.success + res.failed < 1 || res.batch.length !== res.success) {
          throw new Error(`body ${JSON.stringify(body)}: inconsistent counts`);
        }
        for (const e of res.errors) {
          if (typeof e.error !== 'string' || e.error === '')
            throw new Error(`body ${JSON.stringify(body)}: bad error`);
        }
        for (let i = 0; i < res.batch.length; i++) {
          const t = res.batch.timestamps[i];
          if (
            !Number.isInteger(t) ||
            t < 0 ||
            t > MAX_TIMESTAMP_MS ||
            !Number.isFinite(res.batch.values[i])
          ) {
            throw new Error(`body ${JSON.stringify(body)}: bad sample`);
          }
        }
        for (const s of res.batch.series) makeSeries(s.metric, s.tags);
      }
      expect(accepted).toBeGreaterThan(0);
    });
  });
});

describe('OpenTSDB /api/put: series cache', () => {
  it('never confuses series whose raw parts concatenate alike', () => {
    const r = parseOpenTsdbPut(
      JSON.stringify([
        dp({ metric: 'm', tags: { ab: 'c' } }),
        dp({ metric: 'm', tags: { a: 'bc' } }),
        dp({ metric: 'm', tags: { a: 'b', c: 'd' } }),
        dp({ metric: 'm', tags: { c: 'd', a: 'b' } }),
        dp({ metric: 'm', tags: { port: 80 } }),
        dp({ metric: 'm', tags: { port: '80' } }),
        JSON.parse('{"metric":"m","timestamp":1,"value":1,"tags":{"__proto__":"x"}}'),
      ]),
    );
    expect(r.success).toBe(6);
    expect(r.errors[0].error).toMatch(/reserved/);
    expect(r.batch.series.map(seriesKeyOf)).toEqual(['m{ab=c}', 'm{a=bc}', 'm{a=b,c=d}', 'm{port=80}']);
    expect(Array.from(r.batch.seriesRef)).toEqual([0, 1, 2, 2, 3, 3]);
  });
});
