/**
 * kill -9 with real processes: a child hosts the only replica of a 1-replica shard group and prints each
 * acknowledged batch; the parent SIGKILLs it at a random moment, reopens the replica from its dirs and
 * checks that nothing acknowledged is lost (and that every batch present is whole: batches are atomic).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ShardReplica } from '../../src/cluster/replica.js';
import { MemorySnapshotNetwork } from '../../src/cluster/store-snapshot.js';
import { MemoryNetwork } from '../../src/raft/transport-memory.js';
import { Rng } from '../../src/util/random.js';

const here = dirname(fileURLToPath(import.meta.url));
const child = join(here, 'fixtures', 'replica-child.ts');
const tsx = createRequire(import.meta.url).resolve('tsx');
const root = mkdtempSync(join(tmpdir(), 'tidemark-replica-kill-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const seed = Number(process.env.TIDEMARK_SEED ?? Math.floor(Math.random() * 2 ** 31));

function runChild(dataDir: string, base: number, killAfterMs: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', tsx, child, dataDir, String(base)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (c: string) => {
      out += c;
      if (timer === undefined && out.includes('ack '))
        timer = setTimeout(() => p.kill('SIGKILL'), killAfterMs);
    });
    p.stderr.on('data', (c) => {
      err += c;
    });
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') {
        reject(new Error(`replica child exited with code ${code} signal ${signal}: ${err}`));
        return;
      }
      resolve(
        out
          .split('\n')
          .filter((l) => l.startsWith('ack '))
          .map((l) => Number(l.slice(4))),
      );
    });
  });
}

describe('ShardReplica: kill -9', () => {
  it(`loses no acknowledged write across SIGKILLs (seed ${seed}; replay: TIDEMARK_SEED=${seed})`, async () => {
    const rng = new Rng(seed);
    const dataDir = join(root, 'node');
    const acked = new Map<number, number[]>(); // base -> acknowledged batch numbers
    for (let round = 0; round < 3; round++) {
      const base = (round + 1) * 1_000_000;
      const killAfter = 100 + rng.int(0, 400);
      const acks = await runChild(dataDir, base, killAfter);
      expect(acks.length).toBeGreaterThan(0);
      acked.set(base, acks);
    }
    const r = await ShardReplica.open({
      shard: 1,
      nodeId: 'solo',
      dataDir,
      transport: new MemoryNetwork().transport('solo'),
      snapshotPeers: new MemorySnapshotNetwork(),
      voters: ['solo'],
      checkpointIntervalMs: 0,
      driver: { tickMs: 5, electionTick: 3 },
    });
    try {
      while (!r.isLeader()) await new Promise((res) => setTimeout(res, 5));
      const present = new Set<number>();
      for (const s of await r.read({ metric: 'cpu' })) {
        const a = s.toArrays();
        for (let i = 0; i < a.count; i++) {
          expect(a.vals[i]).toBe(a.ts[i]);
          present.add(a.ts[i]!);
        }
      }
      let checked = 0;
      for (const [base, acks] of acked) {
        for (const k of acks) {
          for (let j = 0; j < 10; j++) expect(present.has(base + k * 10 + j)).toBe(true);
          checked++;
        }
      }
      // Batches are atomic: every batch present is whole.
      const batches = new Map<number, number>();
      for (const t of present) {
        const key = Math.floor(t / 10);
        batches.set(key, (batches.get(key) ?? 0) + 1);
      }
      for (const n of batches.values()) expect(n).toBe(10);
      expect(checked).toBeGreaterThan(0);
    } finally {
      await r.close();
    }
  });
});
