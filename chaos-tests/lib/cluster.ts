/**
 * A cluster of real node processes behind Toxiproxy. Each directed peer link (a → b) has its own proxy:
 * node a's `--peers` lists b at the proxy `peer-a-b`, whose upstream is b's real peer port (a node's own
 * entry stays its real listen address). Each node's client port has a proxy `client-a`; `--peer-clients`
 * advertises those, so SDK clients reach nodes only through them. The harness itself uses direct
 * connections (status, final reads), which no nemesis touches.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Proxy as ToxiProxy, Toxiproxy } from 'toxiproxy-node-client';
import { TidemarkClient } from '../../src/client/index.js';
import { PortAllocator } from './ports.js';

export interface NodeInfo {
  id: string;
  http: number;
  grpc: number;
  peer: number;
  /** Port of the proxy in front of the client port. */
  clientProxy: number;
}

export interface ClusterOptions {
  nodes: number;
  shards: number;
  /** Where data dirs and node logs go. */
  dir: string;
  /** Extra `tidemark start` flags. */
  flags?: string[];
  log?: (msg: string) => void;
}

const REPO = new URL('../../', import.meta.url).pathname;

export class ChaosCluster {
  readonly ids: string[];
  nodes: NodeInfo[] = [];
  /** Directed peer links: `${from}->${to}` → proxy; `client:${id}` → client proxy. */
  readonly proxies = new Map<string, ToxiProxy>();
  readonly procs = new Map<string, ChildProcess>();
  /** Direct (unproxied) clients for the harness. */
  private readonly direct = new Map<string, TidemarkClient>();
  private readonly linkPorts = new Map<string, number>();
  private readonly log: (msg: string) => void;
  /** Restarts per node (names log files). */
  private readonly starts = new Map<string, number>();

  constructor(
    readonly toxi: Toxiproxy,
    readonly options: ClusterOptions,
  ) {
    this.ids = Array.from({ length: options.nodes }, (_, i) => String.fromCharCode(97 + i));
    this.log = options.log ?? (() => undefined);
  }

  static linkName(from: string, to: string): string {
    return `peer-${from}-${to}`;
  }

  async init(): Promise<void> {
    const ports = new PortAllocator();
    for (const id of this.ids) {
      this.nodes.push({
        id,
        http: await ports.next(),
        grpc: await ports.next(),
        peer: await ports.next(),
        clientProxy: await ports.next(),
      });
    }
    for (const a of this.nodes) {
      for (const b of this.nodes) {
        if (a === b) continue;
        const port = await ports.next();
        this.linkPorts.set(`${a.id}->${b.id}`, port);
        const p = await this.toxi.createProxy({
          name: ChaosCluster.linkName(a.id, b.id),
          listen: `127.0.0.1:${port}`,
          upstream: `127.0.0.1:${b.peer}`,
        });
        this.proxies.set(`${a.id}->${b.id}`, p);
      }
      const c = await this.toxi.createProxy({
        name: `client-${a.id}`,
        listen: `127.0.0.1:${a.clientProxy}`,
        upstream: `127.0.0.1:${a.grpc}`,
      });
      this.proxies.set(`client:${a.id}`, c);
    }
  }

  node(id: string): NodeInfo {
    return this.nodes.find((n) => n.id === id)!;
  }

  /** Client-API addresses through the proxies (for workload clients). */
  clientEndpoints(): string[] {
    return this.nodes.map((n) => `127.0.0.1:${n.clientProxy}`);
  }

  link(from: string, to: string): ToxiProxy {
    return this.proxies.get(`${from}->${to}`)!;
  }

  clientProxy(id: string): ToxiProxy {
    return this.proxies.get(`client:${id}`)!;
  }

  /** Every directed peer link touching `id` (both directions). */
  linksOf(id: string): ToxiProxy[] {
    return this.ids.filter((o) => o !== id).flatMap((o) => [this.link(id, o), this.link(o, id)]);
  }

  allLinks(): ToxiProxy[] {
    return this.ids.flatMap((a) => this.ids.filter((b) => b !== a).map((b) => this.link(a, b)));
  }

