/**
 * The pure checkers on hand-made histories: each must pass a correct history and fail a broken one.
 */
import { describe, expect, test } from 'vitest';
import {
  availability,
  checkFinal,
  type FinalSeries,
  historyForLinearizability,
} from '../../chaos-tests/lib/checkers.js';
import type { History, Op, Outcome, WriteOp } from '../../chaos-tests/lib/history.js';

function w(
  id: number,
  series: string,
  t: number,
  v: number,
  outcome: Outcome,
  invoke = id * 10,
  complete: number | null = outcome === 'unknown' ? null : invoke + 5,
  shard = 0,
): WriteOp {
  return { id, process: 0, type: 'write', series, t, v, shard, invoke, complete, outcome };
}

const hist = (...ops: Op[]): History => ({ version: 1, ops });

describe('checkFinal', () => {
  const h = hist(
    w(0, 'a', 1, 10.5, 'ok'),
    w(1, 'a', 2, 11.5, 'ok'),
    w(2, 'b', 1, 12.5, 'unknown'),
    w(3, 'b', 2, 13.5, 'failed'),
  );

  test('passes when every acknowledged sample is there, whatever became of unknown writes', () => {
    const withUnknown = checkFinal(h, [
      {
        series: 'a',
        samples: [
          [1, 10.5],
          [2, 11.5],
        ],
      },
      { series: 'b', samples: [[1, 12.5]] },
    ]);
    expect(withUnknown.ok).toBe(true);
    expect(withUnknown).toMatchObject({ acknowledged: 2, present: 2, unknownPresent: 1, lost: 0 });
    const without = checkFinal(h, [
      {
        series: 'a',
        samples: [
          [1, 10.5],
          [2, 11.5],
        ],
      },
    ]);
    expect(without.ok).toBe(true);
    expect(without.unknownAbsent).toBe(1);
  });

  test('a missing acknowledged sample is lost', () => {
    const r = checkFinal(h, [{ series: 'a', samples: [[1, 10.5]] }]);
    expect(r.ok).toBe(false);
    expect(r.lost).toBe(1);
    expect(r.violations).toEqual([{ kind: 'lost', series: 'a', t: 2, expected: 11.5, op: 1 }]);
  });

  test('an acknowledged sample with another value is lost and the value a phantom', () => {
    const r = checkFinal(h, [
      {
        series: 'a',
        samples: [
          [1, 10.5],
          [2, 99],
        ],
      },
    ]);
    expect(r.ok).toBe(false);
    expect(r.lost).toBe(1);
    expect(r.phantoms).toBe(1);
    expect(r.violations.map((v) => v.kind).sort()).toEqual(['phantom', 'wrong_value']);
  });

  test('a sample nobody wrote is a phantom; so is the sample of a failed write', () => {
    const good: FinalSeries = {
      series: 'a',
      samples: [
        [1, 10.5],
        [2, 11.5],
      ],
    };
    const nobody = checkFinal(h, [good, { series: 'c', samples: [[1, 1]] }]);
    expect(nobody.ok).toBe(false);
    expect(nobody.phantoms).toBe(1);
    expect(nobody.violations[0]).toMatchObject({ kind: 'phantom', series: 'c' });
    const failed = checkFinal(h, [good, { series: 'b', samples: [[2, 13.5]] }]);
    expect(failed.ok).toBe(false);
    expect(failed.violations[0]).toMatchObject({ kind: 'failed_visible', op: 3 });
  });

  test('a timestamp or a series returned twice is a duplicate', () => {
    const sample = checkFinal(h, [
      {
        series: 'a',
        samples: [
          [1, 10.5],
          [2, 11.5],
          [2, 11.5],
        ],
      },
    ]);
    expect(sample.ok).toBe(false);
    expect(sample.duplicates).toBe(1);
    expect(sample.violations[0]!.kind).toBe('duplicate_sample');
    const series = checkFinal(h, [
      {
        series: 'a',
        samples: [
          [1, 10.5],
          [2, 11.5],
        ],
      },
      { series: 'a', samples: [] },
    ]);
    expect(series.ok).toBe(false);
    expect(series.violations[0]!.kind).toBe('duplicate_series');
  });

  test('values compare exactly (NaN equals NaN, -0 is not 0)', () => {
    const hn = hist(w(0, 'n', 1, Number.NaN, 'ok'), w(1, 'n', 2, -0, 'ok'));
    expect(
      checkFinal(hn, [
        {
          series: 'n',
          samples: [
            [1, Number.NaN],
            [2, -0],
          ],
        },
      ]).ok,
    ).toBe(true);
    expect(
      checkFinal(hn, [
        {
          series: 'n',
          samples: [
            [1, Number.NaN],
            [2, 0],
          ],
        },
      ]).ok,
    ).toBe(false);
  });
});

describe('availability', () => {
  // Two shards. The fault runs 1000..2000 µs; shard 1's writes fail until 2600.
  const h = hist(
    w(0, 'x', 1, 1, 'ok', 500, 510, 0),
    w(1, 'y', 1, 2, 'ok', 1100, 1200, 0),
    w(2, 'z', 1, 3, 'unknown', 1100, null, 1),
    w(3, 'y', 2, 4, 'ok', 2100, 2300, 0),
    w(4, 'z', 2, 5, 'failed', 2100, 2200, 1),
    w(5, 'z', 3, 6, 'ok', 2500, 2600, 1),
  );

  test('measures recovery after the heal, per shard, and failover of the target shard', () => {
    const [a] = availability(
      h,
      [{ name: 'kill-leader', detail: 'd', start: 1000, healed: 2000, shards: [0] }],
      2,
    );
    expect(a).toEqual({
      name: 'kill-leader',
      detail: 'd',
      durationMs: 1,
      recoveryMs: 0.3,
      worstShardRecoveryMs: 0.6,
      failoverMs: 0.2,
      longestGapMs: 0.8,
      okDuringFault: 1,
    });
  });

  test('a shard that never recovers, or a target shard without writes during the fault, reads null', () => {
    const [a] = availability(
      h,
      [{ name: 'isolate-leader', detail: '', start: 1000, healed: 2000, shards: [1] }],
      3,
    );
    expect(a!.worstShardRecoveryMs).toBeNull();
    expect(a!.failoverMs).toBeNull();
    // Shard 1 had no ok write at all during the fault: the whole fault is the gap.
    expect(a!.longestGapMs).toBe(1);
  });
});

describe('historyForLinearizability', () => {
  test('drops unknown writes absent from the final state and appends the final reads', () => {
    const h = hist(
      w(0, 'a', 1, 1, 'ok'),
      w(1, 'a', 2, 2, 'unknown'),
      w(2, 'a', 3, 3, 'unknown'),
      w(3, 'b', 1, 4, 'failed'),
    );
    const out = historyForLinearizability(h, [
      {
        series: 'a',
        samples: [
          [1, 1],
          [3, 3],
        ],
      },
      { series: 'zz', samples: [[1, 1]] },
    ]);
    expect(out.ops.map((o) => o.id)).toEqual([0, 2, 3, 4]);
    expect(out.ops[3]).toEqual({
      id: 4,
      process: 1,
      type: 'read',
      series: 'a',
      samples: [
        [1, 1],
        [3, 3],
      ],
      invoke: 36,
      complete: 37,
      outcome: 'ok',
    });
  });
});
