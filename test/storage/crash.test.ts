/**
 * Crash safety with a real process: a child writes batches and is SIGKILLed at a random (seeded) time;
 * after reopening, every batch whose promise resolved is present with exact values, and the store
 * equals the reference store after exactly appliedIndex() batches (so no batch is partially present).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LmdbShardStore, MemoryShardStore } from '../../src/storage/index.js';
import { CRASH_OPTIONS, crashBatch, METRICS } from './fixtures/crash-gen.js';
import { dump, rng, tempDir } from './helpers.js';

const writer = fileURLToPath(new URL('./fixtures/writer.ts', import.meta.url));
const cleanups: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanups) c();
});

/** Runs the writer until it reported `minLines` batches, then waits `delayMs` and kills it. */
function runAndKill(
  dir: string,
  seed: number,
  minLines: number,
  delayMs: number,
  syncIntervalMs: number | 'p',
): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = ['--import', 'tsx', writer, dir, String(seed), String(syncIntervalMs)];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let last = 0;
    let lines = 0;
    let buf = '';
    let stderr = '';
    let armed = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      buf += d;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const k = Number(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (k !== last + 1 && last !== 0) reject(new Error(`writer skipped from ${last} to ${k}`));
        last = k;
        lines++;
        nl = buf.indexOf('\n');
      }
      if (!armed && lines >= minLines) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), delayMs);
      }
    });
    child.stderr.on('data', (d) => {
      stderr += String(d);
    });
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer exited (${code}/${signal}): ${stderr}`));
      else resolve(last);
    });
  });
}

describe('crash safety (SIGKILL a writer process)', () => {
  // syncIntervalMs 0: every batch fsync'd; 25: deferred sync (commits reach the page cache only, which
  // a process crash does not lose); 'p': pipelined sync (committed, fsync'd off the event loop).
  for (const [seed, syncIntervalMs] of [
    [11, 0],
    [12, 0],
    [13, 0],
    [14, 25],
    [15, 25],
    [16, 'p'],
    [17, 'p'],
  ] as const) {
    it(`seed ${seed}, syncIntervalMs ${syncIntervalMs}: resolved batches survive, no batch is torn`, async () => {
      const r = rng(seed);
      const { dir, cleanup } = tempDir('tidemark-crash-');
      cleanups.push(cleanup);
      let resolvedUpTo = 0;
      // two crash/restart rounds on the same directory: recovery of a recovered store too
      for (let round = 0; round < 2; round++) {
        const reported = await runAndKill(
          dir,
          seed,
          3 + Math.floor(r() * 20),
          Math.floor(r() * 150),
          syncIntervalMs,
        );
        resolvedUpTo = Math.max(resolvedUpTo, reported);
        const store = await LmdbShardStore.open(dir, {
          ...CRASH_OPTIONS,
          ...(syncIntervalMs === 'p' ? { syncIntervalMs: 0, pipelinedSync: true } : { syncIntervalMs }),
        });
        try {
          const applied = store.appliedIndex();
          // the writer awaits each batch: at most the one in flight may be there without being reported
          expect(applied).toBeGreaterThanOrEqual(resolvedUpTo);
          expect(applied).toBeLessThanOrEqual(resolvedUpTo + 1);
          const ref = new MemoryShardStore(CRASH_OPTIONS);
          for (let k = 1; k <= applied; k++) await ref.applyBatch(k, crashBatch(seed, k));
          for (const metric of METRICS) {
            expect(dump(store, { metric }), `seed ${seed} round ${round} metric ${metric}`).toEqual(
              dump(ref, { metric }),
            );
          }
          expect(store.seriesCount()).toBe(ref.seriesCount());
          const offset = store.getMeta('offset');
          expect(offset === undefined ? undefined : new TextDecoder().decode(offset)).toBe(
            applied === 0 ? undefined : String(applied * 10),
          );
          resolvedUpTo = applied;
        } finally {
          await store.close();
        }
      }
    });
  }
});
