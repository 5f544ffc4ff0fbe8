/**
 * The peers benchmark's pure parts (bench/peers/workload.ts, translate.ts): the TSBS line-protocol data
 * matches the dataset it is generated from (parsed back with Tidemark's own parser), query parameters stay
 * inside the data, each system's request/answer translation maps buckets and series back to the same
 * normalized keys, and the cross-check, percentile and rate code. Seeded: TIDEMARK_SEED=<n> npx vitest run
 * test/bench replays the random cases.
 */
import { describe, expect, test } from 'vitest';
import { START_MS, TSBS_FIELDS, tsbs } from '../../bench/datasets.js';
import {
  questdbNormalize,
  questdbSql,
  tidemarkNormalize,
  tidemarkRequest,
  vmNormalize,
  vmRequest,
} from '../../bench/peers/translate.js';
import {
  crossCheck,
  HOUR,
  lineBatches,
  MINUTE,
  makeQueries,
  type Normalized,
  parseDuration,
  percentile,
  type QueryParams,
  Rng,
  rateSeries,
  resultKey,
  SHAPES,
  TSBS_INTERVAL_MS,
  toleranceOf,
} from '../../bench/peers/workload.js';
import { parseLineProtocol } from '../../src/ingest/index.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);

function seeded(name: string, fn: (rng: Rng) => void): void {
  test(name, () => {
    try {
      fn(new Rng(SEED));
    } catch (err) {
      console.error(
        `${name} failed with seed ${SEED} (rerun: TIDEMARK_SEED=${SEED} npx vitest run test/bench/peers-workload.test.ts)`,
      );
      throw err;
    }
  });
}

/** The naive answer of a query over the dataset the line protocol comes from. */
function reference(q: QueryParams, hosts: number, steps: number): Normalized {
  const ds = tsbs(hosts, steps);
  const out: Normalized = new Map();
  const acc = new Map<string, { sum: number; n: number; max: number }>();
  for (const s of ds.series) {
    const host = s.series.tags.hostname!;
    const field = s.series.metric.slice(4);
    if (!q.fields.includes(field)) continue;
    if (q.shape === 'lastpoint') {
      out.set(resultKey(field, host), s.vals[s.vals.length - 1]!);
      continue;
    }
    if (q.hosts && !q.hosts.includes(host)) continue;
    for (let i = 0; i < s.ts.length; i++) {
      const t = s.ts[i]!;
      if (t < q.start || t > q.end) continue;
      const key = resultKey(field, q.groupByHost ? host : null, t - (t % q.intervalMs));
      const a = acc.get(key) ?? { sum: 0, n: 0, max: Number.NEGATIVE_INFINITY };
      a.sum += s.vals[i]!;
      a.n++;
      a.max = Math.max(a.max, s.vals[i]!);
      acc.set(key, a);
    }
  }
  for (const [k, a] of acc) out.set(k, q.agg === 'avg' ? a.sum / a.n : a.max);
  return out;
}

const split = (key: string) => {
  const [field, host, bucket] = key.split('\t');
  return { field: field!, host: host!, bucket: bucket === undefined ? undefined : Number(bucket) };
};

/** Answers in each system's wire format, built from normalized points (the inverse of the normalizers). */
function asOpenTsdb(q: QueryParams, n: Normalized): unknown {
  if (q.shape === 'lastpoint') {
    return [...n].map(([k, v]) => {
      const { field, host } = split(k);
      return { metric: `cpu_${field}`, timestamp: q.end, value: String(v), tags: { hostname: host } };
    });
  }
  const groups = new Map<
    string,
    { metric: string; tags: Record<string, string>; dps: Record<string, number> }
  >();
  for (const [k, v] of n) {
    const { field, host, bucket } = split(k);
    const g = groups.get(`${field}/${host}`) ?? {
      metric: `cpu_${field}`,
      tags: host === '*' ? {} : { hostname: host },
      dps: {},
    };
    g.dps[String(bucket)] = v;
    groups.set(`${field}/${host}`, g);
  }
  return [...groups.values()];
}

