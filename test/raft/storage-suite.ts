/**
 * The shared LogStorage test suite: every implementation (memory, LMDB) runs exactly these tests.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/errors.js';
import type { SnapshotLogStorage } from '../../src/raft/storage-memory.js';
import type { ConfState, Entry, HardState } from '../../src/raft/types.js';

export interface StorageFactory {
  /** A fresh, empty storage (optionally with an initial membership). */
  create(conf?: ConfState): Promise<SnapshotLogStorage>;
  /**
   * Closes `s` and opens the same log again (what a restart sees). Undefined when the implementation
   * keeps nothing across a restart (memory).
   */
  reopen?(s: SnapshotLogStorage): Promise<SnapshotLogStorage>;
}

const enc = new TextEncoder();

export function ent(index: number, term: number, data = `e${index}`): Entry {
  return { index, term, type: 0, data: enc.encode(data) };
}

function range(lo: number, hi: number, term: number | ((i: number) => number)): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push(ent(i, typeof term === 'number' ? term : term(i)));
  return out;
}

function expectEntries(got: Entry[], want: Entry[]): void {
  expect(got.map((e) => ({ ...e, data: Array.from(e.data) }))).toEqual(
    want.map((e) => ({ ...e, data: Array.from(e.data) })),
  );
}

function expectError(fn: () => unknown, reason: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(isTidemarkError(thrown), `expected a TidemarkError(${reason}), got ${String(thrown)}`).toBe(true);
  expect((thrown as { reason: string }).reason).toBe(reason);
}

const conf3: ConfState = { voters: ['a', 'b', 'c'], learners: ['d'] };

