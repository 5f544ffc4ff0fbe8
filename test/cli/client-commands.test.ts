/**
 * `tidemark write | query | status` as real processes against an in-process three-node cluster whose nodes
 * know each other's client addresses (`peerClients`), plus the ShardMap RPC listing them all.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveNodeConfig } from '../../src/cluster/config.js';
import { TidemarkNode } from '../../src/cluster/node.js';
import { TidemarkService } from '../../src/gen/tidemark/v1/client_pb.js';
import { createClient } from '../../src/transport/grpc-adapter.js';
import { allocatePorts, freePort, type NodePorts, peersFlag } from '../cluster/fixtures/node-cluster.js';

const CLI = ['--import', 'tsx', 'src/cli/entry.ts'];

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `input` is written to its stdin. Killed (code null) after 60 s. */
function tidemark(args: string[], input?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [...CLI, ...args],
      { cwd: process.cwd(), timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

describe('tidemark write / query / status', () => {
  const root = mkdtempSync(join(tmpdir(), 'tidemark-cli-'));
  const nodes: TidemarkNode[] = [];
  let ports: NodePorts[] = [];
  let endpoint = '';
  const grpcOf = (p: NodePorts) => `127.0.0.1:${p.grpc}`;

  beforeAll(async () => {
    ports = await allocatePorts(['a', 'b', 'c']);
    const peerClients = ports.map((p) => `${p.id}=${grpcOf(p)}`).join(',');
    // Started together, as a StatefulSet does: a node on an empty data directory waits for its peers'
    // answer to "is this cluster new?" (docs/cluster.md, "Membership and rejoining").
    const configs = ports.map((p) =>
      resolveNodeConfig({
        nodeId: p.id,
        listen: { http: `127.0.0.1:${p.http}`, grpc: grpcOf(p), peer: `127.0.0.1:${p.peer}` },
        peers: peersFlag(ports),
        peerClients,
        shards: 4,
        replication: 3,
        dataDir: join(root, p.id),
        raft: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 },
      }),
    );
    nodes.push(
      ...(await Promise.all(configs.map((c) => TidemarkNode.start(c, { checkpointIntervalMs: 0 })))),
    );
    endpoint = grpcOf(ports[1]!);
    const end = Date.now() + 30_000;
    while (!nodes.every((n) => n.readiness().ready)) {
      if (Date.now() > end) throw new Error('cluster not ready');
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 60_000);

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    rmSync(root, { recursive: true, force: true });
  }, 30_000);

  it('ShardMap lists every node with its client address', async () => {
    for (const p of ports) {
      const client = createClient(TidemarkService, grpcOf(p));
      try {
        const map = await client.shardMap({}, { timeoutMs: 5000 });
        const listed = Object.fromEntries(map.nodes.map((n) => [n.id, n.clientAddress]));
        expect(listed).toEqual(Object.fromEntries(ports.map((q) => [q.id, grpcOf(q)])));
      } finally {
        client.close();
      }
    }
  });

  it('write then query returns the value', async () => {
    const ts = Date.now() - 1000;
    const w = await tidemark([
      'write',
      '--endpoint',
      endpoint,
      'cli.test',
      '42.5',
      'host=web-1',
      'dc=x',
      '--timestamp',
      String(ts),
    ]);
    expect(w.stderr).toBe('');
    expect(w.code).toBe(0);
    expect(w.stdout).toContain('wrote 1 of 1 sample');

    const q = await tidemark(['query', '--endpoint', endpoint, 'cli.test', 'host=web-1']);
    expect(q.code).toBe(0);
    expect(q.stdout).toContain('cli.test{dc=x,host=web-1}');
    expect(q.stdout).toContain(new Date(ts).toISOString());
    expect(q.stdout).toMatch(/ 42\.5\n/);
    expect(q.stdout).toContain('1 series, 1 sample');

    const j = await tidemark([
      'query',
      '-e',
      endpoint,
      'cli.test',
      'host=~web-.*',
      '--start',
      '1h-ago',
      '--json',
    ]);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout.trim())).toEqual({
      metric: 'cli.test',
      tags: { dc: 'x', host: 'web-1' },
      timestamps: [ts],
      values: [42.5],
    });

    const chart = await tidemark(['query', '-e', endpoint, 'cli.test', '--chart']);
    expect(chart.code).toBe(0);
    expect(chart.stdout).toContain('cli.test{dc=x,host=web-1}  (1 sample, min 42.5, max 42.5)');

    // Aggregated: a second host in the same minute, summed per dc with 1-minute buckets.
    const minute = Math.floor(ts / 60_000) * 60_000;
    const w2 = await tidemark([
      'write',
      '-e',
      endpoint,
      'cli.test',
      '7.5',
      'host=web-2',
      'dc=x',
      '--timestamp',
      String(minute),
    ]);
    expect(w2.code).toBe(0);
    const agg = await tidemark([
      'query',
      '-e',
      endpoint,
      'cli.test',
      '--agg',
      'sum',
      '--downsample',
      '1m-max',
      '--group-by',
      'dc',
      '--start',
      String(minute),
      '--json',
    ]);
    expect(agg.stderr).toBe('');
    expect(agg.code).toBe(0);
    expect(JSON.parse(agg.stdout.trim())).toEqual({
      metric: 'cli.test',
      tags: { dc: 'x' },
      aggregateTags: ['host'],
      timestamps: [minute],
      values: [50],
    });
  }, 120_000);

  it('writes line protocol from stdin and from a file', async () => {
    const now = Date.now();
    const stdin = await tidemark(
      ['write', '-e', endpoint, '--file', '-', '--precision', 'ms'],
      `lp,host=a used=1.5,free=2 ${now - 2000}\nlp,host=b used=3 ${now - 1000}\n`,
    );
    expect(stdin.code).toBe(0);
    expect(stdin.stdout).toContain('wrote 3 of 3 samples (3 series)');
    const file = join(root, 'points.lp');
    writeFileSync(file, `lp,host=a used=2.5 ${now}\n`);
    const fromFile = await tidemark(['write', '-e', endpoint, '--file', file, '--precision', 'ms']);
    expect(fromFile.code).toBe(0);
    const q = await tidemark(['query', '-e', endpoint, 'lp_used', 'host=a', '--json']);
    expect(JSON.parse(q.stdout.trim()).values).toEqual([1.5, 2.5]);
  }, 120_000);

  it('status lists every node and every shard with a leader; --json', async () => {
    const s = await tidemark(['status', '--endpoint', endpoint]);
    expect(s.code).toBe(0);
    expect(s.stdout).toContain('3 nodes, 4 shards');
    for (const p of ports) expect(s.stdout).toMatch(new RegExp(`${p.id}\\s+${grpcOf(p)}\\s+up`));
    const shardRows = s.stdout.split('\n').filter((l) => /^\s*\d+\s+[abc]\s+\d+\s/.test(l));
    expect(shardRows).toHaveLength(4);

    const j = await tidemark(['status', '--endpoint', endpoint, '--json']);
    expect(j.code).toBe(0);
    const r = JSON.parse(j.stdout);
    expect(r.shardCount).toBe(4);
    expect(
      r.nodes.map((n: { id: string; address: string; reachable: boolean }) => [n.id, n.address, n.reachable]),
    ).toEqual(ports.map((p) => [p.id, grpcOf(p), true]));
    expect(r.shards).toHaveLength(4);
    for (const sh of r.shards) {
      expect(['a', 'b', 'c']).toContain(sh.leader);
      expect(sh.term).toBeGreaterThan(0);
      expect(sh.replicas).toHaveLength(3);
      expect(sh.applied).toBeGreaterThan(0);
    }
  }, 120_000);

  it('usage errors exit 2 with a message', async () => {
    const cases: [string[], string][] = [
      [['write', 'cpu'], 'needs <metric> <value>'],
      [['write', 'cpu', 'abc'], '<value> must be a number'],
      [['write', 'cpu', '1', 'host'], 'tags are tag=value'],
      [['query'], 'needs <metric>'],
      [['query', 'cpu', '--start', 'yesterday'], '--start must be'],
      [['query', 'cpu', '--downsample', '1m-avg'], '--downsample, --group-by and --rate need --agg'],
      [['query', 'cpu', '--counter', '--agg', 'sum'], '--counter needs --rate'],
      [['status', '--bogus'], "Unknown option '--bogus'"],
      [['status', '--endpoint', 'nohostport'], '--endpoint must be host:port'],
    ];
    const results = await Promise.all(cases.map(([args]) => tidemark(args)));
    for (const [i, [args, message]] of cases.entries()) {
      const r = results[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(message);
      expect(r.stderr).toContain('Usage:');
    }
  }, 180_000);

  it('an unreachable endpoint exits 1 with a clear message', async () => {
    const port = await freePort();
    for (const args of [
      ['status', '--endpoint', `127.0.0.1:${port}`],
      ['write', '--endpoint', `127.0.0.1:${port}`, 'cpu', '1'],
      ['query', '--endpoint', `127.0.0.1:${port}`, 'cpu'],
    ]) {
      const r = await tidemark(args);
      expect(r.code, args[0]).toBe(1);
      expect(r.stderr).toContain(`cannot reach the cluster at 127.0.0.1:${port}: connection refused`);
    }
  }, 180_000);
});