  private args(n: NodeInfo): string[] {
    const peers = this.nodes
      .map((o) =>
        o.id === n.id
          ? `${o.id}=127.0.0.1:${o.peer}`
          : `${o.id}=127.0.0.1:${this.linkPorts.get(`${n.id}->${o.id}`)}`,
      )
      .join(',');
    const peerClients = this.nodes.map((o) => `${o.id}=127.0.0.1:${o.clientProxy}`).join(',');
    return [
      '--import',
      'tsx',
      'src/cli/entry.ts',
      'start',
      `--node-id=${n.id}`,
      `--http=127.0.0.1:${n.http}`,
      `--grpc=127.0.0.1:${n.grpc}`,
      `--peer-listen=127.0.0.1:${n.peer}`,
      `--peers=${peers}`,
      `--peer-clients=${peerClients}`,
      // Local test cluster: the peer port runs in the clear (docs/security.md).
      '--insecure',
      `--shards=${this.options.shards}`,
      `--replication=${Math.min(3, this.options.nodes)}`,
      `--data-dir=${join(this.options.dir, 'data', n.id)}`,
      ...(this.options.flags ?? []),
    ];
  }

  /** Spawns node `id` (its output goes to logs/<id>.<n>.log). */
  start(id: string): ChildProcess {
    const n = this.node(id);
    const count = (this.starts.get(id) ?? 0) + 1;
    this.starts.set(id, count);
    mkdirSync(join(this.options.dir, 'logs'), { recursive: true });
    const logPath = join(this.options.dir, 'logs', `${id}.${count}.log`);
    const proc = spawn(
      'bash',
      ['-c', `exec "$0" "$@" >>${JSON.stringify(logPath)} 2>&1`, process.execPath, ...this.args(n)],
      {
        cwd: REPO,
        stdio: 'ignore',
      },
    );
    this.procs.set(id, proc);
    this.log(`started node ${id} (pid ${proc.pid})`);
    return proc;
  }

  alive(id: string): boolean {
    const p = this.procs.get(id);
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  async startAll(): Promise<void> {
    for (const id of this.ids) this.start(id);
    await Promise.all(this.ids.map((id) => this.waitReady(id)));
  }

  /** Polls /readyz on the node's HTTP port (direct) until 200. */
  async waitReady(id: string, timeoutMs = 60_000): Promise<void> {
    const n = this.node(id);
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (!this.alive(id)) throw new Error(`node ${id} exited while starting (see logs/${id}.*.log)`);
      try {
        const res = await fetch(`http://127.0.0.1:${n.http}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > end) throw new Error(`node ${id} not ready after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  signal(id: string, sig: NodeJS.Signals): void {
    const p = this.procs.get(id);
    if (p?.pid !== undefined && this.alive(id)) process.kill(p.pid, sig);
  }

  /** Sends `sig` and waits for the exit (SIGKILL after `graceMs`). */
  async stop(id: string, sig: NodeJS.Signals, graceMs = 20_000): Promise<void> {
    const p = this.procs.get(id);
    if (p === undefined || !this.alive(id)) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
      p.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      p.kill(sig);
    });
    this.log(`node ${id} stopped (${sig})`);
  }

  /** A direct client of one node (not through any proxy). */
  async directClient(id: string): Promise<TidemarkClient> {
    let c = this.direct.get(id);
    if (c === undefined) {
      c = await TidemarkClient.connect({
        endpoints: [`127.0.0.1:${this.node(id).grpc}`],
        deadlineMs: 2000,
        shardMapRefreshMs: 0,
        retry: { maxAttempts: 1 },
      });
      this.direct.set(id, c);
    }
    return c;
  }

  /**
   * Leaders as the live nodes report them: shard → node id (shards without a leader are absent). A deposed
   * leader may still report itself for a moment, so the claim with the highest term wins.
   */
  async leaders(): Promise<Map<number, string>> {
    const best = new Map<number, { id: string; term: number }>();
    await Promise.all(
      this.ids
        .filter((id) => this.alive(id))
        .map(async (id) => {
          try {
            const st = await (await this.directClient(id)).status(undefined, { deadlineMs: 1000 });
            for (const r of st.replicas) {
              if (r.role !== 'leader') continue;
              const cur = best.get(r.shard);
              if (cur === undefined || r.term > cur.term) best.set(r.shard, { id, term: r.term });
            }
          } catch {
            // a paused or stuck node: no opinion
          }
        }),
    );
    return new Map([...best].map(([shard, b]) => [shard, b.id]));
  }

  async close(): Promise<void> {
    for (const c of this.direct.values()) await c.close().catch(() => undefined);
    this.direct.clear();
    for (const id of this.ids) this.signal(id, 'SIGCONT');
    await Promise.all(this.ids.map((id) => this.stop(id, 'SIGKILL')));
  }
}