export function logStorageSuite(name: string, factory: StorageFactory): void {
  describe(`LogStorage: ${name}`, () => {
    const open: SnapshotLogStorage[] = [];
    const create = async (conf?: ConfState) => {
      const s = await factory.create(conf);
      open.push(s);
      return s;
    };
    const reopen = async (s: SnapshotLogStorage) => {
      if (!factory.reopen) return s;
      const r = await factory.reopen(s);
      open.push(r);
      return r;
    };
    afterEach(async () => {
      for (const s of open.splice(0)) await s.close();
    });

    it('starts empty', async () => {
      const s = await create(conf3);
      expect(s.firstIndex()).toBe(1);
      expect(s.lastIndex()).toBe(0);
      expect(s.term(0)).toBe(0);
      expect(s.initialState()).toEqual({ hardState: { term: 0, vote: '', commit: 0 }, conf: conf3 });
      expect(s.snapshotMeta()).toEqual({ index: 0, term: 0, conf: conf3 });
      expect(s.entries(1, 1)).toEqual([]);
      expectError(() => s.entries(1, 2), 'unavailable');
      expectError(() => s.term(1), 'unavailable');
    });

    it('appends and reads back', async () => {
      const s = await create();
      await s.save(undefined, range(1, 5, 1));
      await s.save(undefined, range(6, 10, 2));
      expect(s.firstIndex()).toBe(1);
      expect(s.lastIndex()).toBe(10);
      expectEntries(
        s.entries(1, 11),
        range(1, 10, (i) => (i <= 5 ? 1 : 2)),
      );
      expectEntries(s.entries(3, 7), [...range(3, 5, 1), ...range(6, 6, 2)]);
      for (let i = 1; i <= 10; i++) expect(s.term(i)).toBe(i <= 5 ? 1 : 2);
      expect(s.entries(4, 4)).toEqual([]);
    });

    it('overwrites a conflicting suffix', async () => {
      const s = await create();
      await s.save(undefined, range(1, 10, 1));
      await s.save(undefined, range(6, 7, 3));
      expect(s.lastIndex()).toBe(7);
      expectEntries(s.entries(1, 8), [...range(1, 5, 1), ...range(6, 7, 3)]);
      expect(s.term(7)).toBe(3);
      expectError(() => s.term(8), 'unavailable');
      expectError(() => s.entries(1, 9), 'unavailable');
      // Overwriting from the very first index, then appending after the new end.
      await s.save(undefined, range(1, 2, 4));
      expect(s.lastIndex()).toBe(2);
      await s.save(undefined, range(3, 3, 4));
      expectEntries(s.entries(1, 4), range(1, 3, 4));
      const r = await reopen(s);
      expect(r.lastIndex()).toBe(3);
      expectEntries(r.entries(1, 4), range(1, 3, 4));
      expectError(() => r.term(4), 'unavailable');
    });

    it('rejects an append that would leave a gap', async () => {
      const s = await create();
      await s.save(undefined, range(1, 3, 1));
      await expect(s.save(undefined, range(5, 6, 1))).rejects.toMatchObject({ reason: 'log_gap' });
      expect(s.lastIndex()).toBe(3);
    });

    it('saves hard state with entries, atomically', async () => {
      const s = await create();
      const hs: HardState = { term: 3, vote: 'b', commit: 2 };
      await s.save(hs, range(1, 3, 3));
      expect(s.initialState().hardState).toEqual(hs);
      await s.save({ term: 4, vote: '', commit: 3 }, []);
      expect(s.initialState().hardState).toEqual({ term: 4, vote: '', commit: 3 });
      // No hard state: keeps the previous one.
      await s.save(undefined, range(4, 4, 4));
      expect(s.initialState().hardState).toEqual({ term: 4, vote: '', commit: 3 });
      const r = await reopen(s);
      expect(r.initialState().hardState).toEqual({ term: 4, vote: '', commit: 3 });
      expect(r.lastIndex()).toBe(4);
      expect(r.term(4)).toBe(4);
    });

    it('limits entries() by maxBytes, returning at least one entry', async () => {
      const s = await create();
      const big = (i: number) => ({ index: i, term: 1, type: 0, data: new Uint8Array(100).fill(i) }) as Entry;
      await s.save(undefined, [big(1), big(2), big(3), big(4), big(5)]);
      expect(s.entries(1, 6, 0).map((e) => e.index)).toEqual([1]);
      expect(s.entries(1, 6, 99).map((e) => e.index)).toEqual([1]);
      expect(s.entries(1, 6, 100).map((e) => e.index)).toEqual([1]);
      expect(s.entries(1, 6, 250).map((e) => e.index)).toEqual([1, 2]);
      // Each entry counts as its data plus 16 bytes.
      expect(s.entries(2, 6, 300).map((e) => e.index)).toEqual([2, 3]);
      expect(s.entries(2, 6, 348).map((e) => e.index)).toEqual([2, 3, 4]);
      expect(s.entries(2, 6, 347).map((e) => e.index)).toEqual([2, 3]);
      expect(s.entries(1, 6).map((e) => e.index)).toEqual([1, 2, 3, 4, 5]);
      expect(Array.from(s.entries(3, 4)[0].data)).toEqual(new Array(100).fill(3));
    });

    it('compacts, keeping term(index) and the snapshot data', async () => {
      const s = await create(conf3);
      await s.save(
        { term: 2, vote: 'a', commit: 10 },
        range(1, 10, (i) => (i <= 4 ? 1 : 2)),
      );
      const conf: ConfState = { voters: ['a', 'b'], learners: [] };
      const data = enc.encode('state-at-4');
      await s.compact(4, conf, data);
      expect(s.firstIndex()).toBe(5);
      expect(s.lastIndex()).toBe(10);
      expect(s.term(4)).toBe(1);
      expect(s.term(5)).toBe(2);
      expect(s.snapshotMeta()).toEqual({ index: 4, term: 1, conf });
      expect(s.initialState().conf).toEqual(conf);
      expect(Array.from(s.snapshot().data)).toEqual(Array.from(data));
      expect(s.snapshot().meta).toEqual({ index: 4, term: 1, conf });
      expectError(() => s.term(3), 'compacted');
      expectError(() => s.entries(4, 6), 'compacted');
      expectError(() => s.entries(1, 2), 'compacted');
      expectEntries(s.entries(5, 11), range(5, 10, 2));
      // Compacting at or below the snapshot again is an error; past the end too.
      await expect(s.compact(4, conf)).rejects.toMatchObject({ reason: 'compacted' });
      await expect(s.compact(11, conf)).rejects.toMatchObject({ reason: 'unavailable' });
      // Appends below the first index are ignored for the compacted part.
      await s.save(undefined, range(3, 6, 2));
      expect(s.firstIndex()).toBe(5);
      expect(s.lastIndex()).toBe(6);
      // Compact everything.
      await s.compact(6, conf, enc.encode('state-at-6'));
      expect(s.firstIndex()).toBe(7);
      expect(s.lastIndex()).toBe(6);
      expect(s.term(6)).toBe(2);
      expect(s.entries(7, 7)).toEqual([]);
      await s.save(undefined, range(7, 8, 3));
      const r = await reopen(s);
      expect(r.firstIndex()).toBe(7);
      expect(r.lastIndex()).toBe(8);
      expect(r.term(6)).toBe(2);
      expect(r.term(8)).toBe(3);
      expect(r.snapshotMeta()).toEqual({ index: 6, term: 2, conf });
      expect(new TextDecoder().decode(r.snapshot().data)).toBe('state-at-6');
      expect(r.initialState().hardState).toEqual({ term: 2, vote: 'a', commit: 10 });
      expectError(() => r.term(5), 'compacted');
    });

    it('applies a snapshot, replacing the log', async () => {
      const s = await create(conf3);
      await s.save({ term: 1, vote: 'a', commit: 3 }, range(1, 5, 1));
      const conf: ConfState = { voters: ['x', 'y', 'z'], learners: [] };
      await s.applySnapshot({ meta: { index: 20, term: 4, conf }, data: enc.encode('snap20') });
      expect(s.firstIndex()).toBe(21);
      expect(s.lastIndex()).toBe(20);
      expect(s.term(20)).toBe(4);
      expectError(() => s.term(19), 'compacted');
      expectError(() => s.entries(5, 6), 'compacted');
      expect(s.snapshotMeta()).toEqual({ index: 20, term: 4, conf });
      expect(s.initialState().conf).toEqual(conf);
      expect(new TextDecoder().decode(s.snapshot().data)).toBe('snap20');
      await s.save({ term: 4, vote: '', commit: 20 }, range(21, 22, 4));
      expectEntries(s.entries(21, 23), range(21, 22, 4));
      // An older (or the same) snapshot is refused.
      await expect(
        s.applySnapshot({ meta: { index: 20, term: 4, conf }, data: new Uint8Array() }),
      ).rejects.toMatchObject({ reason: 'snapshot_out_of_date' });
      // A snapshot inside the current log also replaces the whole log.
      await s.applySnapshot({ meta: { index: 21, term: 4, conf }, data: enc.encode('snap21') });
      expect(s.lastIndex()).toBe(21);
      expect(s.firstIndex()).toBe(22);
      const r = await reopen(s);
      expect(r.firstIndex()).toBe(22);
      expect(r.lastIndex()).toBe(21);
      expect(r.term(21)).toBe(4);
      expect(r.snapshot().meta).toEqual({ index: 21, term: 4, conf });
      expect(new TextDecoder().decode(r.snapshot().data)).toBe('snap21');
      expect(r.initialState().hardState).toEqual({ term: 4, vote: '', commit: 20 });
    });

    it('keeps everything across a reopen', async () => {
      const s = await create(conf3);
      const ents = range(1, 200, (i) => 1 + Math.floor(i / 50));
      for (let i = 0; i < ents.length; i += 20) await s.save(undefined, ents.slice(i, i + 20));
      await s.save({ term: 5, vote: 'c', commit: 150 }, []);
      const r = await reopen(s);
      expect(r.firstIndex()).toBe(1);
      expect(r.lastIndex()).toBe(200);
      expect(r.initialState()).toEqual({ hardState: { term: 5, vote: 'c', commit: 150 }, conf: conf3 });
      expectEntries(r.entries(1, 201), ents);
      expect(r.term(200)).toBe(5);
      expect(r.term(49)).toBe(1);
    });

    it('reports out-of-range reads with typed errors', async () => {
      const s = await create();
      await s.save(undefined, range(1, 10, 1));
      await s.compact(5, { voters: ['a'], learners: [] });
      expectError(() => s.entries(3, 8), 'compacted');
      expectError(() => s.entries(6, 12), 'unavailable');
      expectError(() => s.term(11), 'unavailable');
      expectError(() => s.term(4), 'compacted');
      let err: unknown;
      try {
        s.term(1);
      } catch (e) {
        err = e;
      }
      expect(isTidemarkError(err, 'FAILED_PRECONDITION')).toBe(true);
      try {
        s.term(100);
      } catch (e) {
        err = e;
      }
      expect(isTidemarkError(err, 'UNAVAILABLE')).toBe(true);
    });

    it('preserves entry types and binary data', async () => {
      const s = await create();
      const data = new Uint8Array(256).map((_, i) => i);
      const es: Entry[] = [
        { index: 1, term: 7, type: 1, data },
        { index: 2, term: 2 ** 40, type: 0, data: new Uint8Array(0) },
      ];
      await s.save(undefined, es);
      const r = await reopen(s);
      expectEntries(r.entries(1, 3), es);
      expect(r.term(2)).toBe(2 ** 40);
    });
  });
}
