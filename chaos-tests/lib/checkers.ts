/**
 * The checkers that need no search (pure functions of the history and the final reads):
 * durability (every acknowledged sample present with its exact value), no phantoms (nothing present that
 * no client wrote, or that a failed write wrote), no duplicates (a timestamp or a series returned twice),
 * and availability (per fault: how long writes take to succeed again). Linearizability is checked by
 * Porcupine (porcupine.ts).
 */
import type { History, WriteOp } from './history.js';

/** One series as a final read returned it. */
export interface FinalSeries {
  series: string;
  samples: [number, number][];
}

export interface Violation {
  kind: 'lost' | 'wrong_value' | 'phantom' | 'failed_visible' | 'duplicate_sample' | 'duplicate_series';
  series: string;
  t?: number;
  expected?: number;
  got?: number;
  /** The write op involved, if any. */
  op?: number;
}

export interface FinalCheck {
  ok: boolean;
  /** Acknowledged writes checked; of them, found intact. */
  acknowledged: number;
  present: number;
  /** Writes with unknown outcome that are present / absent (both are legal). */
  unknownPresent: number;
  unknownAbsent: number;
  lost: number;
  phantoms: number;
  duplicates: number;
  violations: Violation[];
}

const key = (series: string, t: number): string => `${series}\u0000${t}`;

/**
 * Checks one final read of every series against the history. `final` may list a series more than once
 * (that is itself a duplicate). Values compare with Object.is, so NaN and -0 are exact too.
 */
export function checkFinal(history: History, final: readonly FinalSeries[], maxViolations = 100): FinalCheck {
  const writes = new Map<string, WriteOp>();
  for (const op of history.ops) if (op.type === 'write') writes.set(key(op.series, op.t), op);
  const seen = new Map<string, number>();
  const violations: Violation[] = [];
  const out: FinalCheck = {
    ok: true,
    acknowledged: 0,
    present: 0,
    unknownPresent: 0,
    unknownAbsent: 0,
    lost: 0,
    phantoms: 0,
    duplicates: 0,
    violations,
  };
  const note = (v: Violation) => {
    out.ok = false;
    if (violations.length < maxViolations) violations.push(v);
  };
  const seriesSeen = new Set<string>();
  for (const s of final) {
    if (seriesSeen.has(s.series)) {
      out.duplicates++;
      note({ kind: 'duplicate_series', series: s.series });
    }
    seriesSeen.add(s.series);
    for (const [t, v] of s.samples) {
      const k = key(s.series, t);
      if (seen.has(k)) {
        out.duplicates++;
        note({ kind: 'duplicate_sample', series: s.series, t, got: v });
        continue;
      }
      seen.set(k, v);
      const w = writes.get(k);
      if (w === undefined) {
        out.phantoms++;
        note({ kind: 'phantom', series: s.series, t, got: v });
      } else if (!Object.is(w.v, v)) {
        out.phantoms++;
        note({ kind: 'phantom', series: s.series, t, expected: w.v, got: v, op: w.id });
      } else if (w.outcome === 'failed') {
        out.phantoms++;
        note({ kind: 'failed_visible', series: s.series, t, got: v, op: w.id });
      }
    }
  }
  for (const w of writes.values()) {
    const got = seen.get(key(w.series, w.t));
    if (w.outcome === 'ok') {
      out.acknowledged++;
      if (got === undefined) {
        out.lost++;
        note({ kind: 'lost', series: w.series, t: w.t, expected: w.v, op: w.id });
      } else if (!Object.is(got, w.v)) {
        out.lost++;
        note({ kind: 'wrong_value', series: w.series, t: w.t, expected: w.v, got, op: w.id });
      } else out.present++;
    } else if (w.outcome === 'unknown') {
      if (got === undefined) out.unknownAbsent++;
      else out.unknownPresent++;
    }
  }
  return out;
}

/** A fault as the nemesis ran it; times in microseconds since the run started. */
export interface FaultWindow {
  name: string;
  /** What it did, e.g. "isolate c" (for the report). */
  detail: string;
  start: number;
  /** When the heal finished; null if it never healed (a bug in the harness). */
  healed: number | null;
  /** Shards it aimed at (leader faults), if any. */
  shards?: number[];
}

export interface Availability {
  name: string;
  detail: string;
  durationMs: number;
  /** From the end of the heal until the first write invoked after it succeeded (any shard); null: none did. */
  recoveryMs: number | null;
  /** The same per shard, worst shard (null if some shard never recovered before the history ended). */
  worstShardRecoveryMs: number | null;
  /**
   * For leader faults (kill / isolate the leader of a shard): from the fault's start until a write to that
   * shard invoked after the start succeeded (the failover time; null: not while the fault lasted).
   */
  failoverMs: number | null;
  /**
   * The longest stretch within the fault in which no write to a shard completed ok (fault start and heal
   * count as ends), worst of the target shards (leader faults) or of all shards: how long the fault made
   * writes unavailable, whatever the writers' pacing.
   */
  longestGapMs: number;
  /** Acknowledged writes invoked while the fault was active. */
  okDuringFault: number;
}

