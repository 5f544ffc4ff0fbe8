/**
 * Raft replication benchmark (`npm run bench:raft`): a 3-replica group in one process over the in-memory
 * transport, with memory and with LMDB log storage. Many concurrent proposers keep the leader's queue full
 * so proposals batch; we report committed (= committed and applied on the leader) proposals per second and
 * commit latency percentiles, for 1-sample (~16 B) and 1000-sample (~16 KB) proposals.
 *
 * The last line printed is one JSON object:
 *   {"bench":"raft","memory":{...},"lmdb":{...},"memory1000":{...},"lmdb1000":{...},"memoryC16":{...},"lmdbC16":{...}}
 * where `memory`/`lmdb` are the batched 1-sample cases (2000 concurrent proposers), `*1000` the 16 KB
 * proposals (256 proposers) and `*C16` 1-sample proposals from only 16 proposers (latency floor).
 * The in-memory transport and storage pass entries by reference, so the memory cases measure the Raft
 * and driver overhead, not byte copying.
 *
 * Options (env): RAFT_BENCH_SECONDS (measured seconds per case, default 4), RAFT_BENCH_WARMUP (default 1).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTidemarkError } from '../src/errors/errors.js';
import { RaftDriver } from '../src/raft/driver.js';
import { LmdbLogStorage } from '../src/raft/storage-lmdb.js';
import { MemoryLogStorage, type SnapshotLogStorage } from '../src/raft/storage-memory.js';
import { MemoryNetwork } from '../src/raft/transport-memory.js';
import type { Entry, Snapshot, StateMachine } from '../src/raft/types.js';

const SECONDS = Number(process.env.RAFT_BENCH_SECONDS ?? 4);
const WARMUP = Number(process.env.RAFT_BENCH_WARMUP ?? 1);

/** Counts applied entries and bytes (what a TSDB head would do, minus the work). */
class CountingStateMachine implements StateMachine {
  applied = 0;
  entries = 0;
  bytes = 0;

  async apply(entry: Entry): Promise<unknown> {
    this.applied = entry.index;
    this.entries++;
    this.bytes += entry.data.length;
    return entry.index;
  }

  appliedIndex(): number {
    return this.applied;
  }

  async snapshot(): Promise<Uint8Array> {
    return new TextEncoder().encode(JSON.stringify({ entries: this.entries, bytes: this.bytes }));
  }

  async restore(s: Snapshot): Promise<void> {
    const o = JSON.parse(new TextDecoder().decode(s.data)) as { entries: number; bytes: number };
    this.entries = o.entries;
    this.bytes = o.bytes;
    this.applied = s.meta.index;
  }
}

interface CaseResult {
  proposalsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Extra detail (not part of the required shape). */
  proposals: number;
  mbPerSec: number;
  readiesPerSec: number;
  avgBatch: number;
}

interface Group {
  drivers: RaftDriver[];
  storages: SnapshotLogStorage[];
  dir?: string;
}

async function startGroup(kind: 'memory' | 'lmdb'): Promise<Group> {
  const ids = ['r1', 'r2', 'r3'];
  const conf = { voters: ids, learners: [] };
  const network = new MemoryNetwork();
  const dir = kind === 'lmdb' ? mkdtempSync(join(tmpdir(), 'tidemark-bench-raft-')) : undefined;
  const group: Group = { drivers: [], storages: [], dir };
  for (const id of ids) {
    const storage = dir
      ? await LmdbLogStorage.open({ path: join(dir, id), conf })
      : new MemoryLogStorage({ conf });
    const driver = new RaftDriver({
      id,
      storage,
      transport: network.transport(id),
      stateMachine: new CountingStateMachine(),
      tickMs: 50,
      electionTick: 20,
      heartbeatTick: 2,
      maxPendingProposals: 50_000,
      maxSizePerMsg: 4 * 1024 * 1024,
      compactThreshold: Number(process.env.RAFT_BENCH_COMPACT ?? 10_000),
    });
    group.storages.push(storage);
    group.drivers.push(driver);
  }
  for (const d of group.drivers) await d.start();
  // Elect r1 quickly and deterministically.
  group.drivers[0].campaign();
  const deadline = Date.now() + 10_000;
  while (!group.drivers[0].isLeader()) {
    if (Date.now() > deadline) throw new Error('no leader elected');
    await new Promise((r) => setTimeout(r, 5));
  }
  return group;
}

async function stopGroup(g: Group): Promise<void> {
  for (const d of g.drivers) await d.stop();
  for (const s of g.storages) await s.close();
  if (g.dir) rmSync(g.dir, { recursive: true, force: true });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function payload(bytes: number, seed: number): Uint8Array {
  const d = new Uint8Array(bytes);
  let x = seed | 1;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    d[i] = x & 0xff;
  }
  return d;
}

