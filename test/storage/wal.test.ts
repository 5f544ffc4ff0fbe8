import { describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/index.js';
import {
  decodeWalRecord,
  SERIES_EXISTING,
  SERIES_NEW,
  SERIES_UNUSED,
  WAL_BATCH,
  WAL_DELETE,
  WAL_RETENTION,
  WalWriter,
} from '../../src/storage/index.js';

const id = (b: number) => new Uint8Array(8).fill(b);

describe('write-ahead record codec', () => {
  const series = [
    { flag: SERIES_EXISTING, id: id(1), key: null },
    { flag: SERIES_UNUSED, id: null, key: null },
    { flag: SERIES_NEW, id: id(3), key: new Uint8Array([99, 0xff, 104, 0xff, 97]) },
  ];
  const ts = Float64Array.from([5, 2 ** 40, 7]);
  const vals = Float64Array.from([1.5, Number.NaN, -0]);
  const refs = Uint32Array.from([0, 2, 2]);

  it('round-trips a batch with compact columns (small span, few series)', () => {
    const w = new WalWriter();
    const near = Float64Array.from([1_700_000_000_000, 1_700_000_000_010, 1_700_000_000_005]);
    const bytes = Buffer.from(w.batch(series, 3, near, vals, refs, 1_700_000_000_000, 1_700_000_000_010));
    const r = decodeWalRecord(bytes);
    expect(r.type).toBe(WAL_BATCH);
    if (r.type !== WAL_BATCH) return;
    expect([...r.ts]).toEqual([...near]);
    expect(Object.is(r.vals[2], -0)).toBe(true);
    expect(r.vals[1]).toBeNaN();
    expect([...r.refs]).toEqual([0, 2, 2]);
    expect(r.series.map((s) => s.flag)).toEqual([SERIES_EXISTING, SERIES_UNUSED, SERIES_NEW]);
    expect(r.series[2]!.key).toEqual(series[2]!.key);
    expect(bytes.length).toBeLessThan(40 + 3 * 20);
  });

  it('round-trips a batch with wide timestamps, at an unaligned offset', () => {
    const w = new WalWriter();
    const rec = w.batch(series, 3, ts, vals, refs, 5, 2 ** 40);
    const shifted = Buffer.alloc(rec.length + 3);
    rec.copy(shifted, 3);
    const r = decodeWalRecord(shifted.subarray(3));
    if (r.type !== WAL_BATCH) throw new Error('type');
    expect([...r.ts]).toEqual([...ts]);
  });

  it('round-trips delete and retention records', () => {
    const w = new WalWriter();
    const d = decodeWalRecord(Buffer.from(w.delete(-1, 100, [id(1), id(2)], [true, false])));
    expect(d).toEqual({ type: WAL_DELETE, minT: -1, maxT: 100, ids: [id(1), id(2)], removed: [true, false] });
    const r = decodeWalRecord(Buffer.from(w.retention(1234, [id(9)])));
    expect(r).toEqual({ type: WAL_RETENTION, cutoff: 1234, removed: [id(9)] });
  });

  it('rejects damaged records with DATA_CORRUPTION', () => {
    const w = new WalWriter();
    const good = Buffer.from(w.batch(series, 3, ts, vals, refs, 5, 2 ** 40));
    const cases = [
      good.subarray(0, 10),
      good.subarray(0, good.length - 1),
      Buffer.from([9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ];
    const badRef = Buffer.from(good);
    badRef.writeUInt16LE(1, badRef.length - 6); // points at the unused entry
    cases.push(badRef);
    for (const c of cases) {
      expect(() => decodeWalRecord(c)).toThrow();
      try {
        decodeWalRecord(c);
      } catch (e) {
        expect(isTidemarkError(e, 'DATA_CORRUPTION')).toBe(true);
      }
    }
  });
});
