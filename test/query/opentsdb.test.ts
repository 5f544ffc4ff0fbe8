/** OpenTSDB compatibility: request parsing (GET m= and Grafana's POST), response/error shapes, suggest, last. */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { TidemarkError } from '../../src/errors/index.js';
import { localShard, runQuery } from '../../src/query/engine.js';
import { planQuery } from '../../src/query/model.js';
import {
  aggregatorNames,
  formatQueryResponse,
  openTsdbError,
  parseLastGet,
  parseLastPost,
  parseMetricQuery,
  parseQueryGet,
  parseQueryPost,
  parseSuggestGet,
  parseTime,
  queryLast,
  suggest,
} from '../../src/query/opentsdb.js';
import { MemoryShardStore } from '../../src/storage/index.js';
import { load } from './helpers.js';

const NOW = 1_700_003_600_000;
const T0 = 1_699_999_980_000; // a whole minute, so 1m buckets start at T0
let a: MemoryShardStore;
let b: MemoryShardStore;

beforeAll(async () => {
  a = new MemoryShardStore();
  b = new MemoryShardStore();
  const pts = (n: number, f: (i: number) => number) => ({
    ts: Array.from({ length: n }, (_, i) => T0 + i * 60_000),
    vals: Array.from({ length: n }, (_, i) => f(i)),
  });
  await load(a, [
    { series: { metric: 'sys.cpu', tags: { host: 'web01', dc: 'eu' } }, ...pts(3, (i) => i + 1) },
    { series: { metric: 'sys.cpu', tags: { host: 'web02', dc: 'eu' } }, ...pts(3, (i) => 10 * (i + 1)) },
  ]);
  await load(b, [
    { series: { metric: 'sys.cpu', tags: { host: 'db01', dc: 'us' } }, ...pts(2, () => 100) },
    { series: { metric: 'sys.mem', tags: { host: 'db01' } }, ...pts(1, () => 7) },
  ]);
});
afterAll(async () => {
  await a.close();
  await b.close();
});

test('times: relative, seconds, ms, fractional seconds, dates', () => {
  expect(parseTime('1h-ago', NOW, 'start')).toBe(NOW - 3_600_000);
  expect(parseTime('30s-ago', NOW, 'start')).toBe(NOW - 30_000);
  expect(parseTime('2w-ago', NOW, 'start')).toBe(NOW - 14 * 86_400_000);
  expect(parseTime('1699999980', NOW, 'start')).toBe(T0);
  expect(parseTime(1699999980, NOW, 'start')).toBe(T0);
  expect(parseTime('1699999980123', NOW, 'start')).toBe(T0 + 123);
  expect(parseTime('1699999980.5', NOW, 'start')).toBe(T0 + 500);
  expect(parseTime('2023/11/14-22:13:00', NOW, 'start')).toBe(T0);
  expect(parseTime('now', NOW, 'end')).toBe(NOW);
  for (const bad of ['1x-ago', 'yesterday', '', '2023/13/45']) {
    expect(() => parseTime(bad, NOW, 'start')).toThrow(TidemarkError);
  }
});

