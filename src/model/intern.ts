/**
 * Interned series: one frozen, validated Series object per distinct series the write path saw recently, with
 * its canonical key (and, once asked, its id) attached. The same series recurs request after request, so
 * the write path decodes and validates it once and then hands the same object from request decoding through
 * shard routing, entry encoding and apply: each stage reads the key or id instead of recomputing it, and the
 * store's per-object cache (LmdbShardStore.resolveSeries) hits. Bounded (oldest evicted); an evicted series
 * is interned again when it recurs, as a new object — equal by key, which is what every consumer compares.
 */

import { type Series, type SeriesId, seriesIdOfKey } from './series.js';
import { BoundedCache } from './series-cache.js';

/** Most series interned per process (a few MB). */
export const INTERNED_SERIES_CAPACITY = 65_536;

interface Canonical {
  /** The canonical key bytes (owned: never a view into a request or entry buffer). */
  readonly key: Uint8Array;
  id: SeriesId | undefined;
}

const canonical = new WeakMap<Series, Canonical>();
let byKey = new BoundedCache<string, Series>(INTERNED_SERIES_CAPACITY);

/**
 * The interned Series whose canonical key is `key` (`k`: the same bytes as a latin1 string). On a miss,
 * `make()` must return the validated Series of exactly that key; it is frozen and interned. `key` is
 * copied when kept, so it may be a view.
 */
export function intern(key: Uint8Array, k: string, make: () => Series): Series {
  const hit = byKey.get(k);
  if (hit !== undefined) return hit;
  const s = make();
  Object.freeze(s.tags);
  Object.freeze(s);
  canonical.set(s, { key: key.slice(), id: undefined });
  byKey.set(k, s);
  return s;
}

/** A canonical key as the string `intern` files it under (its bytes as latin1: one char per byte). */
export function keyString(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.length).toString('latin1');
}

/** The canonical key of an interned series; undefined for any other object (validate it first). */
export function internedKey(s: Series): Uint8Array | undefined {
  return canonical.get(s)?.key;
}

/** The id of an interned series (computed once); undefined for any other object. */
export function internedId(s: Series): SeriesId | undefined {
  const c = canonical.get(s);
  if (c === undefined) return undefined;
  c.id ??= seriesIdOfKey(c.key);
  return c.id;
}

/** How many series are interned now, and the bound. */
export function internedSeries(): { size: number; capacity: number } {
  return { size: byKey.size, capacity: byKey.capacity };
}

/** Forgets every interned series and sets a new bound (tests). */
export function resetInternedSeries(capacity = INTERNED_SERIES_CAPACITY): void {
  byKey = new BoundedCache<string, Series>(capacity);
}