function asProm(q: QueryParams, n: Normalized): unknown {
  const groups = new Map<string, { metric: Record<string, string>; values: [number, string][] }>();
  const result: unknown[] = [];
  for (const [k, v] of n) {
    const { field, host, bucket } = split(k);
    const metric: Record<string, string> =
      host === '*' ? { __name__: `cpu_${field}` } : { __name__: `cpu_${field}`, hostname: host };
    if (q.shape === 'lastpoint') {
      result.push({ metric, value: [q.end / 1000, String(v)] });
      continue;
    }
    const g = groups.get(`${field}/${host}`) ?? { metric, values: [] as [number, string][] };
    // Evaluated at the bucket's last millisecond, as vmRequest asks.
    g.values.push([(bucket! + q.intervalMs - 1) / 1000, String(v)]);
    groups.set(`${field}/${host}`, g);
  }
  return { status: 'success', data: { resultType: 'matrix', result: [...result, ...groups.values()] } };
}

function asQuest(q: QueryParams, n: Normalized): unknown {
  const rows = new Map<string, Record<string, unknown>>();
  for (const [k, v] of n) {
    const { field, host, bucket } = split(k);
    const rk = `${host}/${bucket}`;
    const row = rows.get(rk) ?? {
      ...(host === '*' ? {} : { hostname: host }),
      ...(bucket === undefined ? {} : { timestamp: new Date(bucket).toISOString().replace('Z', '000Z') }),
    };
    row[field] = v;
    rows.set(rk, row);
  }
  const names = [
    ...(q.shape === 'lastpoint' ? [] : ['timestamp']),
    ...(q.groupByHost ? ['hostname'] : []),
    ...q.fields,
  ];
  return {
    columns: names.map((name) => ({ name, type: 'X' })),
    dataset: [...rows.values()].map((r) => names.map((c) => r[c] ?? null)),
  };
}

describe('line protocol data', () => {
  seeded('parses back (Tidemark parser) into exactly the tsbs dataset, in TSBS format', (rng) => {
    for (let round = 0; round < 5; round++) {
      const hosts = rng.int(1, 12);
      const steps = rng.int(1, 50);
      const batch = rng.int(1, 40);
      const writers = rng.int(1, 5);
      const data = lineBatches(hosts, steps * TSBS_INTERVAL_MS, batch, writers);
      expect(data.lines).toBe(hosts * steps);
      expect(data.samples).toBe(hosts * steps * TSBS_FIELDS.length);
      expect(data.bodies).toHaveLength(writers);
      data.bodies.forEach((list, w) => {
        const mine = Math.max(0, Math.ceil((hosts - w) / writers)) * steps;
        expect(list.length).toBe(Math.ceil(mine / batch));
        // A writer sends only its own hosts (h % writers === w), each host's lines in time order.
        const last = new Map<string, bigint>();
        for (const body of list) {
          for (const l of body.trimEnd().split('\n')) {
            const host = /hostname=host_(\d+)/.exec(l)![1]!;
            expect(Number(host) % writers).toBe(w);
            const t = BigInt(l.slice(l.lastIndexOf(' ') + 1));
            expect(t > (last.get(host) ?? -1n)).toBe(true);
            last.set(host, t);
          }
        }
      });
      expect(data.lastMs).toBe(START_MS + (steps - 1) * TSBS_INTERVAL_MS);
      const ds = tsbs(hosts, steps);
      const want = new Map<string, number>();
      for (const s of ds.series) {
        for (let i = 0; i < steps; i++)
          want.set(`${s.series.metric}/${s.series.tags.hostname}/${s.ts[i]}`, s.vals[i]!);
      }
      const got = new Map<string, number>();
      for (const body of data.bodies.flat()) {
        const first = body.split('\n')[0]!;
        // TSBS's influx format: measurement `cpu`, 10 tags in TSBS order, 10 integer fields, ns timestamp.
        expect(first).toMatch(
          /^cpu,hostname=host_\d+,region=[^,]+,datacenter=[^,]+,rack=\d+,os=[^,]+,arch=x(64|86),team=[A-Z]+,service=\d+,service_version=\d,service_environment=[a-z]+ usage_user=\d+i,usage_system=\d+i,(usage_\w+=\d+i,?){8} \d{19}$/,
        );
        const r = parseLineProtocol(body, { now: 0 });
        expect(r.rejected).toBe(0);
        for (let k = 0; k < r.batch.length; k++) {
          const s = r.batch.series[r.batch.seriesRef[k]!]!;
          expect(Object.keys(s.tags)).toHaveLength(10);
          got.set(`${s.metric}/${s.tags.hostname}/${r.batch.timestamps[k]}`, r.batch.values[k]!);
        }
      }
      expect(got).toEqual(want);
    }
  });

  test('durations', () => {
    expect(parseDuration('1h')).toBe(HOUR);
    expect(parseDuration('30m')).toBe(30 * MINUTE);
    expect(parseDuration('2d')).toBe(48 * HOUR);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1500')).toBe(1500);
    expect(() => parseDuration('1 hour')).toThrow(/bad duration/);
  });
});

