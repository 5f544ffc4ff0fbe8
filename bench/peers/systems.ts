/**
 * The systems under test, each a real server process on free loopback ports with its own temp data dir:
 * Tidemark (`tidemark start` processes through the test suite's ProcessCluster, 1 node R=1 or 3 nodes R=3),
 * VictoriaMetrics single-node and QuestDB (installed by scripts/peers.sh). Every system takes the same
 * line-protocol bodies on an InfluxDB-compatible `/write` and answers the same queries in its own language
 * (bench/peers/translate.ts).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmdbShardStore } from '../../src/storage/index.js';
import { freePort } from '../../test/cluster/fixtures/node-cluster.js';
import { ProcessCluster } from '../../test/cluster/fixtures/node-process.js';
import { START_MS } from '../datasets.js';
import {
  questdbNormalize,
  questdbSql,
  tidemarkNormalize,
  tidemarkRequest,
  vmNormalize,
  vmRequest,
} from './translate.js';
import type { Normalized, QueryParams } from './workload.js';

export interface System {
  readonly name: string;
  readonly version: string;
  start(): Promise<void>;
  /** Write endpoints (full URLs); writers use them round-robin. */
  writeUrls(): string[];
  /**
   * Waits until the `lines` written rows (10 samples each, the first at START_MS, the last at `lastMs`) are
   * visible to queries (flushes where the system needs it).
   */
  makeVisible(lines: number, lastMs: number): Promise<void>;
  query(q: QueryParams): Promise<Normalized>;
  /** The server processes (peak RSS is read from /proc/<pid>/status). */
  pids(): number[];
  /** Graceful stop (every system flushes on it), so the data dirs then hold everything. */
  stop(): Promise<void>;
  dataDirs(): string[];
  cleanup(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, timeoutMs: number, fn: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(100);
  }
}

async function getJson(url: string, init?: RequestInit): Promise<unknown> {
  const res = await fetch(url, init);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${url.slice(0, 200)}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

const postJson = (url: string, body: unknown) =>
  getJson(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

/** Peak resident set (VmHWM) of a process in MiB; 0 when it is gone. */
export function peakRssMb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

/** Bytes allocated under each entry of `dir`, `depth` levels down (where a system's disk goes). */
export function diskBreakdown(dir: string, depth: number, prefix = ''): Record<string, number> {
  const out: Record<string, number> = {};
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e);
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory() && depth > 1) Object.assign(out, diskBreakdown(p, depth - 1, `${prefix}${e}/`));
    else out[`${prefix}${e}`] = st.isDirectory() ? diskBytes(p) : st.blocks * 512;
  }
  return out;
}

/** Bytes allocated on disk under `dir` (st_blocks, so sparse and preallocated-but-unwritten space does not count). */
export function diskBytes(dir: string): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e);
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) total += diskBytes(p);
    else if (st.isFile()) total += st.blocks * 512;
  }
  return total;
}

function waitExit(proc: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    proc.kill(signal);
  });
}

