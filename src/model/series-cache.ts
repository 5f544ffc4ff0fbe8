/**
 * A bounded map from a series' canonical key to what was derived from it (the decoded, validated Series; a
 * store's series state). Hot write paths see the same series in batch after batch; the cache turns the
 * re-validation, re-canonicalization and re-hashing of each one into one lookup. Memory is bounded by
 * `capacity` entries: when full, the oldest inserted entry goes (FIFO — no bookkeeping on hits, and a
 * working set that fits is never evicted).
 */
export class BoundedCache<K, V> {
  private readonly map = new Map<K, V>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`cache capacity must be a positive integer, got ${capacity}`);
    }
  }

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    if (this.map.size >= this.capacity && !this.map.has(key)) {
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
    this.map.set(key, value);
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}
