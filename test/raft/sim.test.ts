import { describe, expect, it } from 'vitest';
import { replayCommand, runSeed } from './sim.js';
import { runSeedRange } from './sim-seeds.js';

// Seeds 1..1000 here; sim-2.test.ts runs 1001..2000 so vitest can use both cores.
describe('raft deterministic simulation (seeds 1-1000)', () => {
  it('is deterministic: a seed replays identically', () => {
    const trace = (seed: number) => {
      const lines: string[] = [];
      const res = runSeed(seed, { steps: 400, trace: (l) => lines.push(l) });
      return { lines, res };
    };
    const a = trace(42);
    const b = trace(42);
    expect(a.lines).toEqual(b.lines);
    expect(a.res).toEqual(b.res);
    expect(replayCommand(42)).toBe('npm run sim -- --seeds 1 --start 42');
  });

  for (let start = 1; start <= 1000; start += 250) {
    it(`seeds ${start}-${start + 249}: safety, liveness after heal, acknowledged writes kept`, () => {
      runSeedRange(start, 250);
    });
  }
});
