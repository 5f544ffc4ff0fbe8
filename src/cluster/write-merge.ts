/**
 * Merging a shard's writes into one Raft entry. Clients split their writes by shard, so a leader under load
 * gets many small writes per shard (a 1,000-sample SDK batch of 10 series is ~100 samples per shard), and
 * every entry costs the same fixed work on every replica: encode, log record, append message, decode,
 * apply call. Writes that arrive while the shard's Raft loop is busy would wait for its next cycle anyway;
 * gathered until the end of the event-loop turn, they leave as one entry, and each caller still gets its
 * own result (accepted count and rejected samples by its own indices) or the entry's error.
 *
 * Applying the merged batch is applying its parts one after another, in order: the store decides per
 * sample, in batch order, against the state the earlier samples left (docs/format/entry.md).
 */
import { canonicalKeyFast } from '../ingest/batch.js';
import { internedKey, keyString, type Series } from '../model/index.js';
import type { ApplyResult, SampleBatch } from '../storage/store.js';

/** Most samples one merged entry carries; a write at least this large is proposed alone. */
export const MERGE_MAX_SAMPLES = 16_384;

interface Queued {
  batch: SampleBatch;
  resolve: (r: ApplyResult) => void;
  reject: (err: unknown) => void;
}

export class WriteMerger {
  private queue: Queued[] = [];
  private samples = 0;
  private scheduled = false;
  /** Entries proposed for merged writes, and the writes they carried (for tests and metrics). */
  mergedEntries = 0;
  mergedWrites = 0;

  constructor(
    /** Proposes one batch as one entry; resolves with the store's result once applied. */
    private readonly propose: (batch: SampleBatch) => Promise<ApplyResult>,
    private readonly maxSamples = MERGE_MAX_SAMPLES,
  ) {}

  /**
   * Queues `batch` for the next merged entry: proposed by flush(), which the shard's Raft driver calls at
   * the start of its next cycle (DriverOptions.beforeCycle), or at the end of this event-loop turn,
   * whichever comes first.
   */
  add(batch: SampleBatch): Promise<ApplyResult> {
    // A batch whose arrays are shorter than its length is proposed as it is: the store rejects the
    // missing samples by index, which a merged batch could not reproduce.
    if (
      batch.length >= this.maxSamples ||
      batch.seriesRef.length < batch.length ||
      batch.timestamps.length < batch.length ||
      batch.values.length < batch.length
    ) {
      return this.proposeSafely(batch);
    }
    if (this.samples + batch.length > this.maxSamples) this.flush();
    const p = new Promise<ApplyResult>((resolve, reject) => this.queue.push({ batch, resolve, reject }));
    this.samples += batch.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    }
    return p;
  }

  /** Proposes what is queued now. */
  flush(): void {
    const q = this.queue;
    if (q.length === 0) return;
    this.queue = [];
    this.samples = 0;
    if (q.length === 1) {
      const only = q[0]!;
      this.proposeSafely(only.batch).then(only.resolve, only.reject);
      return;
    }
    const { batch, offsets } = concatBatches(q.map((w) => w.batch));
    let merged: Promise<ApplyResult>;
    try {
      merged = this.propose(batch);
    } catch {
      // The merged batch could not be proposed (e.g. refused by the entry encoder): each on its own, so
      // one bad write does not fail the others.
      for (const w of q) this.proposeSafely(w.batch).then(w.resolve, w.reject);
      return;
    }
    this.mergedEntries++;
    this.mergedWrites += q.length;
    merged.then(
      (r) => {
        const parts = splitApplyResult(r, offsets);
        for (let k = 0; k < q.length; k++) q[k]!.resolve(parts[k]!);
      },
      (err: unknown) => {
        for (const w of q) w.reject(err);
      },
    );
  }

  private proposeSafely(batch: SampleBatch): Promise<ApplyResult> {
    try {
      return this.propose(batch);
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

/**
 * The batches one after another as one batch (each series listed once) and where each starts:
 * offsets[k] is batch k's first sample; offsets[batches.length] is the total.
 */
export function concatBatches(batches: readonly SampleBatch[]): { batch: SampleBatch; offsets: number[] } {
  let n = 0;
  const offsets = [0];
  for (const b of batches) {
    n += b.length;
    offsets.push(n);
  }
  const series: Series[] = [];
  // The entry encoder refuses a series listed twice: equal series share one ref. Interned series (what the
  // decoders hand out) are one object per key, so identity is enough and no key is computed for them; other
  // series are compared by key. (Two interned objects of one key, after an eviction, make the encoder
  // refuse the merged batch: WriteMerger then proposes each write alone.)
  const byObject = new Map<Series, number>();
  const byKey = new Map<string, number>();
  const seriesRef = new Uint32Array(n);
  const timestamps = new Float64Array(n);
  const values = new Float64Array(n);
  let at = 0;
  for (const b of batches) {
    const map = new Uint32Array(b.series.length);
    for (let j = 0; j < b.series.length; j++) {
      const s = b.series[j]!;
      let r = byObject.get(s);
      if (r === undefined) {
        const k = keyOf(s);
        r = k === undefined ? undefined : byKey.get(k);
        if (r === undefined) {
          r = series.length;
          series.push(s);
          if (k !== undefined) byKey.set(k, r);
        }
        byObject.set(s, r);
      }
      map[j] = r;
    }
    for (let i = 0; i < b.length; i++) {
      const ref = b.seriesRef[i]!;
      // An out-of-range ref stays out of range (the store rejects that sample as invalid_series).
      seriesRef[at + i] = ref < map.length ? map[ref]! : 0xffffffff;
    }
    timestamps.set(b.timestamps.subarray(0, b.length), at);
    values.set(b.values.subarray(0, b.length), at);
    at += b.length;
  }
  return { batch: { series, seriesRef, timestamps, values, length: n }, offsets };
}

/**
 * The canonical key of a series that is not interned, as a string; undefined for an interned series (its
 * identity is its key) and for one that does not validate (left as it is).
 */
function keyOf(s: Series): string | undefined {
  if (internedKey(s) !== undefined) return undefined;
  try {
    return keyString(canonicalKeyFast(s));
  } catch {
    return undefined;
  }
}

/** A merged entry's result as each part's own (rejected indices relative to the part). */
export function splitApplyResult(r: ApplyResult, offsets: readonly number[]): ApplyResult[] {
  const parts: ApplyResult[] = [];
  let j = 0;
  const rejected = [...r.rejected].sort((a, b) => a.index - b.index);
  for (let k = 0; k + 1 < offsets.length; k++) {
    const lo = offsets[k]!;
    const hi = offsets[k + 1]!;
    const mine: ApplyResult['rejected'] = [];
    while (j < rejected.length && rejected[j]!.index < hi) {
      const x = rejected[j++]!;
      if (x.index >= lo) mine.push({ ...x, index: x.index - lo });
    }
    parts.push({
      ...r,
      accepted: r.duplicate ? 0 : hi - lo - mine.length,
      rejected: mine,
    });
  }
  return parts;
}
