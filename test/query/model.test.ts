/** Query validation: every invalid input is INVALID_ARGUMENT naming the field; filters translate exactly. */
import { expect, test } from 'vitest';
import { TidemarkError } from '../../src/errors/index.js';
import { literalAlternatives } from '../../src/query/executor.js';
import { escapeRegex, filterToMatchers, planQuery } from '../../src/query/model.js';

const base = { start: 1000, end: 2000, queries: [{ metric: 'm', aggregator: 'sum' }] };

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TidemarkError);
    expect((err as TidemarkError).code).toBe('INVALID_ARGUMENT');
    return (err as TidemarkError).field;
  }
  throw new Error('expected an error');
}

test.each([
  [{ ...base, start: -1 }, 'start'],
  [{ ...base, start: 1.5 }, 'start'],
  [{ ...base, end: 500 }, 'end'],
  [{ ...base, queries: [] }, 'queries'],
  [{ ...base, queries: [{ metric: '', aggregator: 'sum' }] }, 'queries[0].metric'],
  [{ ...base, queries: [{ metric: 'm', aggregator: 'median' }] }, 'queries[0].aggregator'],
  [
    { ...base, queries: [{ metric: 'm', aggregator: 'sum', downsample: { interval: 0, fn: 'avg' } }] },
    'queries[0].downsample.interval',
  ],
  [
    { ...base, queries: [{ metric: 'm', aggregator: 'sum', downsample: { interval: 10, fn: 'p42' } }] },
    'queries[0].downsample.fn',
  ],
  [
    {
      ...base,
      queries: [{ metric: 'm', aggregator: 'sum', downsample: { interval: 10, fn: 'avg', fill: 'zeros' } }],
    },
    'queries[0].downsample.fill',
  ],
  [
    { ...base, queries: [{ metric: 'm', aggregator: 'sum', rate: { counterMax: -1 } }] },
    'queries[0].rate.counterMax',
  ],
  [
    { ...base, queries: [{ metric: 'm', aggregator: 'sum', rate: { counter: 'yes' } }] },
    'queries[0].rate.counter',
  ],
  [
    {
      ...base,
      queries: [{ metric: 'm', aggregator: 'sum', filters: [{ tagk: 'h', type: 'glob', filter: 'x' }] }],
    },
    'queries[0].filters[0].type',
  ],
  [
    {
      ...base,
      queries: [{ metric: 'm', aggregator: 'sum', filters: [{ tagk: '', type: '=', filter: 'x' }] }],
    },
    'queries[0].filters[0].tagk',
  ],
  [
    {
      ...base,
      queries: [{ metric: 'm', aggregator: 'sum', filters: [{ tagk: 'h', type: 'regexp', filter: '(' }] }],
    },
    'queries[0].filters[0].filter',
  ],
  [
    {
      ...base,
      queries: [
        { metric: 'm', aggregator: 'sum', filters: [{ tagk: 'h', type: 'literal_or', filter: 'a||b' }] },
      ],
    },
    'queries[0].filters[0].filter',
  ],
  [{ ...base, queries: [{ metric: 'm', aggregator: 'sum', groupBy: [''] }] }, 'queries[0].groupBy[0]'],
])('invalid query %#: field %s', (spec, field) => {
  expect(fieldOf(() => planQuery(spec))).toBe(field);
});

test('limits are validated and fill over too many buckets is refused up front', () => {
  expect(fieldOf(() => planQuery(base, { maxPoints: 0 }))).toBe('limits.maxPoints');
  try {
    planQuery(
      {
        start: 0,
        end: 86_400_000,
        queries: [
          { metric: 'm', aggregator: 'sum', downsample: { interval: 1000, fn: 'avg', fill: 'zero' } },
        ],
      },
      { maxPoints: 1000 },
    );
    throw new Error('expected an error');
  } catch (err) {
    expect((err as TidemarkError).code).toBe('RESOURCE_EXHAUSTED');
    expect((err as TidemarkError).reason).toBe('query_points_limit');
    expect((err as TidemarkError).field).toBe('limits.maxPoints');
    expect((err as TidemarkError).message).toMatch(/coarser downsample/);
  }
});

test('OpenTSDB filters translate to anchored store matchers plus tag presence', () => {
  expect(filterToMatchers({ tagk: 'host', type: 'literal_or', filter: 'a.b|c' }, 'f')).toEqual([
    { name: 'host', op: '=~', value: 'a\\.b|c' },
    { name: 'host', op: '!=', value: '' },
  ]);
  expect(filterToMatchers({ tagk: 'host', type: 'wildcard', filter: 'web*-*' }, 'f')[0]).toEqual({
    name: 'host',
    op: '=~',
    value: 'web.*-.*',
  });
  expect(filterToMatchers({ tagk: 'h', type: 'iliteral_or', filter: 'Ab' }, 'f')[0]!.value).toBe('[aA][bB]');
  expect(filterToMatchers({ tagk: 'h', type: 'regexp', filter: 'web' }, 'f')[0]!.value).toBe('.*(?:web).*');
  expect(filterToMatchers({ tagk: 'h', type: '!=', filter: 'x' }, 'f')).toEqual([
    { name: 'h', op: '!=', value: 'x' },
  ]);
  expect(
    new RegExp(`^(?:${escapeRegex('a+b(c)[d]{e}|^$\\.?*/-')})$`, 'u').test('a+b(c)[d]{e}|^$\\.?*/-'),
  ).toBe(true);
});

test('group-by keys are sorted and require the tag', () => {
  const q = planQuery({
    ...base,
    queries: [
      {
        metric: 'm',
        aggregator: 'zimsum',
        groupBy: ['dc'],
        filters: [{ tagk: 'host', type: 'wildcard', filter: '*', groupBy: true }],
      },
    ],
  });
  expect(q.queries[0]!.aggregator).toBe('sum');
  expect(q.queries[0]!.groupBy).toEqual(['dc', 'host']);
  expect(q.queries[0]!.matchers).toContainEqual({ name: 'dc', op: '!=', value: '' });
});

test('literal alternations are recognised (and only those) for postings-based selects', () => {
  expect(literalAlternatives('a|b\\.c|d\\|e')).toEqual(['a', 'b.c', 'd|e']);
  expect(
    literalAlternatives(
      filterToMatchers({ tagk: 'h', type: 'literal_or', filter: 'x.y|(z)' }, 'f')[0]!.value,
    ),
  ).toEqual(['x.y', '(z)']);
  for (const re of ['a.b', 'a|', 'web.*', '[ab]', 'a\\d', 'x+', ''])
    expect(literalAlternatives(re), re).toBeNull();
});
