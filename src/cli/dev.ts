/**
 * `tidemark dev [--dir D] [--nodes N] [--base-port P] [--shards S]`: a local cluster of N node processes
 * (`tidemark start` children). Node i listens at P, P+1, P+2 (HTTP, gRPC, peer) + 10·i; data lives under
 * D/node-i (a temp dir, removed at exit, when --dir is not given). Waits for every shard to elect a leader,
 * writes a little demo data through the gRPC Write of node 0, prints the endpoints and runs until Ctrl-C,
 * which stops every node gracefully.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { TidemarkService } from '../gen/tidemark/v1/client_pb.js';
import { createClient } from '../transport/grpc-adapter.js';

function int(value: string | undefined, name: string, lo: number, hi: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < lo || n > hi)
    throw new Error(`--${name} must be an integer in [${lo}, ${hi}]`);
  return n;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function dev(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' },
      nodes: { type: 'string', default: '3' },
      'base-port': { type: 'string', default: '4242' },
      shards: { type: 'string', default: '8' },
    },
  });
  const count = int(values.nodes, 'nodes', 1, 9);
  const base = int(values['base-port'], 'base-port', 1024, 65535 - 10 * count - 3);
  const shards = int(values.shards, 'shards', 1, 4096);
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'tidemark-dev-'));
  const keep = values.dir !== undefined;
  const nodes = Array.from({ length: count }, (_, i) => ({
    id: `node-${i}`,
    http: `127.0.0.1:${base + 10 * i}`,
    grpc: `127.0.0.1:${base + 10 * i + 1}`,
    peer: `127.0.0.1:${base + 10 * i + 2}`,
    dataDir: join(dir, `node-${i}`),
  }));
  const peers = nodes.map((n) => `${n.id}=${n.peer}`).join(',');
  // Every node's client address, so the ShardMap RPC lets clients route straight to shard leaders.
  const peerClients = nodes.map((n) => `${n.id}=${n.grpc}`).join(',');
  // Re-run this same CLI (tsx in development, bin/tidemark.js when built) as `start`.
  const script = process.argv[1]!;
  const children: ChildProcess[] = [];
  let stopping = false;
  let failed: string | undefined;
  const exited: Promise<void>[] = [];
  for (const n of nodes) {
    mkdirSync(n.dataDir, { recursive: true });
    const child = spawn(
      process.execPath,
      [
        ...process.execArgv,
        script,
        'start',
        `--node-id=${n.id}`,
        `--http=${n.http}`,
        `--grpc=${n.grpc}`,
        `--peer-listen=${n.peer}`,
        `--peers=${peers}`,
        `--peer-clients=${peerClients}`,
        `--shards=${shards}`,
        `--data-dir=${n.dataDir}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } },
    );
    children.push(child);
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => console.log(`[${n.id}] ${line}`));
    }
    exited.push(
      new Promise((resolve) =>
        child.once('exit', (code, sig) => {
          if (!stopping) failed ??= `${n.id} exited (${sig ?? code})`;
          resolve();
        }),
      ),
    );
  }

  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }, 15_000);
    await Promise.all(exited);
    clearTimeout(timer);
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };

  let interrupted = false;
  const stopSignal = new Promise<void>((resolve) => {
    const on = () => {
      interrupted = true;
      resolve();
    };
    process.once('SIGINT', on);
    process.once('SIGTERM', on);
  });

  const clients = nodes.map((n) => createClient(TidemarkService, n.grpc));
  try {
    // Every node up and every local replica knowing its leader.
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (interrupted || failed !== undefined) break;
      const ready = await Promise.all(
        clients.map((c) =>
          c.status({}, { timeoutMs: 1000 }).then(
            (s) => s.replicas.length > 0 && s.replicas.every((r) => r.leader !== ''),
            () => false,
          ),
        ),
      );
      if (ready.every(Boolean)) break;
      if (Date.now() > deadline) {
        failed = 'the cluster did not become ready within 60 s';
        break;
      }
      await sleep(200);
    }
    if (!interrupted && failed === undefined) {
      const now = Math.floor(Date.now() / 1000) * 1000;
      const hosts = ['web-1', 'web-2', 'db-1', 'db-2'];
      const res = await clients[0]!.write(
        {
          batch: {
            series: hosts.map((host, h) => ({
              series: { metric: 'cpu.usage', tags: { host, dc: 'local' } },
              timestamps: Array.from({ length: 60 }, (_, i) => BigInt(now - (59 - i) * 10_000)),
              values: Array.from({ length: 60 }, (_, i) => 20 + 10 * h + 5 * Math.sin(i / 6)),
            })),
          },
        },
        { timeoutMs: 15_000 },
      );
      console.log(
        `tidemark dev: ${count} nodes, ${shards} shards, data in ${dir}${keep ? '' : ' (temporary)'}`,
      );
      for (const n of nodes) console.log(`  ${n.id}  HTTP http://${n.http}  gRPC ${n.grpc}  peer ${n.peer}`);
      console.log(
        `tidemark dev: wrote ${res.accepted} demo samples (cpu.usage, 4 hosts) through ${nodes[0]!.grpc}`,
      );
      console.log('tidemark dev: running; Ctrl-C stops every node');
      await Promise.race([stopSignal, ...exited.map((p) => p.then(() => sleep(100)))]);
    }
  } catch (err) {
    failed ??= err instanceof Error ? err.message : String(err);
  } finally {
    for (const c of clients) c.close();
    await stopAll();
  }
  if (failed !== undefined && !interrupted) {
    console.error(`tidemark dev: ${failed}`);
    return 1;
  }
  console.log('tidemark dev: stopped');
  return 0;
}
