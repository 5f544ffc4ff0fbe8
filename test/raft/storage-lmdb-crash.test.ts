/**
 * kill -9 durability test: a child process saves to an LmdbLogStorage in a loop and reports each save
 * once durable; the parent SIGKILLs it at a random moment, reopens the log and checks that the state
 * after the last reported save (or the one after it, which may have committed unreported) is intact.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LmdbLogStorage } from '../../src/raft/storage-lmdb.js';
import { type ExpectedLog, entryData, prng, Workload } from './fixtures/log-workload.js';

const here = dirname(fileURLToPath(import.meta.url));
const writer = join(here, 'fixtures', 'log-writer.ts');
const tsx = createRequire(import.meta.url).resolve('tsx');
const root = mkdtempSync(join(tmpdir(), 'tidemark-raft-crash-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const baseSeed = Number(process.env.TIDEMARK_SEED ?? Math.floor(Math.random() * 2 ** 31));

interface ChildRun {
  lines: string[];
  durable: number; // number of saves reported durable
}

function runChild(path: string, seed: number, killAfterMs: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', tsx, writer, path, String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      // The kill clock starts at the first durable save, so every round has something to check.
      if (timer === undefined && out.includes('durable ')) {
        timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.stderr.on('data', (chunk) => {
      err += chunk;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') {
        reject(new Error(`log-writer exited with code ${code} signal ${signal}: ${err}`));
        return;
      }
      const lines = out.split('\n').filter((l) => l.startsWith('durable '));
      resolve({ lines, durable: lines.length });
    });
  });
}

function snapshotOf(log: ExpectedLog): ExpectedLog {
  return { terms: [...log.terms], lens: [...log.lens], hardState: { ...log.hardState } };
}

function matches(s: LmdbLogStorage, want: ExpectedLog): string | undefined {
  const last = want.terms.length - 1;
  if (s.lastIndex() !== last) return `lastIndex ${s.lastIndex()} != ${last}`;
  const hs = s.initialState().hardState;
  if (JSON.stringify(hs) !== JSON.stringify(want.hardState)) {
    return `hard state ${JSON.stringify(hs)} != ${JSON.stringify(want.hardState)}`;
  }
  if (last === 0) return undefined;
  const ents = s.entries(1, last + 1);
  if (ents.length !== last) return `read ${ents.length} entries, want ${last}`;
  for (const e of ents) {
    const term = want.terms[e.index];
    if (e.term !== term) return `entry ${e.index} term ${e.term} != ${term}`;
    const d = entryData(e.index, term, want.lens[e.index]);
    if (Buffer.compare(Buffer.from(e.data), Buffer.from(d)) !== 0) return `entry ${e.index} data differs`;
  }
  return undefined;
}

describe('LmdbLogStorage survives kill -9', () => {
  const rounds = 5;
  for (let round = 0; round < rounds; round++) {
    it(`round ${round}`, async () => {
      const seed = (baseSeed + round * 7919) >>> 0;
      const ctx = `seed ${seed} (rerun with TIDEMARK_SEED=${baseSeed})`;
      const killAfterMs = 20 + Math.floor(prng(seed)() * 600);
      const path = join(root, `r${round}`);
      const run = await runChild(path, seed, killAfterMs);

      // Replay the workload: S_n is the state after n saves.
      const w = new Workload(seed);
      for (let i = 0; i < run.durable; i++) {
        const op = w.next();
        const [, last, term, vote, commit] = run.lines[i].split(' ');
        const wantLast = w.log.terms.length - 1;
        expect(`${last} ${term} ${vote} ${commit}`, ctx).toBe(
          `${wantLast} ${op.hardState.term} ${op.hardState.vote || '-'} ${op.hardState.commit}`,
        );
      }
      const reported = snapshotOf(w.log);
      w.next();
      const inFlight = snapshotOf(w.log);

      const s = await LmdbLogStorage.open({ path });
      try {
        const a = matches(s, reported);
        const b = matches(s, inFlight);
        expect(
          a === undefined || b === undefined,
          `${ctx}: after ${run.durable} durable saves: ${a}; next: ${b}`,
        ).toBe(true);
        // Still writable after recovery.
        const next = s.lastIndex() + 1;
        await s.save(undefined, [{ index: next, term: 1000, type: 0, data: new Uint8Array([1]) }]);
        expect(s.term(next)).toBe(1000);
      } finally {
        await s.close();
      }
      expect(run.durable, ctx).toBeGreaterThan(0);
    });
  }
});
