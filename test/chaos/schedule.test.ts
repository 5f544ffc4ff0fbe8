/** The seeded nemesis schedules: reproducible from the seed, smoke covers every supported nemesis once. */
import { describe, expect, test } from 'vitest';
import { NEMESES, schedule } from '../../chaos-tests/lib/nemesis.js';
import { Rng } from '../../src/util/random.js';

const SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);

describe(`schedule (seed ${SEED}; replay: TIDEMARK_SEED=${SEED} npx vitest run test/chaos/schedule.test.ts)`, () => {
  test('smoke runs every supported nemesis exactly once, in an order fixed by the seed', () => {
    const supported = NEMESES.filter((n) => n.unsupported === undefined).map((n) => n.name);
    const a = schedule('smoke', new Rng(SEED), 0);
    expect(a.map((s) => s.nemesis).sort()).toEqual([...supported].sort());
    expect(schedule('smoke', new Rng(SEED), 0)).toEqual(a);
    const orders = new Set(
      [1, 2, 3, 4, 5].map((d) =>
        schedule('smoke', new Rng(SEED + d), 0)
          .map((s) => s.nemesis)
          .join(),
      ),
    );
    expect(orders.size).toBeGreaterThan(1);
  });

  test('long mode fills the duration with supported nemeses only', () => {
    const steps = schedule('long', new Rng(SEED), 10 * 60_000);
    const total = steps.reduce((t, s) => t + s.faultMs + s.quietMs, 0);
    expect(total).toBeGreaterThanOrEqual(10 * 60_000);
    expect(total - steps.at(-1)!.faultMs - steps.at(-1)!.quietMs).toBeLessThan(10 * 60_000);
    const unsupported = new Set(NEMESES.filter((n) => n.unsupported !== undefined).map((n) => n.name));
    expect(steps.some((s) => unsupported.has(s.nemesis))).toBe(false);
    expect(schedule('long', new Rng(SEED), 10 * 60_000)).toEqual(steps);
  });

  test('every nemesis, the leader-transfer storm included, is supported and scheduled in smoke mode', () => {
    expect(NEMESES.filter((n) => n.unsupported !== undefined)).toEqual([]);
    const names = new Set(schedule('smoke', new Rng(SEED), 0).map((s) => s.nemesis));
    expect(names.has('leader-transfer-storm')).toBe(true);
  });
});
