/** The history recorder and the classification of client errors into outcomes. */
import { describe, expect, test } from 'vitest';
import { classifyError, HistoryRecorder } from '../../chaos-tests/lib/history.js';
import { TidemarkError } from '../../src/errors/index.js';

describe('classifyError', () => {
  test('only provable refusals are failed; everything else may have happened', () => {
    const e = (code: ConstructorParameters<typeof TidemarkError>[0], reason: string, details = {}) =>
      classifyError(new TidemarkError(code, reason, 'm', details));
    expect(e('INVALID_ARGUMENT', 'timestamp_invalid')).toEqual({
      outcome: 'failed',
      error: 'INVALID_ARGUMENT/timestamp_invalid',
    });
    expect(e('DEADLINE_EXCEEDED', 'deadline_exceeded', { outcome: 'none' }).outcome).toBe('failed');
    expect(e('DEADLINE_EXCEEDED', 'deadline_exceeded', { outcome: 'unknown' }).outcome).toBe('unknown');
    // After client retries an earlier attempt may have landed: only invalid input stays failed.
    const retried = new TidemarkError('DEADLINE_EXCEEDED', 'deadline_exceeded', 'm', { outcome: 'none' });
    expect(classifyError(retried, false).outcome).toBe('unknown');
    expect(classifyError(new TidemarkError('INVALID_ARGUMENT', 'x', 'm'), false).outcome).toBe('failed');
    expect(e('UNAVAILABLE', 'outcome_unknown').outcome).toBe('unknown');
    expect(e('NOT_LEADER', 'not_leader').outcome).toBe('unknown');
    expect(classifyError(new Error('socket hang up'))).toEqual({
      outcome: 'unknown',
      error: 'socket hang up',
    });
  });
});

describe('HistoryRecorder', () => {
  test('records invoke and complete times; unknown outcomes never complete', () => {
    let now = 0;
    const r = new HistoryRecorder(() => now);
    const a = r.invokeWrite(1, 's', 2, 100, 1.5);
    const b = r.invokeWrite(2, 's', 2, 101, 2.5);
    const c = r.invokeRead(3, 's');
    now = 7;
    r.ok(a);
    r.fail(b, new TidemarkError('UNAVAILABLE', 'outcome_unknown', 'm'));
    r.ok(c, [[100, 1.5]]);
    const h = r.history();
    expect(h.ops).toEqual([
      {
        id: 0,
        process: 1,
        type: 'write',
        series: 's',
        shard: 2,
        t: 100,
        v: 1.5,
        invoke: 0,
        complete: 7,
        outcome: 'ok',
      },
      {
        id: 1,
        process: 2,
        type: 'write',
        series: 's',
        shard: 2,
        t: 101,
        v: 2.5,
        invoke: 0,
        complete: null,
        outcome: 'unknown',
        error: 'UNAVAILABLE/outcome_unknown',
      },
      {
        id: 2,
        process: 3,
        type: 'read',
        series: 's',
        samples: [[100, 1.5]],
        invoke: 0,
        complete: 7,
        outcome: 'ok',
      },
    ]);
  });
});