describe('queries', () => {
  seeded('stay inside the data, cover whole buckets and are the same for the same seed', (rng) => {
    for (let round = 0; round < 20; round++) {
      const hosts = rng.int(1, 200);
      const durationMs = rng.pick([30 * MINUTE, HOUR, 3 * HOUR, 24 * HOUR, 3 * 24 * HOUR]);
      const seed = rng.int(0, 1000);
      for (const shape of SHAPES) {
        const qs = makeQueries(shape, 5, hosts, durationMs, new Rng(seed));
        expect(makeQueries(shape, 5, hosts, durationMs, new Rng(seed))).toEqual(qs);
        for (const q of qs) {
          expect(q.start).toBeGreaterThanOrEqual(START_MS);
          expect(q.end).toBeLessThan(START_MS + durationMs);
          if (shape === 'lastpoint') continue;
          expect(q.start % q.intervalMs).toBe(0);
          expect((q.end + 1) % q.intervalMs).toBe(0);
          const wantHosts = { 'single-groupby-1-1-1': 1, 'single-groupby-5-8-1': 8, 'cpu-max-all-8': 8 }[
            shape as string
          ];
          if (wantHosts === undefined) expect(q.hosts).toBeNull();
          else expect(q.hosts).toHaveLength(Math.min(wantHosts, hosts));
          const span = q.end + 1 - q.start;
          if (shape.startsWith('single-groupby')) expect(span).toBe(Math.min(HOUR, durationMs));
        }
      }
    }
  });

  seeded("each system's request and answer map back to the same normalized points", (rng) => {
    const hosts = rng.int(2, 12);
    const steps = rng.int(360, 1200);
    const durationMs = steps * TSBS_INTERVAL_MS;
    for (const shape of SHAPES) {
      for (const q of makeQueries(shape, 3, hosts, durationMs, rng)) {
        const ref = reference(q, hosts, steps);
        expect(ref.size).toBeGreaterThan(0);
        expect(tidemarkNormalize(q, asOpenTsdb(q, ref))).toEqual(ref);
        expect(vmNormalize(q, asProm(q, ref))).toEqual(ref);
        expect(questdbNormalize(q, asQuest(q, ref))).toEqual(ref);
      }
    }
  });

  test('requests say the same thing in each language', () => {
    const q: QueryParams = {
      shape: 'single-groupby-5-8-1',
      fields: ['usage_user', 'usage_system'],
      hosts: ['host_1', 'host_7'],
      start: START_MS + HOUR,
      end: START_MS + 2 * HOUR - 1,
      intervalMs: MINUTE,
      agg: 'max',
      groupByHost: false,
    };
    const t = tidemarkRequest(q) as { path: string; body: { queries: unknown[] } };
    expect(t.path).toBe('/api/query');
    expect(t.body.queries[0]).toEqual({
      metric: 'cpu_usage_user',
      aggregator: 'max',
      downsample: '1m-max',
      filters: [{ type: 'literal_or', tagk: 'hostname', filter: 'host_1|host_7', groupBy: false }],
    });
    const vm = new URLSearchParams(vmRequest(q).split('?')[1]);
    expect(vm.get('query')).toBe(
      'max by (__name__) (max_over_time({__name__=~"cpu_(usage_user|usage_system)",hostname=~"host_1|host_7"}[60s]) keep_metric_names)',
    );
    // The first bucket [start, start + 1m) is evaluated at its last ms: the window (t - 1m, t] covers it.
    expect(Number(vm.get('start')) * 1000).toBe(START_MS + HOUR + MINUTE - 1);
    expect(Number(vm.get('end')) * 1000).toBe(START_MS + 2 * HOUR - 1);
    expect(vm.get('step')).toBe('60s');
    expect(questdbSql(q)).toBe(
      "SELECT timestamp, max(usage_user) usage_user, max(usage_system) usage_system FROM cpu WHERE timestamp BETWEEN '2026-01-01T01:00:00.000Z' AND '2026-01-01T01:59:59.999Z' AND hostname IN ('host_1', 'host_7') SAMPLE BY 1m ALIGN TO CALENDAR",
    );
  });

  test('system errors are reported, not normalized to empty answers', () => {
    const q = makeQueries('lastpoint', 1, 2, HOUR, new Rng(1))[0]!;
    expect(() => vmNormalize(q, { status: 'error', error: 'bad' })).toThrow(/VictoriaMetrics/);
    expect(() => questdbNormalize(q, { query: 'x', error: 'bad', position: 0 })).toThrow(/QuestDB/);
  });
});

