/**
 * DDSketch: every quantile within the documented relative error of the exact lower-rank quantile, and
 * merging any split gives the identical sketch. Seeded: TIDEMARK_SEED=<n> replays.
 */
import { expect, test } from 'vitest';
import { exactQuantile, SKETCH_ALPHA, Sketch } from '../../src/query/sketch.js';
import { Rng } from '../../src/util/random.js';
import { seedList } from './helpers.js';

const seeds = seedList(process.env.TIDEMARK_SEED, [11, 12, 13, 14, 15]);
const QS = [0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1];

function randomValue(r: Rng): number {
  switch (r.int(0, 5)) {
    case 0:
      return r.next() * 100;
    case 1:
      return -r.next() * 1e6;
    case 2:
      return 0;
    case 3:
      return Math.exp(r.next() * 80 - 40) * (r.chance(0.5) ? 1 : -1);
    default:
      return r.int(-5, 5);
  }
}

test.each(seeds)('quantiles within relative error; merge of any split is identical (seed %i)', (seed) => {
  try {
    const r = new Rng(seed);
    for (let round = 0; round < 40; round++) {
      const n = r.int(1, 2000);
      const vals = new Float64Array(n);
      const whole = new Sketch();
      const parts = Array.from({ length: r.int(1, 6) }, () => new Sketch());
      for (let i = 0; i < n; i++) {
        vals[i] = randomValue(r);
        whole.add(vals[i]!);
        r.pick(parts).add(vals[i]!);
      }
      const merged = new Sketch();
      for (const p of parts) merged.merge(p);
      for (const q of QS) {
        const exact = exactQuantile(vals.slice(), n, q);
        const est = whole.quantile(q);
        expect(Math.abs(est - exact)).toBeLessThanOrEqual(SKETCH_ALPHA * Math.abs(exact) * (1 + 1e-12));
        expect(merged.quantile(q)).toBe(est);
      }
      expect(merged.sortedBins()).toEqual(whole.sortedBins());
      expect(merged.count).toBe(n);
    }
  } catch (err) {
    console.error(
      `sketch test failed with seed ${seed} (rerun: TIDEMARK_SEED=${seed} npx vitest run test/query/sketch.test.ts)`,
    );
    throw err;
  }
});

test('empty sketch has no quantile; NaN is ignored', () => {
  const s = new Sketch();
  expect(s.quantile(0.5)).toBeNaN();
  s.add(Number.NaN);
  expect(s.count).toBe(0);
  s.add(5);
  expect(Math.abs(s.quantile(0.5) - 5)).toBeLessThanOrEqual(5 * SKETCH_ALPHA);
});