function keepTail(proc: ChildProcess): string[] {
  const out: string[] = [];
  const keep = (d: Buffer) => {
    out.push(d.toString());
    if (out.length > 40) out.shift();
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  return out;
}

// ---------------------------------------------------------------------------------------------- Tidemark

export class TidemarkSystem implements System {
  readonly version: string;
  private cluster: ProcessCluster;

  constructor(
    readonly name: string,
    nodes: number,
    replication: number,
    shards: number,
  ) {
    const ids = nodes === 1 ? ['solo'] : Array.from({ length: nodes }, (_, i) => String.fromCharCode(97 + i));
    this.cluster = new ProcessCluster(ids, [`--shards=${shards}`, `--replication=${replication}`]);
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    this.version = pkg.version;
  }

  async start(): Promise<void> {
    await this.cluster.init();
    for (const id of this.cluster.ids) this.cluster.start(id);
    for (const p of this.cluster.ports) {
      await until(
        `tidemark node ${p.id} ready: ${this.cluster.output.get(p.id)?.join('')}`,
        120_000,
        async () => {
          const r = await fetch(`http://127.0.0.1:${p.http}/readyz`);
          await r.arrayBuffer();
          return r.status === 200;
        },
      );
    }
  }

  writeUrls(): string[] {
    return this.cluster.ports.map((p) => `http://127.0.0.1:${p.http}/write`);
  }

  async makeVisible(): Promise<void> {
    // An acknowledged write is applied on the shard leaders and readable (linearizable reads).
  }

  private get http(): string {
    return `http://127.0.0.1:${this.cluster.ports[0]!.http}`;
  }

  async query(q: QueryParams): Promise<Normalized> {
    const { path, body } = tidemarkRequest(q);
    return tidemarkNormalize(q, await postJson(`${this.http}${path}`, body));
  }

  pids(): number[] {
    return [...this.cluster.procs.values()].map((p) => p.pid ?? 0);
  }

  async stop(): Promise<void> {
    for (const id of this.cluster.ids) await this.cluster.stop(id, 60_000);
  }

  dataDirs(): string[] {
    return [this.cluster.root];
  }

  /**
   * After stop(): the bytes of compacted copies of every shard store (LmdbShardStore.backup, mdb_env_copy2
   * with MDB_CP_COMPACT): what the stores hold without LMDB's free pages (the file never shrinks, so the
   * store's own WAL, already checkpointed away, still takes its high-water mark) and without the Raft logs.
   */
  async compactedStoreBytes(): Promise<number> {
    let total = 0;
    for (const node of readdirSync(this.cluster.root)) {
      const nodeDir = join(this.cluster.root, node);
      for (const shard of readdirSync(nodeDir).filter((e) => e.startsWith('shard-'))) {
        const dir = join(nodeDir, shard, 'store');
        if (!statSync(join(dir, 'data.mdb'), { throwIfNoEntry: false })) continue;
        const store = await LmdbShardStore.open(dir);
        const copy = mkdtempSync(join(tmpdir(), 'tidemark-peers-compact-'));
        try {
          await store.backup(copy);
          total += diskBytes(copy);
        } finally {
          await store.close();
          rmSync(copy, { recursive: true, force: true });
        }
      }
    }
    return total;
  }

  async cleanup(): Promise<void> {
    await this.cluster.close();
  }
}

// ------------------------------------------------------------------------------------- VictoriaMetrics

export class VictoriaMetricsSystem implements System {
  readonly name = 'victoriametrics';
  private readonly dir = mkdtempSync(join(tmpdir(), 'tidemark-peers-vm-'));
  private proc: ChildProcess | undefined;
  private tail: string[] = [];
  private port = 0;

  constructor(
    private readonly bin: string,
    readonly version: string,
  ) {}

  async start(): Promise<void> {
    this.port = await freePort();
    this.proc = spawn(
      this.bin,
      [
        `-storageDataPath=${this.dir}`,
        `-httpListenAddr=127.0.0.1:${this.port}`,
        // The data is historical (TSBS starts at 2026-01-01): keep it, and do not cache or align responses.
        '-retentionPeriod=100y',
        '-search.disableCache',
        '-loggerLevel=WARN',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.tail = keepTail(this.proc);
    await until(`victoria-metrics /health: ${this.tail.join('')}`, 60_000, async () => {
      const r = await fetch(`http://127.0.0.1:${this.port}/health`);
      await r.arrayBuffer();
      return r.status === 200;
    });
  }

  writeUrls(): string[] {
    return [`http://127.0.0.1:${this.port}/write`];
  }

  async makeVisible(lines: number, lastMs: number): Promise<void> {
    // Rows are buffered for up to a second before they become searchable; force_flush does it now. New
    // series can still take a moment to be searchable, so wait until a count over all the data adds up.
    const r = await fetch(`http://127.0.0.1:${this.port}/internal/force_flush`);
    await r.arrayBuffer();
    const windowMs = lastMs + 1 - START_MS + 1000;
    const query = `sum(count_over_time({__name__=~"cpu_usage_.*"}[${windowMs}ms]))`;
    const url = `http://127.0.0.1:${this.port}/api/v1/query?${new URLSearchParams({ query, time: ((lastMs + 1) / 1000).toFixed(3), nocache: '1' })}`;
    await until(`victoria-metrics: ${lines * 10} samples visible`, 120_000, async () => {
      const res = (await getJson(url)) as { data: { result: { value: [number, string] }[] } };
      return Number(res.data.result[0]?.value[1]) === lines * 10;
    });
  }

  async query(q: QueryParams): Promise<Normalized> {
    return vmNormalize(q, await getJson(`http://127.0.0.1:${this.port}${vmRequest(q)}`));
  }

  pids(): number[] {
    return [this.proc?.pid ?? 0];
  }

  async stop(): Promise<void> {
    // SIGINT: VictoriaMetrics flushes its in-memory parts to disk and exits.
    if (this.proc) await waitExit(this.proc, 'SIGINT', 60_000);
  }

  dataDirs(): string[] {
    return [this.dir];
  }

  async cleanup(): Promise<void> {
    this.proc?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------- QuestDB

export class QuestDbSystem implements System {
  readonly name = 'questdb';
  private readonly dir = mkdtempSync(join(tmpdir(), 'tidemark-peers-questdb-'));
  private proc: ChildProcess | undefined;
  private tail: string[] = [];
  private port = 0;

  constructor(
    private readonly jar: string,
    readonly version: string,
    private readonly heap = '1g',
  ) {}

  async start(): Promise<void> {
    this.port = await freePort();
    this.proc = spawn('java', [`-Xms256m`, `-Xmx${this.heap}`, '-jar', this.jar, '-d', this.dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        // Only the HTTP server (ILP /write and SQL /exec) on a free port; nothing else listens.
        QDB_HTTP_BIND_TO: `127.0.0.1:${this.port}`,
        QDB_HTTP_MIN_ENABLED: 'false',
        QDB_PG_ENABLED: 'false',
        QDB_LINE_TCP_ENABLED: 'false',
        QDB_LINE_UDP_ENABLED: 'false',
        QDB_TELEMETRY_ENABLED: 'false',
      },
    });
    this.tail = keepTail(this.proc);
    await until(`questdb HTTP: ${this.tail.join('').slice(-2000)}`, 120_000, async () => {
      const r = await fetch(`http://127.0.0.1:${this.port}/exec?query=${encodeURIComponent('SELECT 1')}`);
      await r.arrayBuffer();
      return r.status === 200;
    });
  }

  writeUrls(): string[] {
    return [`http://127.0.0.1:${this.port}/write`];
  }

  private sql(query: string): Promise<unknown> {
    return getJson(`http://127.0.0.1:${this.port}/exec?${new URLSearchParams({ query })}`);
  }

  async makeVisible(lines: number): Promise<void> {
    // ILP over HTTP commits each request to the table's WAL; the WAL is applied to the table asynchronously.
    await until(`questdb: ${lines} rows visible`, 600_000, async () => {
      const r = (await this.sql('SELECT count() FROM cpu')) as { dataset: number[][] };
      return r.dataset[0]?.[0] === lines;
    });
  }

  async query(q: QueryParams): Promise<Normalized> {
    return questdbNormalize(q, await this.sql(questdbSql(q)));
  }

  pids(): number[] {
    return [this.proc?.pid ?? 0];
  }

  async stop(): Promise<void> {
    if (this.proc) await waitExit(this.proc, 'SIGTERM', 60_000);
  }

  dataDirs(): string[] {
    return [join(this.dir, 'db')];
  }

  async cleanup(): Promise<void> {
    this.proc?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The path of a peer from scripts/peers.sh (installing it on first use). */
export function peerPath(name: 'victoriametrics' | 'questdb'): string {
  return execFileSync('bash', ['scripts/peers.sh', 'path', name], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

export function peerVersions(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of execFileSync('bash', ['scripts/peers.sh', 'versions'], { encoding: 'utf8' }).split(
    '\n',
  )) {
    const [name, version] = line.split(' ');
    if (name && version) out[name] = version;
  }
  return out;
}