test('GET m= with downsample, fill, counter rate, group-by and non-group-by filters', () => {
  const q = parseQueryGet(
    new URLSearchParams({
      start: '1h-ago',
      m: 'sum:1m-avg-zero:rate{counter,,1}:sys.cpu{host=a|b}{dc=wildcard(eu*)}',
      ms: 'true',
      show_query: 'true',
    }),
    NOW,
  );
  expect(q.spec).toEqual({
    start: NOW - 3_600_000,
    end: NOW,
    withSeriesIds: false,
    queries: [
      {
        metric: 'sys.cpu',
        aggregator: 'sum',
        downsample: { interval: 60_000, fn: 'avg', fill: 'zero' },
        rate: { counter: true, dropResets: false, resetValue: 1 },
        filters: [
          { tagk: 'host', type: 'literal_or', filter: 'a|b', groupBy: true },
          { tagk: 'dc', type: 'wildcard', filter: 'eu*', groupBy: false },
        ],
      },
    ],
  });
  expect(q.msResolution).toBe(true);
  expect(q.showQuery).toBe(true);
  expect(parseMetricQuery('avg:0all-max:m{}{h=regexp(a{1,2}),d=*}', 'm').query).toEqual({
    metric: 'm',
    aggregator: 'avg',
    downsample: { interval: 'all', fn: 'max' },
    filters: [
      { tagk: 'h', type: 'regexp', filter: 'a{1,2}', groupBy: false },
      { tagk: 'd', type: 'wildcard', filter: '*', groupBy: false },
    ],
  });
  expect(parseMetricQuery('sum:rate{dropcounter,65535}:m', 'm').query.rate).toEqual({
    counter: true,
    dropResets: true,
    counterMax: 65535,
  });
  for (const bad of [
    'sys.cpu',
    'foo:m',
    'sum:1q-avg:m',
    'sum:1m-median:m',
    'sum:m{host}',
    'sum:m{a=b}{c=d}{e=f}',
  ]) {
    expect(() => parseMetricQuery(bad, 'm[0]'), bad).toThrow(TidemarkError);
  }
});

test("Grafana's POST body is answered with the shape Grafana expects", async () => {
  // What Grafana 10+'s OpenTSDB data source sends (convertTargetToQuery + the panel's time range in ms).
  const body = {
    start: T0,
    end: T0 + 600_000,
    queries: [
      {
        metric: 'sys.cpu',
        aggregator: 'sum',
        downsample: '1m-avg',
        filters: [{ type: 'wildcard', tagk: 'dc', filter: '*', groupBy: true }],
        rate: false,
        rateOptions: { counter: false, counterMax: null, resetValue: null },
      },
    ],
    msResolution: false,
    globalAnnotations: true,
    showQuery: true,
  };
  const req = parseQueryPost(JSON.parse(JSON.stringify(body)), NOW);
  const out = await runQuery(req.spec, [localShard(a), localShard(b)]);
  const json = JSON.parse(JSON.stringify(formatQueryResponse(out.results, req)));
  expect(json).toEqual([
    {
      metric: 'sys.cpu',
      tags: { dc: 'eu' },
      aggregateTags: ['host'],
      query: expect.objectContaining({
        metric: 'sys.cpu',
        aggregator: 'sum',
        downsample: '1m-avg',
        index: 0,
      }),
      dps: { '1699999980': 11, '1700000040': 22, '1700000100': 33 },
    },
    {
      metric: 'sys.cpu',
      tags: { dc: 'us', host: 'db01' },
      aggregateTags: [],
      query: expect.objectContaining({ index: 0 }),
      dps: { '1699999980': 100, '1700000040': 100 },
    },
  ]);
});

test('fill nan/null, msResolution keys and showTSUIDs', async () => {
  const req = parseQueryGet(
    new URLSearchParams([
      ['start', String(T0)],
      ['end', String(T0 + 180_000)],
      ['m', 'max:1m-max-null:sys.cpu{host=db01}'],
      ['m', 'count:1m-count-nan:sys.mem'],
      ['ms', 'true'],
      ['show_tsuids', 'true'],
    ]),
    NOW,
  );
  const out = await runQuery(req.spec, [localShard(a), localShard(b)]);
  const json = JSON.parse(JSON.stringify(formatQueryResponse(out.results, req)));
  expect(json[0].dps).toEqual({ [T0]: 100, [T0 + 60_000]: 100, [T0 + 120_000]: null, [T0 + 180_000]: null });
  expect(json[0].tsuids).toHaveLength(1);
  expect(json[0].tsuids[0]).toMatch(/^[0-9a-f]{16}$/);
  expect(json[1].dps).toEqual({
    [T0]: 1,
    [T0 + 60_000]: 'NaN',
    [T0 + 120_000]: 'NaN',
    [T0 + 180_000]: 'NaN',
  });
});

