/**
 * The chaos smoke mode in CI: a real Toxiproxy server (installed by scripts/toxiproxy.sh), three real node
 * processes with one proxy per directed peer link, writers and readers, every supported nemesis once, then
 * the checkers: nothing acknowledged lost, no phantoms, no duplicates, reads linearizable (Porcupine).
 * Seeded: TIDEMARK_SEED=<n> npx vitest run test/chaos/smoke.test.ts replays a schedule
 * (or `npm run chaos -- --mode smoke --seed <n>`). The run folder is kept on failure.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { runChaos, summary } from '../../chaos-tests/lib/run.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);

test('chaos smoke: every nemesis once, nothing lost, phantom, duplicated or non-linearizable', async () => {
  const dir = join('chaos-tests', 'runs', `vitest-smoke-${Date.now()}-${SEED}`);
  const report = await runChaos({
    mode: 'smoke',
    seed: SEED,
    durationMs: 0,
    nodes: 3,
    shards: 4,
    reads: true,
    dir,
    log: () => undefined,
  });
  const text = summary(report, dir);
  if (!report.ok) {
    console.error(
      `${text}chaos smoke failed with seed ${SEED}; replay: TIDEMARK_SEED=${SEED} npx vitest run test/chaos/smoke.test.ts (or ${report.replay})`,
    );
  }
  expect(report.harnessErrors).toEqual([]);
  // Every supported nemesis ran and healed.
  expect(report.faults.length).toBeGreaterThanOrEqual(12);
  expect(report.faults.every((f) => f.healed !== null && f.error === undefined)).toBe(true);
  expect(report.operations.ok).toBeGreaterThan(100);
  for (const [node, f] of Object.entries(report.final)) {
    expect({ node, lost: f.lost, phantoms: f.phantoms, duplicates: f.duplicates }).toEqual({
      node,
      lost: 0,
      phantoms: 0,
      duplicates: 0,
    });
  }
  expect(Object.keys(report.final)).toHaveLength(3);
  expect(report.linearizability.result).toBe('Ok');
  expect(report.ok).toBe(true);
  rmSync(dir, { recursive: true, force: true });
}, 300_000);
