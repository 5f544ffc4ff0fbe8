/**
 * The `chunks` sub-database: sealed chunks of every series, keyed seriesId ‖ chunkStart. Keys
 * partition each series' time axis — chunk i holds samples in [key_i, key_{i+1}) — which every
 * operation here preserves (docs/format/store.md, "Chunk keys partition time").
 * All writes happen inside the store's open write transaction.
 */
import type { Database } from 'lmdb';
import { decodeChunk, encodeChunk, readChunkHeader } from '../chunk/index.js';
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS } from '../model/index.js';
import { lowerBound, upperBound } from './iterator.js';
import { chunkKey, chunkKeyEnd, chunkKeyStart, idKey } from './keys.js';

interface Entry {
  key: Buffer;
  value: Buffer;
}

export class ChunkTable {
  // Decode scratch, reused (grows to the largest chunk seen).
  private decTs: Float64Array = new Float64Array(0);
  private decVals: Float64Array = new Float64Array(0);
  // lastIn's decode scratch (a read path: kept apart from the write paths' scratch).
  private lastTs: Float64Array = new Float64Array(0);
  private lastVals: Float64Array = new Float64Array(0);

  constructor(
    private readonly db: Database<Buffer, Buffer>,
    /** Pieces written by a merge that outgrows 2 × sealSamples have sealSamples samples. */
    private readonly sealSamples: number,
  ) {}

  /** The chunk with the greatest key <= t. */
  floor(id: Uint8Array, t: number): Entry | undefined {
    for (const e of this.db.getRange({
      start: chunkKey(id, t),
      end: idKey(id),
      reverse: true,
      limit: 1,
    }) as Iterable<Entry>) {
      return e;
    }
    return undefined;
  }

  /** The chunk with the smallest key > start. */
  after(id: Uint8Array, start: number): Entry | undefined {
    for (const e of this.db.getRange({
      start: chunkKey(id, start + 1),
      end: chunkKeyEnd(id),
      limit: 1,
    }) as Iterable<Entry>) {
      return e;
    }
    return undefined;
  }

  /** Newest timestamp in the series' chunks (-Infinity when it has none). */
  maxT(id: Uint8Array): number {
    for (const e of this.db.getRange({
      start: chunkKeyEnd(id),
      end: idKey(id),
      reverse: true,
      limit: 1,
    }) as Iterable<Entry>) {
      return readChunkHeader(e.value, { verifyChecksum: false }).maxT;
    }
    return Number.NEGATIVE_INFINITY;
  }

  private decode(bytes: Uint8Array): number {
    const d = decodeChunk(
      bytes,
      this.decTs.length > 0 ? this.decTs : undefined,
      this.decVals.length > 0 ? this.decVals : undefined,
    );
    this.decTs = d.ts;
    this.decVals = d.vals;
    return d.count;
  }

  /**
   * Writes a sealed head at key ts[0]. When first applied, no chunk of the series has a key above
   * the head's first sample. During recovery, chunks written by later operations may: they are
   * dropped (redoing those operations writes them again), so they cannot overlap the new chunk.
   */
  seal(id: Uint8Array, ts: Float64Array, vals: Float64Array, count: number): void {
    const start = ts[0]!;
    this.db.putSync(chunkKey(id, start), Buffer.from(encodeChunk(ts, vals, count)));
    if (this.after(id, start) !== undefined) {
      for (const key of [
        ...(this.db.getKeys({ start: chunkKey(id, start + 1), end: chunkKeyEnd(id) }) as Iterable<Buffer>),
      ]) {
        this.db.removeSync(key);
      }
    }
  }

