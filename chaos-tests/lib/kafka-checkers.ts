/**
 * Checkers of the Kafka-ingest workload that are not the shared final-state check (checkers.ts's
 * checkFinal runs on the Kafka history as it does on the SDK writers'): whether every partition's shard
 * caught up to the topic's end, and Kafka's availability per fault (lag while it lasts, catch-up after the
 * heal). Pure functions of offsets sampled by the harness (kafka.ts's LagMonitor); times in µs since the
 * run started, like the history's.
 */
import type { FaultWindow } from './checkers.js';

/**
 * One sample of the lag monitor: per partition, the topic's end offset (high watermark) and the largest
 * offset any live node reports its shard has applied (`kafka.nextOffset`: the next offset to apply).
 * null: not known at that moment (the broker or every node that consumed the partition did not answer).
 */
export interface LagSample {
  t: number;
  ends: (number | null)[];
  applied: (number | null)[];
}

export interface PartitionCatchUp {
  partition: number;
  /** The end offset the shard had to reach. */
  end: number;
  /** The applied offset at the last look (null: no node reported one). */
  applied: number | null;
  /** From `from` until the applied offset first reached `end` (null: it never did). */
  catchUpMs: number | null;
}

export interface CatchUpResult {
  ok: boolean;
  partitions: PartitionCatchUp[];
  /** One line per partition whose shard never caught up (names the shard/partition and the offsets). */
  violations: string[];
}

const ms = (us: number) => Math.round(us / 100) / 10;

/**
 * Whether every partition's applied offset reached the target end offsets, judged on the samples at or
 * after `from` (µs; samples before it are ignored: the catch-up time counts from there).
 */
export function catchUp(samples: readonly LagSample[], ends: readonly number[], from: number): CatchUpResult {
  const partitions: PartitionCatchUp[] = ends.map((end, partition) => {
    let applied: number | null = null;
    let catchUpMs: number | null = null;
    for (const s of samples) {
      if (s.t < from) continue;
      const a = s.applied[partition] ?? null;
      if (a !== null) applied = a;
      if (a !== null && a >= end) {
        catchUpMs = ms(s.t - from);
        break;
      }
    }
    return { partition, end, applied, catchUpMs };
  });
  const violations = partitions
    .filter((p) => p.catchUpMs === null)
    .map(
      (p) =>
        `partition ${p.partition} (shard ${p.partition}) never caught up: applied offset ${p.applied ?? 'unknown (no node reported it)'}, end offset ${p.end}`,
    );
  return { ok: violations.length === 0, partitions, violations };
}

export interface KafkaFaultAvailability {
  name: string;
  detail: string;
  /**
   * Per partition: the end offset at the heal, the largest lag seen during the fault, the longest stall in
   * it, the catch-up time.
   */
  partitions: {
    partition: number;
    endAtHeal: number | null;
    maxLag: number;
    stallMs: number;
    catchUpMs: number | null;
  }[];
  /** Largest lag (records) of any partition while the fault lasted. */
  maxLag: number;
  /**
   * The longest stretch within the fault in which a partition had records to apply (lag > 0, or no node
   * reporting it) but its applied offset did not move: the fault start counts as progress; the target
   * partitions of a leader fault, else the worst partition. Kafka's failover time, in effect.
   */
  longestStallMs: number;
  /**
   * From the end of the heal until every partition's applied offset reached the end offset it had at the
   * heal (the slowest partition; null: some partition did not before the monitor stopped). Granularity:
   * the monitor's sampling period.
   */
  worstCatchUpMs: number | null;
}

/** Kafka availability per fault from the lag monitor's samples. */
export function kafkaAvailability(
  samples: readonly LagSample[],
  faults: readonly FaultWindow[],
  partitions: number,
): KafkaFaultAvailability[] {
  return faults.map((f) => {
    const healed = f.healed ?? Number.POSITIVE_INFINITY;
    const per = Array.from({ length: partitions }, (_, p) => {
      let endAtHeal: number | null = null;
      let maxLag = 0;
      for (const s of samples) {
        const e = s.ends[p] ?? null;
        const a = s.applied[p] ?? null;
        // End offsets only grow, so the largest one seen up to the heal is the one at the heal.
        if (s.t <= healed && e !== null) endAtHeal = Math.max(endAtHeal ?? 0, e);
        if (s.t >= f.start && s.t <= healed && e !== null && a !== null) maxLag = Math.max(maxLag, e - a);
      }
      let catchUpMs: number | null = null;
      if (endAtHeal !== null && f.healed !== null) {
        for (const s of samples) {
          const a = s.applied[p] ?? null;
          if (s.t >= f.healed && a !== null && a >= endAtHeal) {
            catchUpMs = ms(s.t - f.healed);
            break;
          }
        }
      }
      return { partition: p, endAtHeal, maxLag, stallMs: ms(stall(samples, p, f.start, healed)), catchUpMs };
    });
    const targets =
      f.shards !== undefined && f.shards.length > 0
        ? per.filter((x) => f.shards!.includes(x.partition))
        : per;
    const worst = per.some((x) => x.catchUpMs === null)
      ? null
      : Math.max(0, ...per.map((x) => x.catchUpMs ?? 0));
    return {
      name: f.name,
      detail: f.detail,
      partitions: per,
      maxLag: Math.max(0, ...per.map((x) => x.maxLag)),
      longestStallMs: Math.max(0, ...targets.map((x) => x.stallMs)),
      worstCatchUpMs: worst,
    };
  });
}

/**
 * Longest time (µs) in [from, to] during which partition `p` had records to apply and applied none,
 * measured at the samples: progress is an applied offset above every one seen before (from the last sample
 * before `from` on) or a partition caught up with its end; `from` itself counts as progress. The stall
 * ends at the last sample without progress, so this is a lower bound (granularity: the sampling period)
 * that is 0 while a partition keeps applying.
 */
function stall(samples: readonly LagSample[], p: number, from: number, to: number): number {
  let best: number | null = null;
  let last = from;
  let longest = 0;
  for (const s of samples) {
    const a = s.applied[p] ?? null;
    const e = s.ends[p] ?? null;
    if (s.t < from) {
      if (a !== null) best = Math.max(best ?? a, a);
      continue;
    }
    if (s.t > to) break;
    const advanced = a !== null && (best === null || a > best);
    if (a !== null) best = Math.max(best ?? a, a);
    if (advanced || (a !== null && e !== null && a >= e)) last = s.t;
    else longest = Math.max(longest, s.t - last);
  }
  return longest;
}
