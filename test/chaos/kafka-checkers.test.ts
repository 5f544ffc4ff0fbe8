/**
 * The Kafka-workload checkers on hand-made offset samples: each must pass a healthy history and fail (or
 * report the right figure for) a broken one. Times are µs since the run started, like the harness's.
 */
import { describe, expect, test } from 'vitest';
import { checkFinal, type FaultWindow } from '../../chaos-tests/lib/checkers.js';
import type { History, WriteOp } from '../../chaos-tests/lib/history.js';
import { catchUp, kafkaAvailability, type LagSample } from '../../chaos-tests/lib/kafka-checkers.js';

/** A sample at `tMs` (ms) with per-partition end and applied offsets. */
const at = (tMs: number, ends: (number | null)[], applied: (number | null)[]): LagSample => ({
  t: tMs * 1000,
  ends,
  applied,
});

describe('catchUp', () => {
  test('passes when every partition reaches its end offset, timing each from `from`', () => {
    const samples = [
      at(0, [10, 10], [0, 0]), // before `from`: ignored, even though it is not caught up
      at(1000, [20, 20], [15, 20]),
      at(1250, [20, 20], [20, 20]),
    ];
    const r = catchUp(samples, [20, 20], 1000 * 1000);
    expect(r.ok).toBe(true);
    expect(r.violations).toEqual([]);
    expect(r.partitions).toEqual([
      { partition: 0, end: 20, applied: 20, catchUpMs: 250 },
      { partition: 1, end: 20, applied: 20, catchUpMs: 0 },
    ]);
  });

  test('a partition whose shard never reaches the end fails, naming the shard and the offsets', () => {
    const samples = [at(0, [20, 20], [5, 20]), at(500, [20, 20], [19, 20])];
    const r = catchUp(samples, [20, 20], 0);
    expect(r.ok).toBe(false);
    expect(r.violations).toEqual(['partition 0 (shard 0) never caught up: applied offset 19, end offset 20']);
    expect(r.partitions[0]!.catchUpMs).toBeNull();
    expect(r.partitions[1]!.catchUpMs).toBe(0);
  });

  test('a partition no node reports is a failure too', () => {
    const r = catchUp([at(0, [3], [null]), at(100, [3], [null])], [3], 0);
    expect(r.ok).toBe(false);
    expect(r.violations[0]).toContain('partition 0 (shard 0) never caught up: applied offset unknown');
  });

  test('catching up before `from` does not count: only samples from then on', () => {
    const r = catchUp([at(0, [4], [4]), at(100, [6], [4])], [6], 50 * 1000);
    expect(r.ok).toBe(false);
  });
});

describe('kafkaAvailability', () => {
  const fault = (startMs: number, healedMs: number | null, shards?: number[]): FaultWindow => ({
    name: 'kill-leader',
    detail: 'test',
    start: startMs * 1000,
    healed: healedMs === null ? null : healedMs * 1000,
    ...(shards === undefined ? {} : { shards }),
  });

  // Partition 0 stalls from 1000 to 3000 ms (its leader is gone), partition 1 keeps going.
  const samples = [
    at(0, [10, 10], [10, 10]),
    at(1000, [20, 20], [12, 20]),
    at(1500, [30, 30], [12, 30]),
    at(2000, [40, 40], [null, 40]), // no node reports partition 0 (the old leader is dead)
    at(2500, [50, 50], [12, 50]),
    at(3000, [60, 60], [45, 60]), // a new leader applies
    at(3500, [60, 60], [55, 60]),
    at(4000, [60, 60], [60, 60]),
  ];

  test('lag, stall of the target partition and catch-up after the heal', () => {
    const [a] = kafkaAvailability(samples, [fault(1000, 3000, [0])], 2);
    expect(a!.maxLag).toBe(38); // 50 - 12 at 2500 ms
    // Progress at 1000 ms (the start) and next at 3000 ms; the last sample still stalled is at 2500 ms
    // (measured at the samples: a lower bound, to the monitor's period).
    expect(a!.longestStallMs).toBe(1500);
    expect(a!.partitions[0]).toMatchObject({ endAtHeal: 60, maxLag: 38, stallMs: 1500, catchUpMs: 1000 });
    expect(a!.partitions[1]).toMatchObject({ endAtHeal: 60, maxLag: 0, stallMs: 0, catchUpMs: 0 });
    expect(a!.worstCatchUpMs).toBe(1000);
  });

  test('a fault without target shards reports the worst partition', () => {
    const [a] = kafkaAvailability(samples, [fault(1000, 3000)], 2);
    expect(a!.longestStallMs).toBe(1500);
    // Targeting the healthy partition only: no stall.
    const [b] = kafkaAvailability(samples, [fault(1000, 3000, [1])], 2);
    expect(b!.longestStallMs).toBe(0);
  });

  test('a partition that never reaches its end offset at the heal has no catch-up time', () => {
    const stuck = samples.map((s) => ({ ...s, applied: [Math.min(s.applied[0] ?? 0, 50), s.applied[1]!] }));
    const [a] = kafkaAvailability(stuck, [fault(1000, 3000, [0])], 2);
    expect(a!.partitions[0]!.catchUpMs).toBeNull();
    expect(a!.worstCatchUpMs).toBeNull();
  });

  test('a fault that never healed has no catch-up', () => {
    const [a] = kafkaAvailability(samples, [fault(1000, null)], 2);
    expect(a!.worstCatchUpMs).toBeNull();
  });
});

describe('checkFinal on a Kafka history (asynchronous writes: acked by Kafka, applied later)', () => {
  const w = (id: number, series: string, t: number, v: number, outcome: WriteOp['outcome']): WriteOp => ({
    id,
    process: 10_000,
    type: 'write',
    series,
    shard: 0,
    t,
    v,
    invoke: id,
    complete: outcome === 'unknown' ? null : id + 1,
    outcome,
  });
  const h: History = {
    version: 1,
    ops: [w(0, 'k0-0', 1, -0.5, 'ok'), w(1, 'k0-0', 2, -1.5, 'ok'), w(2, 'k0-0', 3, -2.5, 'unknown')],
  };

  test('passes with every acked sample once; an unknown send may be there or not', () => {
    const samples: [number, number][] = [
      [1, -0.5],
      [2, -1.5],
    ];
    expect(checkFinal(h, [{ series: 'k0-0', samples }]).ok).toBe(true);
    expect(checkFinal(h, [{ series: 'k0-0', samples: [...samples, [3, -2.5]] }]).ok).toBe(true);
  });

  test('a record applied twice (a sample returned twice) or never fails', () => {
    const twice = checkFinal(h, [
      {
        series: 'k0-0',
        samples: [
          [1, -0.5],
          [1, -0.5],
          [2, -1.5],
        ],
      },
    ]);
    expect(twice).toMatchObject({ ok: false, duplicates: 1 });
    const lost = checkFinal(h, [{ series: 'k0-0', samples: [[2, -1.5]] }]);
    expect(lost).toMatchObject({ ok: false, lost: 1 });
  });
});