/** Longest interval in [from, to] without an ok completion of a write to `shard`. */
function longestGap(okWrites: readonly WriteOp[], shard: number, from: number, to: number): number {
  const done = okWrites
    .filter((w) => w.shard === shard && w.complete! >= from && w.complete! <= to)
    .map((w) => w.complete!)
    .sort((a, b) => a - b);
  let prev = from;
  let gap = 0;
  for (const c of done) {
    gap = Math.max(gap, c - prev);
    prev = c;
  }
  return Math.max(gap, to - prev);
}

/** First ok write (optionally of one shard) invoked at or after `from`: its completion time. */
function firstOkAfter(okWrites: readonly WriteOp[], from: number, shard?: number): number | null {
  let best: number | null = null;
  for (const w of okWrites) {
    if (w.invoke < from || (shard !== undefined && w.shard !== shard)) continue;
    if (best === null || w.complete! < best) best = w.complete!;
  }
  return best;
}

/** Availability per fault (see Availability). `shards`: the shard count. */
export function availability(
  history: History,
  faults: readonly FaultWindow[],
  shards: number,
): Availability[] {
  const ok = history.ops.filter((o): o is WriteOp => o.type === 'write' && o.outcome === 'ok');
  const ms = (us: number) => Math.round(us / 100) / 10;
  return faults.map((f) => {
    const healed = f.healed ?? Number.POSITIVE_INFINITY;
    const first = firstOkAfter(ok, healed);
    let worst: number | null = 0;
    for (let s = 0; s < shards; s++) {
      const c = firstOkAfter(ok, healed, s);
      if (c === null) {
        worst = null;
        break;
      }
      worst = Math.max(worst, c - healed);
    }
    let failover: number | null = null;
    if (f.shards !== undefined && f.shards.length > 0) {
      failover = 0;
      for (const s of f.shards) {
        const c = firstOkAfter(ok, f.start, s);
        if (c === null || c > healed) {
          failover = null;
          break;
        }
        failover = Math.max(failover, c - f.start);
      }
    }
    const targets =
      f.shards !== undefined && f.shards.length > 0 ? f.shards : Array.from({ length: shards }, (_, i) => i);
    const gap = f.healed === null ? 0 : Math.max(...targets.map((s) => longestGap(ok, s, f.start, healed)));
    return {
      name: f.name,
      detail: f.detail,
      durationMs: f.healed === null ? -1 : ms(f.healed - f.start),
      recoveryMs: first === null ? null : ms(Math.max(0, first - healed)),
      worstShardRecoveryMs: worst === null ? null : ms(Math.max(0, worst)),
      failoverMs: failover === null ? null : ms(failover),
      longestGapMs: ms(gap),
      okDuringFault: ok.filter((w) => w.invoke >= f.start && w.invoke < healed).length,
    };
  });
}

/**
 * The history given to the linearizability checker, narrowed with the final state: an unknown write whose
 * sample is absent from the converged final read never took effect (samples are never deleted), so it is
 * dropped; the final read of every series is appended as one more read after everything. Both are sound
 * (a later read that saw a dropped write makes that read illegal, as it should) and they keep Porcupine's
 * search small: every unknown write left open doubles the states it may explore.
 */
export function historyForLinearizability(history: History, final: readonly FinalSeries[]): History {
  const present = new Set<string>();
  for (const s of final) for (const [t] of s.samples) present.add(key(s.series, t));
  let end = 0;
  let maxProcess = 0;
  for (const op of history.ops) {
    end = Math.max(end, op.invoke, op.complete ?? 0);
    maxProcess = Math.max(maxProcess, op.process);
  }
  const ops = history.ops.filter(
    (op) => !(op.type === 'write' && op.outcome === 'unknown' && !present.has(key(op.series, op.t))),
  );
  let id = history.ops.length;
  const written = new Set(history.ops.map((op) => op.series));
  for (const s of final) {
    if (!written.has(s.series)) continue; // not ours: the final check reports it as a phantom
    ops.push({
      id: id++,
      process: maxProcess + 1,
      type: 'read',
      series: s.series,
      samples: s.samples,
      invoke: end + 1,
      complete: end + 2,
      outcome: 'ok',
    });
  }
  return { version: 1, ops };
}
