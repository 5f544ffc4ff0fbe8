/**
 * The `series` and `postings` sub-databases: series id → canonical key, and the inverted index
 * (`'m' metric 0xff id`, `'t' name 0xff value 0xff id`, empty values). Writes happen inside the store's
 * open write transaction.
 */
import type { Database } from 'lmdb';
import { SERIES_ID_BYTES, type Series } from '../model/index.js';
import {
  decodeUtf8,
  idKey,
  metricPrefix,
  POSTING_METRIC,
  POSTING_TAG,
  prefixEnd,
  SEP,
  tagPrefix,
  withId,
} from './keys.js';
import type { CompiledSelect } from './matchers.js';

const EMPTY = Buffer.alloc(0);

export class PostingsIndex {
  constructor(
    private readonly seriesDb: Database<Buffer, Buffer>,
    private readonly postingsDb: Database<Buffer, Buffer>,
  ) {}

  /** Adds a series (idempotent). */
  add(id: Uint8Array, key: Uint8Array, series: Series): void {
    this.seriesDb.putSync(idKey(id), Buffer.from(key));
    this.postingsDb.putSync(withId(metricPrefix(series.metric), id), EMPTY);
    for (const [name, value] of Object.entries(series.tags)) {
      this.postingsDb.putSync(withId(tagPrefix(name, value), id), EMPTY);
    }
  }

  /** Removes a series (idempotent). */
  remove(id: Uint8Array, series: Series): void {
    this.seriesDb.removeSync(idKey(id));
    this.postingsDb.removeSync(withId(metricPrefix(series.metric), id));
    for (const [name, value] of Object.entries(series.tags)) {
      this.postingsDb.removeSync(withId(tagPrefix(name, value), id));
    }
  }

  private ids(prefix: Buffer): string[] {
    const out: string[] = [];
    for (const key of this.postingsDb.getKeys({
      start: prefix,
      end: prefixEnd(prefix),
    }) as Iterable<Buffer>) {
      if (key.length === prefix.length + SERIES_ID_BYTES) out.push(key.toString('hex', prefix.length));
    }
    return out;
  }

  /**
   * Candidate series ids (hex, sorted) for a selection: one postings list — the first `=` matcher
   * with a value (usually the most selective), else the metric's. The caller checks the metric and
   * every matcher against the labels.
   */
  candidates(sel: CompiledSelect): string[] {
    const eq = sel.matchers.find((m) => m.op === '=' && m.value !== '');
    return this.ids(eq === undefined ? metricPrefix(sel.metric) : tagPrefix(eq.name, eq.value)).sort();
  }

  /** Distinct strings after `prefix` up to the next 0xff, by skip-scanning the postings keys. */
  private distinct(prefix: Buffer): string[] {
    const out: string[] = [];
    let start: Buffer = prefix;
    // Names and values never contain 0xff, so prefix ‖ 0xff is past every key under the prefix.
    const end = Buffer.concat([prefix, Buffer.from([0xff])]);
    for (;;) {
      let found: Buffer | undefined;
      for (const key of this.postingsDb.getKeys({ start, end, limit: 1 }) as Iterable<Buffer>) found = key;
      if (found === undefined) break;
      const sep = found.indexOf(SEP, prefix.length);
      if (sep < 0) break;
      out.push(decodeUtf8(found.subarray(prefix.length, sep)));
      // Skip every key of this name/value: the rest is an 8-byte id (or a value then an id), so
      // 9 × 0xff sorts after all of them.
      start = prefixEnd(found.subarray(0, sep + 1));
    }
    return out.sort();
  }

  metricNames(): string[] {
    return this.distinct(Buffer.from([POSTING_METRIC]));
  }

  labelNames(): string[] {
    return this.distinct(Buffer.from([POSTING_TAG]));
  }

  labelValues(name: string): string[] {
    return this.distinct(tagPrefix(name));
  }
}