  /**
   * Merges sorted, distinct samples (new values win) into the chunk with the greatest key <= t;
   * samples older than the first chunk (or with no chunk left) form a new chunk. Existing chunks are
   * never re-keyed: recovery relies on a chunk never gaining samples above a key it did not start with.
   */
  merge(id: Uint8Array, ts: number[], vals: number[]): void {
    let i = 0;
    while (i < ts.length) {
      const floor = this.floor(id, ts[i]!);
      if (floor !== undefined) {
        const start = chunkKeyStart(floor.key);
        const next = this.after(id, start);
        const bound = next === undefined ? Number.POSITIVE_INFINITY : chunkKeyStart(next.key);
        let j = i;
        while (j < ts.length && ts[j]! < bound) j++;
        this.mergeInto(id, floor.value, ts, vals, i, j, start);
        i = j;
        continue;
      }
      const first = this.after(id, -1);
      const bound = first === undefined ? Number.POSITIVE_INFINITY : chunkKeyStart(first.key);
      let j = i;
      while (j < ts.length && ts[j]! < bound) j++;
      this.write(id, ts[i]!, Float64Array.from(ts.slice(i, j)), Float64Array.from(vals.slice(i, j)), j - i);
      i = j;
    }
  }

  /** Merges ts/vals[a, b) into the chunk (new values win) and writes it back at key `start`. */
  private mergeInto(
    id: Uint8Array,
    bytes: Uint8Array,
    ts: number[],
    vals: number[],
    a: number,
    b: number,
    start: number,
  ): void {
    const n = this.decode(bytes);
    const ct = this.decTs;
    const cv = this.decVals;
    const outT = new Float64Array(n + b - a);
    const outV = new Float64Array(n + b - a);
    let i = 0;
    let j = a;
    let o = 0;
    while (i < n || j < b) {
      if (j >= b || (i < n && ct[i]! < ts[j]!)) {
        outT[o] = ct[i]!;
        outV[o++] = cv[i++]!;
      } else {
        if (i < n && ct[i] === ts[j]) i++;
        outT[o] = ts[j]!;
        outV[o++] = vals[j++]!;
      }
    }
    this.write(id, start, outT, outV, o);
  }

  /** Writes samples as one chunk keyed `start`, split into sealSamples-sized pieces when too large. */
  private write(id: Uint8Array, start: number, ts: Float64Array, vals: Float64Array, n: number): void {
    if (n <= 2 * this.sealSamples) {
      this.db.putSync(chunkKey(id, start), Buffer.from(encodeChunk(ts, vals, n)));
      return;
    }
    const size = this.sealSamples;
    for (let a = 0; a < n; a += size) {
      const b = Math.min(n, a + size);
      const key = a === 0 ? start : ts[a]!;
      this.db.putSync(
        chunkKey(id, key),
        Buffer.from(encodeChunk(ts.subarray(a, b), vals.subarray(a, b), b - a)),
      );
    }
  }

  /**
   * Removes samples with lo <= t <= hi: chunks wholly inside are deleted, partly inside are rewritten
   * at the same key. Returns how many removed samples were at or above `cutoff` (the live ones).
   */
  deleteRange(id: Uint8Array, lo: number, hi: number, cutoff: number): number {
    if (hi < MIN_TIMESTAMP_MS) return 0;
    // Chunks before the one holding `lo` end before it.
    const floor = lo > MIN_TIMESTAMP_MS ? this.floor(id, Math.min(lo, MAX_TIMESTAMP_MS)) : undefined;
    const entries = [
      ...(this.db.getRange({
        start: floor === undefined ? chunkKey(id, 0) : floor.key,
        end: chunkKey(id, Math.min(hi, MAX_TIMESTAMP_MS) + 1),
      }) as Iterable<Entry>),
    ];
    let count = 0;
    for (const { key, value } of entries) {
      const h = readChunkHeader(value);
      if (h.maxT < lo) continue;
      const n = this.decode(value);
      const ts = this.decTs;
      const vs = this.decVals;
      let o = 0;
      for (let i = 0; i < n; i++) {
        const t = ts[i]!;
        if (t >= lo && t <= hi) {
          if (t >= cutoff) count++;
        } else {
          ts[o] = t;
          vs[o++] = vs[i]!;
        }
      }
      if (o === n) continue;
      if (o === 0) this.db.removeSync(key);
      else this.db.putSync(key, Buffer.from(encodeChunk(ts, vs, o)));
    }
    return count;
  }

