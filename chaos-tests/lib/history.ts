/**
 * The operation history of a chaos run: every client operation with its invoke and complete times and its
 * outcome. Pure: the clock is injected. The JSON form (`History`) is what the Porcupine checker
 * (chaos-tests/porcupine/main.go) reads; keep the two in step.
 *
 * Outcomes: `ok` (acknowledged), `failed` (definitely not applied: refused before anything was proposed),
 * `unknown` (a timeout or UNAVAILABLE / outcome_unknown: it may or may not have been applied, now or later).
 */
import { isTidemarkError } from '../../src/errors/index.js';

export type Outcome = 'ok' | 'failed' | 'unknown';

interface OpBase {
  /** Position in the history (unique). */
  id: number;
  /** The logical client (a writer or reader loop) that ran it; one operation at a time per process. */
  process: number;
  /** Series name (the `s` tag of metric CHAOS_METRIC). */
  series: string;
  /** Microseconds since the run started. */
  invoke: number;
  /** Microseconds since the run started; null while pending (and for unknown outcomes never completed). */
  complete: number | null;
  outcome: Outcome;
  /** `code/reason` of the error, for failed and unknown outcomes. */
  error?: string;
}

export interface WriteOp extends OpBase {
  type: 'write';
  /** The one sample written: unique timestamp per series and value per run. */
  t: number;
  v: number;
  /** Shard of the series (for availability per shard). */
  shard: number;
}

export interface ReadOp extends OpBase {
  type: 'read';
  /** The series' samples as read, [t, v] pairs in returned order. */
  samples: [number, number][];
}

export type Op = WriteOp | ReadOp;

export interface History {
  version: 1;
  ops: Op[];
}

/** The metric every chaos sample is written under; series differ by the `s` tag. */
export const CHAOS_METRIC = 'chaos_sample';

/**
 * Classifies a failed client call. Only a refusal that provably happened before anything was proposed is
 * `failed`: invalid input, or (when the call made a single attempt) a deadline the server reports with
 * `outcome: none`. Everything else (network
 * errors, UNAVAILABLE, NOT_LEADER after a forwarded attempt, DEADLINE_EXCEEDED) may have taken effect.
 */
export function classifyError(err: unknown, singleAttempt = true): { outcome: Outcome; error: string } {
  if (isTidemarkError(err)) {
    const error = `${err.code}/${err.reason}`;
    if (err.code === 'INVALID_ARGUMENT') return { outcome: 'failed', error };
    // `outcome: none` speaks for the last attempt only: after client retries an earlier one may have landed.
    if (singleAttempt && err.details.outcome === 'none') return { outcome: 'failed', error };
    return { outcome: 'unknown', error };
  }
  return { outcome: 'unknown', error: err instanceof Error ? err.message : String(err) };
}

/** Records operations as they happen. */
export class HistoryRecorder {
  private readonly ops: Op[] = [];

  /** `nowUs`: microseconds since the run started (monotonic). */
  constructor(private readonly nowUs: () => number) {}

  invokeWrite(process: number, series: string, shard: number, t: number, v: number): WriteOp {
    const op: WriteOp = {
      id: this.ops.length,
      process,
      type: 'write',
      series,
      shard,
      t,
      v,
      invoke: this.nowUs(),
      complete: null,
      outcome: 'unknown',
    };
    this.ops.push(op);
    return op;
  }

  invokeRead(process: number, series: string): ReadOp {
    const op: ReadOp = {
      id: this.ops.length,
      process,
      type: 'read',
      series,
      samples: [],
      invoke: this.nowUs(),
      complete: null,
      outcome: 'unknown',
    };
    this.ops.push(op);
    return op;
  }

  ok(op: Op, samples?: [number, number][]): void {
    op.complete = this.nowUs();
    op.outcome = 'ok';
    if (op.type === 'read' && samples !== undefined) op.samples = samples;
  }

  /** `singleAttempt`: the client made one request (no SDK retries), see classifyError. */
  fail(op: Op, err: unknown, singleAttempt = true): void {
    const c = classifyError(err, singleAttempt);
    op.outcome = c.outcome;
    op.error = c.error;
    // An unknown outcome never completes: it may take effect at any time after its invocation.
    op.complete = c.outcome === 'unknown' ? null : this.nowUs();
  }

  history(): History {
    return { version: 1, ops: this.ops.map((o) => ({ ...o })) };
  }
}
