/**
 * Fuzz: OpenTSDB query parameters with >= 100,000 generated inputs, half `GET /api/query` query strings
 * (`m=aggregator:[downsample:][rate{...}:]metric{tags}{filters}`, start/end in every time form) and half
 * `POST /api/query` JSON bodies (Grafana's shape) — structure-aware, then mutated — through the parse
 * functions the HTTP handler calls (parseQueryGet / parseQueryPost), then through planQuery, the
 * validation and planning every query goes through before it reaches a shard.
 *
 * Each input either plans, or is refused with a TidemarkError naming a reason and a field. Regular
 * expressions from filters are compiled during planning, so catastrophic patterns are in scope for "no
 * hang" only as far as compilation goes (matching is bounded by the query limits).
 * Seeded: TIDEMARK_SEED=<n> [FUZZ_ONLY=<i>] npx vitest run test/fuzz/query-params.test.ts replays.
 */
import { expect, test } from 'vitest';
import { parseQueryGet, parseQueryPost, planQuery } from '../../src/query/index.js';
import type { Rng } from '../../src/util/random.js';
import { fuzz, INPUTS, mutateString, NUMBERS, summary } from './harness.js';

const FILE = 'query-params.test.ts';
const NOW = 1_700_000_000_000;
const AGGS = [
  'sum',
  'avg',
  'min',
  'max',
  'count',
  'dev',
  'zimsum',
  'mimmax',
  'p99',
  'p50',
  'none',
  'first',
  'last',
  'bogus',
  '',
];
const DS_UNITS = ['ms', 's', 'm', 'h', 'd', 'w', 'n', 'y', 'all', 'x', ''];
const FILLS = ['none', 'nan', 'null', 'zero', 'bad'];
const FILTERS = ['literal_or', 'iliteral_or', 'not_literal_or', 'wildcard', 'iwildcard', 'regexp', 'bogus'];
const ALPHABET = ':{}(),|=*-!~.0123456789smhdwyn ?&%+[]\\^$"é\u0000';

function time(r: Rng): string {
  // Mostly valid times (so most inputs get past the time and exercise the rest), some hostile.
  if (r.chance(0.6))
    return r.chance(0.5) ? `${r.int(1, 48)}h-ago` : String(Math.floor(NOW / 1000) - r.int(0, 1e6));
  switch (r.int(0, 8)) {
    case 0:
      return `${r.int(0, 100)}${r.pick(DS_UNITS)}-ago`;
    case 1:
      return String(Math.floor(NOW / 1000) - r.int(0, 1e6));
    case 2:
      return String(NOW - r.int(0, 1e9));
    case 3:
      return r.pick([
        '2024/01/02-03:04:05',
        '2024/01/02 03:04',
        '2024/01/02',
        '1970/01/01-00:00:00',
        '9999/12/31-23:59:59',
      ]);
    case 4:
      return r.pick(NUMBERS);
    case 5:
      return r.pick(['now', 'yesterday', '1h-ago-ago', '-1h-ago', '1.5h-ago', '']);
    default:
      return `${r.int(1, 48)}h-ago`;
  }
}

function downsample(r: Rng): string {
  const fill = r.chance(0.3) ? `-${r.pick(FILLS)}` : '';
  if (r.chance(0.6)) return `${r.int(1, 60)}m-avg${fill}`;
  return `${r.chance(0.9) ? r.int(0, 120) : ''}${r.pick(DS_UNITS)}-${r.pick(AGGS)}${fill}`;
}

function filterValue(r: Rng): string {
  switch (r.int(0, 6)) {
    case 0:
      return `${r.pick(FILTERS)}(${r.pick(['web01', 'a|b|c', '*.example.com', 'web[0-9]+', '(a+)+$', '[', ''])})`;
    case 1:
      return r.pick(['*', 'a*b', 'web01|web02', '']);
    default:
      return `v${r.int(0, 9)}`;
  }
}

function braces(r: Rng): string {
  const n = r.int(0, 3);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`${r.pick(['host', 'dc', 'k', ''])}=${filterValue(r)}`);
  return `{${parts.join(',')}}`;
}

function metricQuery(r: Rng): string {
  const parts = [r.chance(0.8) ? r.pick(['sum', 'avg', 'max', 'p95']) : r.pick(AGGS)];
  if (r.chance(0.5)) parts.push(downsample(r));
  if (r.chance(0.3)) {
    parts.push(
      r.chance(0.5)
        ? 'rate'
        : `rate{${r.pick(['counter', 'dropcounter', 'bogus'])},${r.pick(['', '100', '-1', 'x'])},${r.pick(['', '0', '5'])}}`,
    );
  }
  parts.push(r.chance(0.9) ? 'sys.cpu.user' : r.pick(['m', 'a.b', '', 'é']));
  let m = parts.join(':');
  if (r.chance(0.5)) m += braces(r);
  if (r.chance(0.3)) m += braces(r);
  return m;
}

