/**
 * Observability of a real cluster (three in-process nodes, real LMDB, real gRPC): /metrics served by the
 * HTTP API of node `a` after writes over every API, queries over HTTP and gRPC, a query past a limit and a
 * leadership transfer — every family of docs/operations.md is present and the ones those actions feed have
 * moved; process metrics appear once per exposition although three nodes share the process. The nodes'
 * pino lines are captured: a leader change names node, shard and term.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApi, type HttpApi } from '../../src/api/http.js';
import { TidemarkClient } from '../../src/client/index.js';
import { NodeCluster, waitFor } from '../cluster/fixtures/node-cluster.js';

const IDS = ['a', 'b', 'c'];
const SHARDS = 2;
const T0 = Date.now() - 60_000;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of a family's samples whose labels include `match`. */
function sum(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  let total = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

describe('observability of a real node', () => {
  const cluster = new NodeCluster(IDS, SHARDS);
  const lines: Record<string, unknown>[] = [];
  let http: HttpApi;
  let base: string;
  let client: TidemarkClient;

  beforeAll(async () => {
    const logger = pino(
      { level: 'info' },
      {
        write(s: string) {
          lines.push(JSON.parse(s) as Record<string, unknown>);
        },
      },
    );
    await cluster.start({ balancer: false, logger });
    await cluster.ready();
    const a = cluster.node('a');
    http = createHttpApi({ cluster: a, metrics: a.metrics.registry });
    const bound = await http.listen('127.0.0.1', 0);
    base = `http://127.0.0.1:${bound.port}`;
    client = await TidemarkClient.connect({ endpoints: [a.endpoints.grpc], shardMapRefreshMs: 0 });
  });
  afterAll(async () => {
    await client?.close();
    await http?.close(100);
    await cluster.close();
  });

  const scrape = async (): Promise<{ text: string; samples: Sample[] }> => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    return { text, samples: parse(text) };
  };

  it('serves every family once, and the ones fed by writes, queries, limits and a leader change move', async () => {
    const before = await scrape();
    // Proposals and their commit latency are counted by the shards' leaders, which may all be other nodes.
    const everyNode = async (): Promise<Sample[]> =>
      (await Promise.all(IDS.map((id) => cluster.node(id).metrics.text()))).flatMap(parse);
    const beforeNodes = await everyNode();
    const a = cluster.node('a');

    // Writes over line protocol, OpenTSDB put and gRPC.
    const lp = Array.from({ length: 20 }, (_, i) => `obs_cpu,host=h${i % 4} value=${i} ${T0 + i}`).join('\n');
    expect((await fetch(`${base}/write?precision=ms`, { method: 'POST', body: lp })).status).toBe(204);
    const put = Array.from({ length: 10 }, (_, i) => ({
      metric: 'obs_mem',
      timestamp: T0 + i,
      value: i,
      tags: { host: `h${i % 2}` },
    }));
    expect((await fetch(`${base}/api/put`, { method: 'POST', body: JSON.stringify(put) })).status).toBe(204);
    const grpcWrite = await client.write(
      Array.from({ length: 5 }, (_, i) => ({
        metric: 'obs_disk',
        tags: { host: 'h0' },
        timestamp: T0 + i,
        value: i,
      })),
    );
    expect(grpcWrite.accepted).toBe(5);

    // Queries over HTTP and gRPC; one past a query limit.
    const q = await fetch(
      `${base}/api/query?start=${T0 - 1000}&end=${T0 + 1000}&m=sum:obs_cpu_value&ms=true`,
    );
    expect(q.status).toBe(200);
    const rows: unknown[] = [];
    for await (const s of client.query({
      metric: 'obs_cpu_value',
      start: T0 - 1000,
      end: T0 + 1000,
      aggregator: 'sum',
    }))
      rows.push(s);
    expect(rows.length).toBe(1);
    await expect(
      a.query(
        { start: T0 - 1000, end: T0 + 1000, queries: [{ metric: 'obs_cpu_value', aggregator: 'none' }] },
        { limits: { maxSeries: 1 } },
      ),
    ).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });

    // A leader change: shard 0 moves to another replica.
    const leaderId = IDS.find((id) =>
      cluster
        .node(id)
        .status()
        .replicas.some((r) => r.shard === 0 && r.role === 'leader'),
    )!;
    const to = IDS.find((id) => id !== leaderId)!;
    const moved = await cluster.node(leaderId).transferLeader(0, to);
    expect(moved.leader).toBe(to);
    // Every node observes it (observe runs every 100 ms); store figures are cached for 1 s.
    await waitFor(
      () => IDS.every((id) => cluster.node(id).shardMap().shards[0]!.leader === to),
      'the new leader observed',
    );
    await new Promise((r) => setTimeout(r, 1100));
    const after = await scrape();
    const afterNodes = await everyNode();
    for (const name of ['tidemark_raft_proposals_total', 'tidemark_raft_commit_duration_seconds_count'])
      expect(sum(afterNodes, name), name).toBeGreaterThan(sum(beforeNodes, name));

    // One family per name, although three nodes and the HTTP API share the process.
    const types = after.text.split('\n').filter((l) => l.startsWith('# TYPE '));
    expect(new Set(types.map((l) => l.split(' ')[2])).size).toBe(types.length);

    const present = [
      'tidemark_raft_term',
      'tidemark_raft_leader_changes_total',
      'tidemark_raft_proposals_total',
      'tidemark_raft_commit_duration_seconds',
      'tidemark_raft_apply_duration_seconds',
      'tidemark_raft_snapshots_sent_total',
      'tidemark_raft_snapshots_received_total',
      'tidemark_raft_log_compactions_total',
      'tidemark_store_series',
      'tidemark_store_chunks',
      'tidemark_store_chunk_bytes',
      'tidemark_store_head_samples',
      'tidemark_store_retention_cutoff_ms',
      'tidemark_store_retention_runs_total',
      'tidemark_store_retention_dropped_chunks_total',
      'tidemark_store_checkpoint_index',
      'tidemark_write_rejected_samples_total',
      'tidemark_ingest_samples_total',
      'tidemark_ingest_rejected_total',
      'tidemark_query_duration_seconds',
      'tidemark_query_limit_hits_total',
      'tidemark_http_request_duration_seconds',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
      'process_cpu_seconds_total',
    ];
    for (const name of present)
      expect(
        types.some((l) => l.startsWith(`# TYPE ${name} `)),
        name,
      ).toBe(true);

    const moves: [string, Record<string, string>][] = [
      ['tidemark_raft_leader_changes_total', { shard: '0' }],
      ['tidemark_raft_term', { shard: '0' }],
      ['tidemark_raft_apply_duration_seconds_count', {}],
      ['tidemark_store_series', {}],
      ['tidemark_store_head_samples', {}],
      ['tidemark_ingest_samples_total', { protocol: 'influx' }],
      ['tidemark_ingest_samples_total', { protocol: 'opentsdb' }],
      ['tidemark_query_duration_seconds_count', { api: 'http', outcome: 'ok' }],
      ['tidemark_query_limit_hits_total', { limit: 'maxSeries' }],
      ['tidemark_http_requests_total', { endpoint: '/api/query' }],
    ];
    for (const [name, match] of moves)
      expect(sum(after.samples, name, match), `${name} ${JSON.stringify(match)}`).toBeGreaterThan(
        sum(before.samples, name, match),
      );
    // The SDK sends each shard to its leader and a query to any node it knows (every node lists all client
    // addresses): gRPC ingest and queries are counted by whichever node served them.
    const grpcIngest = { protocol: 'grpc' };
    expect(sum(afterNodes, 'tidemark_ingest_samples_total', grpcIngest)).toBe(
      sum(beforeNodes, 'tidemark_ingest_samples_total', grpcIngest) + 5,
    );
    const grpcQuery = { api: 'grpc', outcome: 'ok' };
    expect(sum(afterNodes, 'tidemark_query_duration_seconds_count', grpcQuery)).toBeGreaterThan(
      sum(beforeNodes, 'tidemark_query_duration_seconds_count', grpcQuery),
    );
    expect(sum(after.samples, 'tidemark_ingest_samples_total', { protocol: 'influx' })).toBe(20);
    expect(sum(after.samples, 'tidemark_ingest_samples_total', { protocol: 'opentsdb' })).toBe(10);
    expect(sum(after.samples, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(sum(after.samples, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
    // The process metrics are shared objects: every node's own registry serves them too.
    for (const id of IDS)
      expect(await cluster.node(id).metrics.text()).toContain('# TYPE nodejs_eventloop_lag_seconds gauge');

    // The leader change, as the nodes logged it: node, shard and term on one line.
    const term = moved.term;
    const line = lines.find(
      (l) => l.msg === 'shard leader changed' && l.shard === 0 && l.leader === to && l.term === term,
    );
    expect(line, JSON.stringify(lines.filter((l) => l.shard === 0))).toBeDefined();
    expect(IDS).toContain(line!.node);
  });
});
