/**
 * Head buffers by power-of-two size class (8 … sealSamples samples), carved from shared slabs and reused.
 *
 * A head grows by doubling until it seals; with many series that each get a few samples at a time, every
 * growth step was two fresh Float64Arrays: off-heap allocations that V8 counts as external memory, which
 * drives extra garbage collections (a 3-node cluster bench spent ~5% of its CPU in Head.grow and more in GC).
 * Here a step takes a free block of the next class and gives the old one back; a slab holds many blocks, so
 * allocation happens once per slab, not once per step.
 *
 * One pool per store: blocks are never shared between stores, and a closed store's slabs go with it. A block
 * must not be used after it is given back; the store never hands head buffers out (reads copy them).
 */

const MIN_CLASS = 3; // 8 samples
/** Elements per slab (at least one block): 64 KiB of doubles. */
const SLAB_ELEMENTS = 8192;

export class HeadPool {
  /** Free blocks per size class (index: log2 of the block length). */
  private readonly free: Float64Array[][] = [];
  /** Elements in slabs (capacity held by this pool, free or in use). */
  allocated = 0;

  /** A block of at least `min` samples (a power of two, at least 8); its contents are unspecified. */
  take(min: number): Float64Array {
    const c = classOf(min);
    const list = this.free[c];
    const hit = list?.pop();
    if (hit !== undefined) return hit;
    const size = 1 << c;
    if (size >= SLAB_ELEMENTS) {
      this.allocated += size;
      return new Float64Array(size);
    }
    const slab = new Float64Array(SLAB_ELEMENTS);
    this.allocated += SLAB_ELEMENTS;
    const blocks = this.free[c] ?? [];
    this.free[c] = blocks;
    for (let at = size; at < SLAB_ELEMENTS; at += size) blocks.push(slab.subarray(at, at + size));
    return slab.subarray(0, size);
  }

  /** Returns a block from take(). */
  give(block: Float64Array): void {
    const c = classOf(block.length);
    if (1 << c !== block.length) return; // not one of ours (e.g. the shared empty array)
    const list = this.free[c];
    if (list === undefined) this.free[c] = [block];
    else list.push(block);
  }
}

/** log2 of the smallest class holding `n` samples. */
function classOf(n: number): number {
  if (n <= 1 << MIN_CLASS) return MIN_CLASS;
  return 32 - Math.clz32(n - 1);
}
