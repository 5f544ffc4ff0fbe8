import { expect } from 'vitest';
import { DEFAULT_STEPS, replayCommand, runSeed } from './sim.js';

/** Runs `count` seeds from `start`; fails with the seed and its replay command on the first violation. */
export function runSeedRange(start: number, count: number): void {
  let steps = 0;
  let acked = 0;
  for (let seed = start; seed < start + count; seed++) {
    const res = runSeed(seed);
    steps += res.steps;
    acked += res.stats.acked;
    if (res.violations.length > 0) {
      expect.fail(`seed ${seed}: ${res.violations.join('; ')}\n  replay: ${replayCommand(seed)}`);
    }
  }
  // The runs do real work (guards against a simulation that silently does nothing).
  expect(steps).toBeGreaterThan(count * DEFAULT_STEPS);
  expect(acked).toBeGreaterThan(count);
}