describe('cross-check', () => {
  const a: Normalized = new Map([
    ['f\t*\t1', 1],
    ['f\t*\t2', 50.5],
  ]);
  test('equal answers', () => {
    expect(crossCheck(a, new Map(a), 0)).toEqual({
      equal: true,
      points: 2,
      missing: [],
      extra: [],
      mismatched: [],
    });
  });
  test('missing, extra and different points', () => {
    const b: Normalized = new Map([
      ['f\t*\t2', 50.6],
      ['f\t*\t3', 1],
    ]);
    const c = crossCheck(a, b, 1e-9);
    expect(c.equal).toBe(false);
    expect(c.missing).toEqual(['f\t*\t1']);
    expect(c.extra).toEqual(['f\t*\t3']);
    expect(c.mismatched).toEqual([{ key: 'f\t*\t2', expected: 50.5, actual: 50.6 }]);
  });
  test('tolerance: relative for averages, exact for max; NaN never equal', () => {
    const avg = 33.333333333333336;
    expect(crossCheck(new Map([['k', avg]]), new Map([['k', avg * (1 + 4e-16)]]), 1e-9).equal).toBe(true);
    expect(crossCheck(new Map([['k', avg]]), new Map([['k', avg * (1 + 1e-6)]]), 1e-9).equal).toBe(false);
    expect(crossCheck(new Map([['k', 42]]), new Map([['k', 42.000000001]]), 0).equal).toBe(false);
    expect(crossCheck(new Map([['k', 1]]), new Map([['k', Number.NaN]]), 1e-9).equal).toBe(false);
    const q = makeQueries('double-groupby-all', 1, 2, HOUR, new Rng(1))[0]!;
    expect(toleranceOf(q)).toBe(1e-9);
    expect(toleranceOf(makeQueries('cpu-max-all-8', 1, 2, HOUR, new Rng(1))[0]!)).toBe(0);
  });
});

describe('numbers', () => {
  test('percentile (nearest rank)', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(xs, 0.5)).toBe(50);
    expect(percentile(xs, 0.99)).toBe(99);
    expect(percentile(xs, 1)).toBe(100);
    expect(percentile([7.257], 0.99)).toBe(7.26);
    expect(percentile([], 0.5)).toBeNaN();
    expect(percentile([5, 1, 3], 0.5)).toBe(3);
  });
  test('rate series', () => {
    expect(rateSeries([], 1000)).toEqual([]);
    expect(
      rateSeries(
        [
          [100, 10],
          [900, 20],
          [1500, 30],
          [2999, 5],
        ],
        1000,
      ),
    ).toEqual([
      [1, 30],
      [2, 30],
      [3, 5],
    ]);
  });
});