function getInput(r: Rng): string {
  const p = new URLSearchParams();
  if (r.chance(0.95)) p.set('start', time(r));
  if (r.chance(0.4)) p.set('end', time(r));
  const n = r.chance(0.05) ? 0 : r.int(1, 4);
  for (let i = 0; i < n; i++) p.append('m', metricQuery(r));
  if (r.chance(0.1)) p.set(r.pick(['ms', 'show_query', 'show_tsuids', 'tsuids']), r.pick(['true', '0', '']));
  let qs = p.toString();
  if (r.chance(0.5))
    qs = mutateString(r, r.chance(0.5) ? decodeURIComponent(qs.replace(/\+/g, ' ')) : qs, ALPHABET);
  return qs;
}

function jsonValue(r: Rng): unknown {
  return r.pick([null, true, 1, -1, 'x', [], {}, 1e308, '1h-ago', NOW]);
}

function postQuery(r: Rng): Record<string, unknown> {
  const q: Record<string, unknown> = {
    aggregator: r.chance(0.8) ? 'sum' : r.pick(AGGS),
    metric: r.chance(0.9) ? 'sys.cpu.user' : r.pick(['m', '', 'é']),
  };
  if (r.chance(0.4)) q.downsample = downsample(r);
  if (r.chance(0.2)) q.rate = r.chance(0.8) ? true : jsonValue(r);
  if (r.chance(0.2)) {
    q.rateOptions = r.chance(0.8)
      ? {
          counter: r.chance(0.5),
          counterMax: r.pick([100, -1, 'x', 2 ** 64]),
          resetValue: r.pick([0, 5, null]),
          dropResets: r.chance(0.5),
        }
      : jsonValue(r);
  }
  if (r.chance(0.4)) q.tags = r.chance(0.8) ? { host: filterValue(r) } : jsonValue(r);
  if (r.chance(0.5)) {
    const n = r.int(0, 3);
    q.filters = Array.from({ length: n }, () =>
      r.chance(0.9)
        ? {
            type: r.pick([...FILTERS, 'regexp']),
            tagk: r.pick(['host', 'dc', '']),
            filter: r.pick(['web01', 'a|b', '*', 'web[0-9]+', '(', '(a*)*b', '']),
            groupBy: r.chance(0.5) ? r.chance(0.5) : jsonValue(r),
          }
        : jsonValue(r),
    );
  }
  if (r.chance(0.05)) q[r.pick(['aggregator', 'metric', 'downsample'])] = jsonValue(r);
  return q;
}

function postInput(r: Rng): unknown {
  const body: Record<string, unknown> = {
    start: r.chance(0.9) ? time(r) : jsonValue(r),
    queries: r.chance(0.95) ? Array.from({ length: r.int(0, 4) }, () => postQuery(r)) : jsonValue(r),
  };
  if (r.chance(0.4)) body.end = r.chance(0.8) ? time(r) : jsonValue(r);
  if (r.chance(0.1))
    body[r.pick(['msResolution', 'showQuery', 'delete', 'useCalendar', 'timezone'])] = jsonValue(r);
  if (r.chance(0.3)) {
    // Mutate the JSON text, keep it if it still parses (a body that does not is refused before parsing).
    const text = mutateString(r, JSON.stringify(body), '{}[]:,"0123456789-.aehrtu ');
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return body;
    }
  }
  return r.chance(0.03) ? jsonValue(r) : body;
}

type Input = { get: string } | { post: unknown };

function gen(r: Rng): Input {
  return r.chance(0.5) ? { get: getInput(r) } : { post: postInput(r) };
}

function run(input: Input): void {
  const parsed =
    'get' in input ? parseQueryGet(new URLSearchParams(input.get), NOW) : parseQueryPost(input.post, NOW);
  // The cluster's first step with a parsed query: validation and planning.
  const plan = planQuery(parsed.spec);
  if (plan.queries.length !== parsed.spec.queries.length)
    throw new Error('planned a different number of queries');
}

test(`query parameters: ${INPUTS} generated GET/POST queries plan or are rejected with a reason`, () => {
  const stats = fuzz(FILE, INPUTS, gen, run);
  console.log(summary('query params', stats));
  expect(stats.inputs).toBeGreaterThanOrEqual(process.env.FUZZ_ONLY === undefined ? 100_000 : 1);
  if (process.env.FUZZ_ONLY === undefined) {
    expect(stats.accepted).toBeGreaterThan(INPUTS / 20);
    expect(stats.rejected).toBeGreaterThan(INPUTS / 100);
  }
}, 120_000);