  /**
   * Deletes the chunks wholly below `cutoff`: chunk i is, when key_{i+1} <= cutoff; the last candidate
   * is checked by its header. Returns how many.
   */
  dropExpired(id: Uint8Array, cutoff: number): number {
    const keys = [
      ...(this.db.getKeys({
        start: chunkKey(id, 0),
        end: chunkKey(id, Math.min(cutoff, MAX_TIMESTAMP_MS) + 1),
      }) as Iterable<Buffer>),
    ];
    let dropped = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      const expired =
        i + 1 < keys.length || readChunkHeader(this.db.get(key)!, { verifyChecksum: false }).maxT < cutoff;
      if (expired) {
        this.db.removeSync(key);
        dropped++;
      }
    }
    return dropped;
  }

  /** Deletes every chunk of the series. */
  dropAll(id: Uint8Array): void {
    for (const key of [
      ...(this.db.getKeys({ start: chunkKey(id, 0), end: chunkKeyEnd(id) }) as Iterable<Buffer>),
    ]) {
      this.db.removeSync(key);
    }
  }

  /**
   * The encoded chunks that may hold samples in [lo, hi] (0 <= lo <= hi), in time order, copied out of
   * LMDB; `some` says whether at least one sample really is in range.
   */
  collect(id: Uint8Array, lo: number, hi: number): { chunks: Uint8Array[]; some: boolean } {
    const chunks: Uint8Array[] = [];
    let some = false;
    // One range, newest first, from the chunk with the greatest key <= hi down to the one with the greatest
    // key <= lo (keys partition time: every older chunk ends before lo).
    for (const { key, value } of this.db.getRange({
      start: chunkKey(id, Math.min(hi, MAX_TIMESTAMP_MS)),
      end: idKey(id),
      reverse: true,
    }) as Iterable<Entry>) {
      const h = readChunkHeader(value, { verifyChecksum: false });
      if (h.maxT >= lo) {
        chunks.push(value);
        if (!some) some = (h.minT >= lo && h.minT <= hi) || h.maxT <= hi || this.hasSampleIn(value, lo, hi);
      }
      if (chunkKeyStart(key) <= lo) break;
    }
    chunks.reverse();
    return { chunks, some };
  }

  /**
   * The newest sample with lo <= t <= hi (0 <= lo <= hi) into `out`; false when there is none. Chunks are
   * read newest first from the one with the greatest key <= hi: keys partition time, so every older chunk
   * holds only older samples, and the walk stops at the first chunk that answers or ends before lo. Usually
   * one chunk is decoded (more only where deletes left a chunk with nothing at or below hi).
   */
  lastIn(id: Uint8Array, lo: number, hi: number, out: { t: number; v: number }): boolean {
    for (const { value } of this.db.getRange({
      start: chunkKey(id, Math.min(hi, MAX_TIMESTAMP_MS)),
      end: idKey(id),
      reverse: true,
    }) as Iterable<Entry>) {
      const h = readChunkHeader(value, { verifyChecksum: false });
      if (h.maxT < lo) return false;
      if (h.minT > hi) continue;
      const d = decodeChunk(value, this.lastTs, this.lastVals);
      this.lastTs = d.ts;
      this.lastVals = d.vals;
      const i = upperBound(d.ts, 0, d.count, hi) - 1; // >= 0: minT <= hi
      if (d.ts[i]! < lo) return false;
      out.t = d.ts[i]!;
      out.v = d.vals[i]!;
      return true;
    }
    return false;
  }

  private hasSampleIn(bytes: Uint8Array, lo: number, hi: number): boolean {
    const n = this.decode(bytes);
    const i = lowerBound(this.decTs, 0, n, lo);
    return i < n && this.decTs[i]! <= hi;
  }

  /** Counts over every chunk (a full scan of the headers). */
  scan(): { chunks: number; bytes: number; samples: number } {
    let chunks = 0;
    let bytes = 0;
    let samples = 0;
    for (const { value } of this.db.getRange({}) as Iterable<Entry>) {
      chunks++;
      bytes += value.length;
      samples += readChunkHeader(value, { verifyChecksum: false }).count;
    }
    return { chunks, bytes, samples };
  }
}
