import { describe, it } from 'vitest';
import { runSeedRange } from './sim-seeds.js';

describe('raft deterministic simulation (seeds 1001-2000)', () => {
  for (let start = 1001; start <= 2000; start += 250) {
    it(`seeds ${start}-${start + 249}: safety, liveness after heal, acknowledged writes kept`, () => {
      runSeedRange(start, 250);
    });
  }
});
