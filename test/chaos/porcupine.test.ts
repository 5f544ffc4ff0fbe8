/**
 * The Go linearizability checker (chaos-tests/porcupine, built here with `go build`) on hand-made
 * histories: linearizable ones pass, a stale read, a lost write and a read of a value never written fail,
 * and a violation writes Porcupine's HTML view.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { History, Op, ReadOp, WriteOp } from '../../chaos-tests/lib/history.js';
import { buildPorcupine, checkLinearizable } from '../../chaos-tests/lib/porcupine.js';

const dir = mkdtempSync(join(tmpdir(), 'tidemark-porcupine-'));
let n = 0;

beforeAll(async () => {
  await buildPorcupine();
}, 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(
  process: number,
  series: string,
  t: number,
  v: number,
  invoke: number,
  complete: number | null,
): WriteOp {
  return {
    id: 0,
    process,
    type: 'write',
    series,
    shard: 0,
    t,
    v,
    invoke,
    complete,
    outcome: complete === null ? 'unknown' : 'ok',
  };
}

function read(
  process: number,
  series: string,
  samples: [number, number][],
  invoke: number,
  complete: number,
): ReadOp {
  return { id: 0, process, type: 'read', series, samples, invoke, complete, outcome: 'ok' };
}

async function check(...ops: Op[]) {
  const h: History = { version: 1, ops: ops.map((o, id) => ({ ...o, id })) };
  const path = join(dir, `h${++n}.json`);
  writeFileSync(path, JSON.stringify(h));
  const html = join(dir, `h${n}.html`);
  return { res: await checkLinearizable(path, html, 20_000), html };
}

describe('porcupine checker', () => {
  test('sequential writes and reads that see them are linearizable', async () => {
    const { res } = await check(
      write(0, 'a', 1, 1.5, 0, 10),
      read(1, 'a', [[1, 1.5]], 20, 30),
      write(0, 'a', 2, 2.5, 40, 50),
      read(
        1,
        'a',
        [
          [1, 1.5],
          [2, 2.5],
        ],
        60,
        70,
      ),
      read(1, 'b', [], 60, 70),
    );
    expect(res).toMatchObject({ result: 'Ok', series: 2, operations: 5, illegal: [] });
  });

  test('a read concurrent with a write may or may not see it', async () => {
    const seen = await check(write(0, 'a', 1, 1.5, 0, 100), read(1, 'a', [[1, 1.5]], 10, 20));
    const unseen = await check(write(0, 'a', 1, 1.5, 0, 100), read(1, 'a', [], 10, 20));
    expect(seen.res.result).toBe('Ok');
    expect(unseen.res.result).toBe('Ok');
  });

  test('an unknown write may take effect any time after its invocation, or never', async () => {
    const late = await check(
      write(0, 'a', 1, 1.5, 0, null),
      read(1, 'a', [], 100, 110),
      read(1, 'a', [[1, 1.5]], 200, 210),
    );
    expect(late.res.result).toBe('Ok');
    const never = await check(write(0, 'a', 1, 1.5, 0, null), read(1, 'a', [], 300, 310));
    expect(never.res.result).toBe('Ok');
  });

  test('a stale read (missing an acknowledged write) is illegal and gets an HTML view', async () => {
    const { res, html } = await check(
      write(0, 'a', 1, 1.5, 0, 10),
      write(0, 'a', 2, 2.5, 20, 30),
      read(1, 'a', [[1, 1.5]], 40, 50),
      write(0, 'b', 1, 3.5, 0, 10),
      read(1, 'b', [[1, 3.5]], 40, 50),
    );
    expect(res.result).toBe('Illegal');
    expect(res.illegal).toEqual(['a']);
    expect(res.html).toBe(html);
    expect(existsSync(html)).toBe(true);
  });

  test('a read that loses a sample it saw before is illegal', async () => {
    const { res } = await check(
      write(0, 'a', 1, 1.5, 0, null),
      read(1, 'a', [[1, 1.5]], 10, 20),
      read(1, 'a', [], 30, 40),
    );
    expect(res.result).toBe('Illegal');
  });

  test('a read of a value never written is illegal', async () => {
    const { res } = await check(write(0, 'a', 1, 1.5, 0, 10), read(1, 'a', [[1, 9]], 20, 30));
    expect(res.result).toBe('Illegal');
  });

  test('failed writes are left out, failed reads too', async () => {
    const failed: WriteOp = { ...write(0, 'a', 1, 1.5, 0, 10), outcome: 'failed' };
    const failedRead: ReadOp = { ...read(1, 'a', [[7, 7]], 0, 5), outcome: 'unknown' };
    const { res } = await check(failed, failedRead, read(1, 'a', [], 20, 30));
    expect(res.result).toBe('Ok');
    const { res: seen } = await check(failed, read(1, 'a', [[1, 1.5]], 20, 30));
    expect(seen.result).toBe('Illegal');
  });
});
