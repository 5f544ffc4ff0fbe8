/**
 * Model-based test: random sequences of save / compact / applySnapshot / reopen applied to an
 * LmdbLogStorage (with a tiny entry cache, so reads mix cache and LMDB) and to the reference
 * MemoryLogStorage must be observably identical.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { LmdbLogStorage } from '../../src/raft/storage-lmdb.js';
import { MemoryLogStorage } from '../../src/raft/storage-memory.js';
import type { Entry } from '../../src/raft/types.js';

const root = mkdtempSync(join(tmpdir(), 'tidemark-raft-model-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

type Op =
  | { kind: 'append'; back: number; count: number; size: number }
  | { kind: 'compact'; back: number }
  | { kind: 'snapshot'; ahead: number }
  | { kind: 'reopen' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      back: fc.nat(6),
      count: fc.integer({ min: 0, max: 12 }),
      size: fc.nat(80),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), back: fc.nat(8) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('snapshot' as const), ahead: fc.integer({ min: -3, max: 5 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

function observe(s: {
  firstIndex(): number;
  lastIndex(): number;
  term(i: number): number;
  entries(lo: number, hi: number, max?: number): Entry[];
}) {
  const first = s.firstIndex();
  const last = s.lastIndex();
  const terms: number[] = [];
  for (let i = first - 1; i <= last; i++) terms.push(s.term(i));
  const ents = s.entries(first, last + 1).map((e) => [e.index, e.term, e.type, Array.from(e.data)]);
  const limited = last >= first ? s.entries(first, last + 1, 150).map((e) => e.index) : [];
  return { first, last, terms, ents, limited };
}

describe('LmdbLogStorage vs MemoryLogStorage', () => {
  it('agree on random operation sequences', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
        const path = join(root, `m${n++}`);
        const model = new MemoryLogStorage();
        let real = await LmdbLogStorage.open({ path, cacheBytes: 120, gcBatch: 2 });
        let term = 1;
        try {
          for (const op of ops) {
            if (op.kind === 'append') {
              term++;
              const from = Math.max(model.firstIndex(), model.lastIndex() + 1 - op.back);
              const ents: Entry[] = [];
              for (let i = 0; i < op.count; i++) {
                ents.push({
                  index: from + i,
                  term,
                  type: i % 5 === 4 ? 1 : 0,
                  data: new Uint8Array(op.size).fill(from + i),
                });
              }
              const hs = { term, vote: term % 2 ? 'a' : '', commit: Math.max(0, model.firstIndex() - 1) };
              await model.save(hs, ents);
              await real.save(hs, ents);
            } else if (op.kind === 'compact') {
              const at = model.lastIndex() - op.back;
              if (at >= model.firstIndex()) {
                const conf = { voters: ['a', `x${at}`], learners: [] };
                await model.compact(at, conf, new Uint8Array([at & 255]));
                await real.compact(at, conf, new Uint8Array([at & 255]));
              }
            } else if (op.kind === 'snapshot') {
              const at = model.lastIndex() + op.ahead;
              if (at > model.snapshotMeta().index) {
                term++;
                const snap = {
                  meta: { index: at, term, conf: { voters: ['s'], learners: [] } },
                  data: new Uint8Array([1, 2]),
                };
                await model.applySnapshot(snap);
                await real.applySnapshot(snap);
              }
            } else {
              await real.close();
              real = await LmdbLogStorage.open({ path, cacheBytes: 120, gcBatch: 2 });
            }
            expect(observe(real)).toEqual(observe(model));
            expect(real.initialState()).toEqual(model.initialState());
            expect(real.snapshot().meta).toEqual(model.snapshot().meta);
            expect(Array.from(real.snapshot().data)).toEqual(Array.from(model.snapshot().data));
          }
        } finally {
          await real.close();
          rmSync(path, { recursive: true, force: true });
        }
      }),
      { numRuns: 60 },
    );
  });
});
