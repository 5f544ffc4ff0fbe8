/**
 * Queries across a cluster: four nodes, three replicas per shard (so every node reaches some shards only
 * through ShardQueryService on another node). Random datasets and random queries (every function, fill
 * policy, filter type, group-by and rate option) through random nodes equal the brute-force reference over
 * the raw samples — also while every shard's leadership moves; OpenTSDB HTTP endpoints (Grafana's
 * requests) answer through the node; limits and deadlines are enforced.
 * Seeded: TIDEMARK_SEED=<n> npx vitest run test/cluster/node-query.test.ts replays.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApi, type HttpApi } from '../../src/api/http.js';
import type { TidemarkNode } from '../../src/cluster/node.js';
import { isTidemarkError } from '../../src/errors/index.js';
import type { QuerySpec } from '../../src/query/index.js';
import { Rng } from '../../src/util/random.js';
import { batchOf } from '../query/helpers.js';
import { BASE, compareToReference, plain, randomData, randomSpec } from '../query/random.js';
import { type RefSeries, referenceQuery } from '../query/reference.js';
import { NodeCluster, waitFor } from './fixtures/node-cluster.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);
const IDS = ['a', 'b', 'c', 'd'];
const SHARDS = 4;

function replay(seed: number): string {
  return `seed ${seed} (rerun: TIDEMARK_SEED=${seed} npx vitest run test/cluster/node-query.test.ts)`;
}

describe('TidemarkNode queries: four nodes, R = 3', () => {
  const cluster = new NodeCluster(IDS, SHARDS);
  const data: RefSeries[] = [];
  let http: HttpApi;
  let base: string;

  beforeAll(async () => {
    await cluster.start({ balancer: false });
    await cluster.ready();
    // Several random datasets, each under its own metrics (the generators pick sys.cpu / net.bytes).
    for (let k = 0; k < 3; k++) {
      const part = randomData(new Rng(SEED + k)).map((d) => ({
        ...d,
        series: { metric: `${d.series.metric}.${k}`, tags: d.series.tags },
      }));
      const r = await cluster.node(IDS[k % IDS.length]!).write(batchOf(part));
      expect(r.rejected).toEqual([]);
      data.push(...part);
    }
    http = createHttpApi({ cluster: cluster.node('d') });
    const addr = await http.listen('127.0.0.1', 0);
    base = `http://127.0.0.1:${addr.port}`;
  }, 60_000);

  afterAll(async () => {
    await http?.close();
    await cluster.close();
  });

  /** A random spec over one of the datasets, with its metrics renamed to match. */
  function specFor(r: Rng): QuerySpec {
    const k = r.int(0, 2);
    const spec = randomSpec(r);
    return { ...spec, queries: spec.queries.map((q) => ({ ...q, metric: `${q.metric}.${k}` })) };
  }

  async function checkRandomQueries(r: Rng, n: number, node: () => TidemarkNode): Promise<void> {
    for (let i = 0; i < n; i++) {
      const spec = specFor(r);
      const stale = r.chance(0.2);
      const out = await node().query(spec, stale ? { stale: true } : {});
      expect(out.missingShards).toEqual([]);
      compareToReference(spec, plain(out.results), referenceQuery(data, spec));
    }
  }

  it('random queries through random nodes equal the reference', async () => {
    const r = new Rng(SEED);
    try {
      await checkRandomQueries(r, 80, () => cluster.node(IDS[r.int(0, IDS.length - 1)]!));
    } catch (err) {
      throw new Error(`${replay(SEED)}: ${String(err)}`, { cause: err });
    }
  }, 120_000);

  it('queries stay correct while every shard moves its leader', async () => {
    const r = new Rng(SEED + 100);
    let moving = true;
    const mover = (async () => {
      let n = 0;
      while (moving) {
        for (const id of IDS) {
          const node = cluster.node(id);
          for (const [shard, replica] of node.replicas) {
            if (!replica.isLeader()) continue;
            const peers = replica.driver.status().conf.voters.filter((v) => v !== id);
            replica.transferLeader(peers[(n++ + shard) % peers.length]!);
          }
        }
        await new Promise((res) => setTimeout(res, 150));
      }
    })();
    try {
      await checkRandomQueries(r, 40, () => cluster.node(IDS[r.int(0, IDS.length - 1)]!));
    } catch (err) {
      throw new Error(`${replay(SEED + 100)}: ${String(err)}`, { cause: err });
    } finally {
      moving = false;
      await mover;
    }
  }, 120_000);

  it("answers Grafana's OpenTSDB requests over HTTP", async () => {
    const aggregators = await (await fetch(`${base}/api/aggregators`)).json();
    expect(aggregators).toEqual(expect.arrayContaining(['sum', 'avg', 'max', 'p99', 'none']));
    const filters = (await (await fetch(`${base}/api/config/filters`)).json()) as Record<string, unknown>;
    expect(Object.keys(filters)).toEqual(
      expect.arrayContaining([
        'literal_or',
        'iliteral_or',
        'not_literal_or',
        'wildcard',
        'iwildcard',
        'regexp',
      ]),
    );
    const metrics = await (await fetch(`${base}/api/suggest?type=metrics&q=sys.cpu&max=10`)).json();
    expect(metrics).toEqual(
      [...new Set(data.map((d) => d.series.metric))]
        .filter((m) => m.startsWith('sys.cpu'))
        .sort()
        .slice(0, 10),
    );
    const tagk = await (await fetch(`${base}/api/suggest?type=tagk&q=`)).json();
    expect(tagk).toEqual([...new Set(data.flatMap((d) => Object.keys(d.series.tags)))].sort());

    // The POST body Grafana 10+ sends (downsample + groupBy filter), for a metric that exists.
    const metric = data[0]!.series.metric;
    const body = {
      start: BASE - 60_000,
      end: BASE + 3_600_000,
      queries: [
        {
          metric,
          aggregator: 'sum',
          downsample: '5m-avg',
          filters: [{ type: 'wildcard', tagk: 'host', filter: '*', groupBy: true }],
          rate: false,
          rateOptions: { counter: false, counterMax: null, resetValue: null },
        },
      ],
      msResolution: false,
      globalAnnotations: true,
      showQuery: true,
    };
    const res = await fetch(`${base}/api/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    const json = (await res.json()) as {
      metric: string;
      tags: Record<string, string>;
      aggregateTags: string[];
      dps: Record<string, number>;
      query: { index: number };
    }[];
    const hosts = [...new Set(data.filter((d) => d.series.metric === metric).map((d) => d.series.tags.host))];
    expect(json.map((g) => g.tags.host).sort()).toEqual(hosts.sort());
    for (const g of json) {
      expect(g.metric).toBe(metric);
      expect(g.query.index).toBe(0);
      for (const [k, v] of Object.entries(g.dps)) {
        expect(Number(k) % 300).toBe(0); // seconds, aligned to 5 minutes
        expect(typeof v).toBe('number');
      }
    }

    // The GET form, with the same answer as the engine's reference.
    const get = await fetch(
      `${base}/api/query?start=${BASE - 60_000}&end=${BASE + 3_600_000}&m=${encodeURIComponent(`max:1m-max:${metric}`)}`,
    );
    expect(get.status).toBe(200);
    const [one] = (await get.json()) as { dps: Record<string, number> }[];
    const want = referenceQuery(data, {
      start: BASE - 60_000,
      end: BASE + 3_600_000,
      queries: [{ metric, aggregator: 'max', downsample: { interval: 60_000, fn: 'max', fill: 'none' } }],
    });
    expect(Object.values(one!.dps)).toEqual(want[0]!.vals);

    // Errors are shaped like OpenTSDB's.
    const bad = await fetch(`${base}/api/query?start=1h-ago&m=bogus:${metric}`);
    expect(bad.status).toBe(400);
    const err = (await bad.json()) as { error: { code: number; message: string } };
    expect(err.error.code).toBe(400);
    expect(err.error.message.length).toBeGreaterThan(0);
  });

  it('enforces limits and deadlines with clear errors', async () => {
    const metric = data[0]!.series.metric;
    const spec: QuerySpec = {
      start: 0,
      end: BASE + 3_600_000,
      queries: [{ metric, aggregator: 'none' }],
    };
    const limited = await cluster
      .node('b')
      .query(spec, { limits: { maxSamples: 1 } })
      .catch((e: unknown) => e);
    expect(isTidemarkError(limited) && limited.code).toBe('RESOURCE_EXHAUSTED');
    expect(isTidemarkError(limited) && limited.reason).toBe('query_samples_limit');
    const late = await cluster
      .node('c')
      .query(spec, { deadline: Date.now() - 1 })
      .catch((e: unknown) => e);
    expect(isTidemarkError(late) && late.code).toBe('DEADLINE_EXCEEDED');
    // The cluster still answers afterwards.
    await waitFor(
      async () => (await cluster.node('c').query(spec)).results.length > 0,
      'a query after',
      10_000,
    );
  });
});