test('POST validation names the field; errors have the OpenTSDB shape', () => {
  const cases: [unknown, string][] = [
    [{ start: '1h-ago' }, 'queries'],
    [{ queries: [{ metric: 'm', aggregator: 'sum' }] }, 'start'],
    [{ start: 1, queries: [{ metric: 'm', aggregator: 'avgg' }] }, 'queries[0].aggregator'],
    [{ start: 1, queries: [{ metric: 'm', aggregator: 'sum', downsample: '1m' }] }, 'queries[0].downsample'],
    [
      {
        start: 1,
        queries: [{ metric: 'm', aggregator: 'sum', filters: [{ type: 'x', tagk: 'h', filter: '' }] }],
      },
      'queries[0].filters[0].type',
    ],
    [
      {
        start: 1,
        queries: [{ metric: 'm', aggregator: 'sum', rate: true, rateOptions: { counterMax: -5 } }],
      },
      'queries[0].rateOptions.counterMax',
    ],
    [{ start: 1, delete: true, queries: [{ metric: 'm', aggregator: 'sum' }] }, 'delete'],
  ];
  for (const [body, field] of cases) {
    let err: unknown;
    try {
      parseQueryPost(body, NOW);
    } catch (e) {
      err = e;
    }
    expect((err as TidemarkError).field, JSON.stringify(body)).toBe(field);
    const shaped = openTsdbError(err);
    expect(shaped.status).toBe(400);
    expect(shaped.body.error.code).toBe(400);
    expect(typeof shaped.body.error.message).toBe('string');
  }
  expect(openTsdbError(new Error('boom'))).toEqual({
    status: 500,
    body: { error: { code: 500, message: 'internal error' } },
  });
});

test('POST tags (old style) group by; zimsum is accepted', () => {
  const q = parseQueryPost(
    { start: '1h-ago', queries: [{ metric: 'm', aggregator: 'zimsum', tags: { host: '*' } }] },
    NOW,
  );
  const plan = planQuery(q.spec);
  expect(plan.queries[0]!.groupBy).toEqual(['host']);
  expect(plan.queries[0]!.aggregator).toBe('sum');
});

test('aggregators, suggest, query/last', () => {
  expect(aggregatorNames()).toEqual(expect.arrayContaining(['sum', 'avg', 'p99', 'none', 'zimsum']));
  expect(suggest([a, b], { type: 'metrics', q: 'sys.' })).toEqual(['sys.cpu', 'sys.mem']);
  expect(suggest([a, b], parseSuggestGet(new URLSearchParams('type=tagk&q=h')))).toEqual(['host']);
  expect(suggest([a, b], { type: 'tagv', q: 'web', max: 1 })).toEqual(['web01']);
  expect(() => suggest([a], { type: 'x' as 'tagk' })).toThrow(TidemarkError);
  const last = queryLast(
    [a, b],
    parseLastGet(new URLSearchParams('timeseries=sys.cpu{dc=eu}&back_scan=0')),
    NOW,
  );
  expect(last.map((p) => [p.tags.host, p.timestamp, p.value])).toEqual(
    expect.arrayContaining([
      ['web01', T0 + 120_000, '3'],
      ['web02', T0 + 120_000, '30'],
    ]),
  );
  expect(last).toHaveLength(2);
  const post = queryLast(
    [a, b],
    parseLastPost({ queries: [{ metric: 'sys.mem' }], backScan: 1 }),
    T0 + 3_000_000,
  );
  expect(post).toEqual([
    { metric: 'sys.mem', timestamp: T0, value: '7', tags: { host: 'db01' }, tsuid: expect.any(String) },
  ]);
  // Back-scan window excludes older points.
  expect(
    queryLast([b], parseLastPost({ queries: [{ metric: 'sys.mem' }], backScan: 1 }), T0 + 7_200_000),
  ).toEqual([]);
});
