/** Argument checks shared by the store implementations (programming errors, not bad data: they throw). */
import { invalidArgument } from '../errors/index.js';
import { canonicalKey, type Series, validateMetric, validateTags } from '../model/index.js';
import type { SampleBatch } from './store.js';

export function checkIndex(index: number): void {
  if (!Number.isSafeInteger(index) || index < 1) {
    throw invalidArgument(
      'index_invalid',
      'index',
      `index must be a positive safe integer, got ${String(index)}`,
    );
  }
}

export function checkMeta(meta: Record<string, Uint8Array> | undefined): void {
  if (meta === undefined) return;
  if (meta === null || typeof meta !== 'object')
    throw invalidArgument('meta_invalid', 'meta', 'meta must be an object');
  for (const [k, v] of Object.entries(meta)) {
    if (k.length === 0) throw invalidArgument('meta_invalid', 'meta', 'meta keys must be non-empty');
    if (!(v instanceof Uint8Array))
      throw invalidArgument('meta_invalid', `meta.${k}`, `meta.${k} must be a Uint8Array`);
  }
}

export function checkNow(nowMs: number): void {
  if (!Number.isSafeInteger(nowMs)) {
    throw invalidArgument(
      'now_invalid',
      'nowMs',
      `nowMs must be an integer number of ms, got ${String(nowMs)}`,
    );
  }
}

/** Resolves a batch series to its canonical key, or null when it fails model validation. */
export function canonicalKeyOrNull(s: Series): Uint8Array | null {
  try {
    validateMetric(s?.metric);
    validateTags(s.tags);
    return canonicalKey(s);
  } catch {
    return null;
  }
}

/** The batch's shape (a caller bug when wrong: throws). Bad samples inside a well-formed batch are rejected, not thrown. */
export function checkBatch(batch: SampleBatch): void {
  if (
    batch === null ||
    typeof batch !== 'object' ||
    !Array.isArray(batch.series) ||
    !(batch.seriesRef instanceof Uint32Array) ||
    !(batch.timestamps instanceof Float64Array) ||
    !(batch.values instanceof Float64Array) ||
    !Number.isSafeInteger(batch.length) ||
    batch.length < 0
  ) {
    throw invalidArgument(
      'batch_invalid',
      'batch',
      'batch must be { series: Series[], seriesRef: Uint32Array, timestamps: Float64Array, values: Float64Array, length: integer >= 0 }',
    );
  }
}