async function runCase(kind: 'memory' | 'lmdb', bytes: number, concurrency: number): Promise<CaseResult> {
  const g = await startGroup(kind);
  const leader = g.drivers[0];
  // A small pool of distinct payloads (a 1-sample proposal: series id, timestamp, value ~ 16 bytes).
  const pool = Array.from({ length: 64 }, (_, i) => payload(bytes, i + 1));
  let measuring = false;
  let stop = false;
  let count = 0;
  const latencies: number[] = [];

  const worker = async (w: number) => {
    let k = w;
    while (!stop) {
      const t0 = performance.now();
      try {
        await leader.propose(pool[k++ & 63]);
      } catch (err) {
        if (isTidemarkError(err, 'RESOURCE_EXHAUSTED')) {
          await new Promise((r) => setTimeout(r, err.retryAfterMs ?? 1));
          continue;
        }
        throw err;
      }
      if (measuring) {
        count++;
        latencies.push(performance.now() - t0);
      }
    }
  };
  const workers = Array.from({ length: concurrency }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
  const before = leader.status().stats;
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  const after = leader.status().stats;
  stop = true;
  await Promise.all(workers);
  await stopGroup(g);

  const sorted = Float64Array.from(latencies).sort();
  const readies = after.readies - before.readies;
  return {
    proposalsPerSec: Math.round(count / elapsed),
    p50Ms: round(percentile(sorted, 50)),
    p99Ms: round(percentile(sorted, 99)),
    proposals: count,
    mbPerSec: round((count * bytes) / elapsed / 1e6),
    readiesPerSec: Math.round(readies / elapsed),
    avgBatch: round((after.persistedEntries - before.persistedEntries) / Math.max(1, readies)),
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

function line(name: string, r: CaseResult): void {
  console.log(
    `${name.padEnd(28)} ${String(r.proposalsPerSec).padStart(8)} proposals/s  p50 ${r.p50Ms.toFixed(2)} ms  ` +
      `p99 ${r.p99Ms.toFixed(2)} ms  ${r.mbPerSec.toFixed(1)} MB/s  ${r.readiesPerSec} readies/s  ` +
      `avg batch ${r.avgBatch}`,
  );
}

async function main(): Promise<void> {
  console.log(`raft bench: 3 replicas in-process, ${SECONDS}s measured per case (+${WARMUP}s warmup)`);
  const small = 16;
  const large = 16 * 1024;
  const cases: Array<{
    key: string;
    label: string;
    kind: 'memory' | 'lmdb';
    bytes: number;
    clients: number;
  }> = [
    { key: 'memory', label: 'memory 1-sample (16 B)', kind: 'memory', bytes: small, clients: 2000 },
    { key: 'lmdb', label: 'lmdb 1-sample (16 B)', kind: 'lmdb', bytes: small, clients: 2000 },
    { key: 'memory1000', label: 'memory 1000-sample (16 KB)', kind: 'memory', bytes: large, clients: 256 },
    { key: 'lmdb1000', label: 'lmdb 1000-sample (16 KB)', kind: 'lmdb', bytes: large, clients: 256 },
    // Latency floor: few proposers, so batches stay small.
    { key: 'memoryC16', label: 'memory 1-sample, 16 clients', kind: 'memory', bytes: small, clients: 16 },
    { key: 'lmdbC16', label: 'lmdb 1-sample, 16 clients', kind: 'lmdb', bytes: small, clients: 16 },
  ];
  // RAFT_BENCH_ONLY=lmdb,memory runs a subset; RAFT_BENCH_CLIENTS overrides the proposer count.
  const only = process.env.RAFT_BENCH_ONLY?.split(',');
  const clients = process.env.RAFT_BENCH_CLIENTS ? Number(process.env.RAFT_BENCH_CLIENTS) : undefined;
  const out: Record<string, unknown> = { bench: 'raft' };
  for (const c of cases) {
    if (only && !only.includes(c.key)) continue;
    const r = await runCase(c.kind, c.bytes, clients ?? c.clients);
    line(c.label, r);
    out[c.key] = { proposalsPerSec: r.proposalsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms };
  }
  const rate = (k: string) => (out[k] as { proposalsPerSec: number } | undefined)?.proposalsPerSec;
  const check = (k: string, target: number) => {
    const r = rate(k);
    if (r !== undefined)
      console.log(`target ${k} >= ${target}/s: ${r >= target ? 'met' : 'MISSED'} (${r}/s)`);
  };
  check('memory', 50_000);
  check('lmdb', 10_000);
  console.log(JSON.stringify(out));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
