import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mergePrepared, type Point, prepare } from '../../src/client/prepare.js';

/** TIDEMARK_SEED=<n> replays (fast-check also prints the seed of a failing run). */
const SEED = Number(process.env.TIDEMARK_SEED ?? 0xc11e);

const pointArb = fc.record({
  metric: fc.constantFrom('cpu', 'mem', 'disk.io'),
  tags: fc.dictionary(fc.constantFrom('host', 'dc', 'rack'), fc.constantFrom('a', 'b', 'é'), { maxKeys: 3 }),
  timestamp: fc.integer({ min: 0, max: 2 ** 45 }),
  value: fc.double(),
});

describe('prepare', () => {
  it('groups points by series and keeps every sample and its position', () => {
    fc.assert(
      fc.property(fc.array(pointArb, { maxLength: 60 }), (points: Point[]) => {
        const p = prepare(points);
        expect(p.samples).toBe(points.length);
        expect(new Set(p.series.map((s) => s.key)).size).toBe(p.series.length);
        const seen = new Set<number>();
        for (const s of p.series) {
          expect(s.timestamps.length).toBe(s.values.length);
          for (let i = 0; i < s.timestamps.length; i++) {
            const o = s.origin[i]!;
            const pt = points[o]!;
            seen.add(o);
            expect(pt.metric).toBe(s.series.metric);
            expect({ ...pt.tags }).toEqual({ ...s.series.tags });
            expect(pt.timestamp).toBe(s.timestamps[i]);
            expect(Object.is(pt.value, s.values[i])).toBe(true);
          }
        }
        expect(seen.size).toBe(points.length);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('merges prepared writes without duplicating series', () => {
    fc.assert(
      fc.property(fc.array(fc.array(pointArb, { maxLength: 10 }), { maxLength: 6 }), (parts: Point[][]) => {
        const merged = mergePrepared(parts.map((x) => prepare(x)));
        expect(merged.samples).toBe(parts.reduce((n, x) => n + x.length, 0));
        expect(new Set(merged.series.map((s) => s.key)).size).toBe(merged.series.length);
        expect(merged.series.flatMap((s) => s.origin).sort((a, b) => a - b)).toEqual(
          Array.from({ length: merged.samples }, (_, i) => i),
        );
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it('treats tag order as irrelevant', () => {
    const p = prepare([
      { metric: 'm', tags: { a: '1', b: '2' }, timestamp: 1, value: 1 },
      { metric: 'm', tags: { b: '2', a: '1' }, timestamp: 2, value: 2 },
    ]);
    expect(p.series.length).toBe(1);
    expect(p.series[0]!.timestamps).toEqual([1, 2]);
  });

  it('refuses input that is neither points nor columnar series', () => {
    expect(() => prepare(42 as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => prepare([null] as never)).toThrow(expect.objectContaining({ field: 'points[0]' }));
  });
});
