/**
 * The series limits, checked on the shard leader before it proposes a batch (the one place a series is
 * about to be created, on every write path: local writes, forwards from other nodes, Kafka misroutes):
 *
 *  - maxSeriesPerMetric (cardinality): a metric may hold at most ceil(L / S) series *per shard*
 *    (S = shard count). A series hashes to one shard, so the cluster holds at most S·ceil(L/S) < L + S
 *    series of the metric; with many series (the case the limit is for) jump hashing spreads them evenly
 *    and a metric is refused at close to L. Each shard decides alone, from its own store: deterministic
 *    for a given store state, no cross-node coordination.
 *  - maxNewSeriesPerMinute: a per-node token bucket (burst = one minute's worth); a series takes a token
 *    the first time this node, as shard leader, sees it missing from the shard's store. Leaders are spread
 *    over the nodes, so the cluster-wide rate is up to N times the setting.
 *
 * Which series a shard holds comes from the store, read once per metric (`seed`) and then kept up to date
 * with the series this leader admits. Approximations (documented in docs/security.md):
 *  - admitted series are counted when admitted, before their proposal commits: a failed proposal leaves
 *    them counted until the metric is re-read (at most `reseedAfterMs`, and on any leadership change);
 *  - series deleted meanwhile are still counted until the re-read;
 *  - a store series without samples (all deleted or past retention) does not count.
 * A rejected sample is reported per sample (reason series_per_metric_limit / new_series_rate_limited);
 * the other samples of the batch are written.
 */
import { canonicalKeyFast } from '../ingest/batch.js';
import { seriesIdHex, seriesIdOfKey } from '../model/index.js';
import type { SampleBatch } from '../storage/store.js';
import { NEW_SERIES_RATE_LIMITED, SERIES_PER_METRIC_LIMIT } from './errors.js';
import type { LimitCounter } from './metrics.js';
import { TokenBucket } from './token-bucket.js';

export interface SeriesLimiterOptions {
  /** Series first seen per minute per node; 0 = unlimited. */
  maxNewSeriesPerMinute: number;
  /** Series per metric in the cluster; 0 = unlimited (enforced per shard as ceil(L / shards)). */
  maxSeriesPerMetric: number;
  shards: number;
  /** Ids (seriesIdHex) of the series of `metric` in shard `shard`'s store. May throw (e.g. UNAVAILABLE). */
  seed: (shard: number, metric: string) => Iterable<string>;
  /** Clock (ms). Default Date.now. */
  now?: () => number;
  /** A metric's series are re-read from the store this long after the last read (ms, default 600,000). */
  reseedAfterMs?: number;
}

export interface RejectedByLimit {
  /** Index of the sample in the batch given to admit(). */
  index: number;
  reason: typeof NEW_SERIES_RATE_LIMITED | typeof SERIES_PER_METRIC_LIMIT;
}

/** What admit() let through: a batch of the admitted samples and each one's index in the original. */
export interface Admission {
  batch: SampleBatch;
  /** origin[i] = index in the original batch of admitted sample i. */
  origin: Uint32Array;
  rejected: RejectedByLimit[];
  /** Samples rejected per limit (for the rejection counter). */
  rejectedNewSeries: number;
  rejectedPerMetric: number;
}

interface MetricState {
  ids: Set<string>;
  seededAt: number;
}

interface ShardState {
  term: number;
  metrics: Map<string, MetricState>;
}

export class SeriesLimiter {
  readonly perShardCap: number;
  private readonly bucket: TokenBucket | undefined;
  private readonly shards = new Map<number, ShardState>();
  private readonly now: () => number;
  private readonly reseedAfterMs: number;

  constructor(private readonly options: SeriesLimiterOptions) {
    this.now = options.now ?? Date.now;
    this.reseedAfterMs = options.reseedAfterMs ?? 600_000;
    this.perShardCap =
      options.maxSeriesPerMetric > 0
        ? Math.ceil(options.maxSeriesPerMetric / Math.max(1, options.shards))
        : 0;
    this.bucket =
      options.maxNewSeriesPerMinute > 0
        ? new TokenBucket(options.maxNewSeriesPerMinute, this.now)
        : undefined;
  }

  /** True when neither limit is set (admit() then returns undefined at once). */
  get disabled(): boolean {
    return this.perShardCap === 0 && this.bucket === undefined;
  }

  /** Ms until the next new series may be admitted (0 when the rate is not limited or a token is there). */
  retryAfterMs(): number {
    return this.bucket?.retryAfterMs() ?? 0;
  }

  /**
   * Forgets what shard `shard` holds (call when this node stops leading it; a term change does it too).
   */
  forget(shard: number): void {
    this.shards.delete(shard);
  }

  /**
   * Checks the batch for shard `shard` (led by this node in `term`). Returns undefined when every sample
   * is admitted (the common case, no copy), else the admitted part and the rejections.
   */
  admit(shard: number, term: number, batch: SampleBatch): Admission | undefined {
    if (this.disabled || batch.length === 0) return undefined;
    let st = this.shards.get(shard);
    if (st === undefined || st.term !== term) {
      st = { term, metrics: new Map() };
      this.shards.set(shard, st);
    }
    const now = this.now();
    const nSeries = batch.series.length;
    // 0 = admitted, 1 = over the metric's cap, 2 = no token for a new series.
    let verdict: Uint8Array | undefined;
    const seenInBatch = new Map<string, number>();
    for (let j = 0; j < nSeries; j++) {
      const s = batch.series[j]!;
      let m = st.metrics.get(s.metric);
      if (m === undefined || now - m.seededAt >= this.reseedAfterMs) {
        m = { ids: new Set(this.options.seed(shard, s.metric)), seededAt: now };
        st.metrics.set(s.metric, m);
      }
      const hex = seriesIdHex(seriesIdOfKey(canonicalKeyFast(s)));
      // The same series twice in one batch (a forwarded batch need not be deduplicated): one verdict.
      const prior = seenInBatch.get(hex);
      if (prior !== undefined) {
        if (prior !== 0) {
          verdict ??= new Uint8Array(nSeries);
          verdict[j] = prior;
        }
        continue;
      }
      let v = 0;
      if (!m.ids.has(hex)) {
        if (this.perShardCap > 0 && m.ids.size >= this.perShardCap) v = 1;
        else if (this.bucket !== undefined && !this.bucket.tryTake()) v = 2;
        else m.ids.add(hex);
      }
      seenInBatch.set(hex, v);
      if (v !== 0) {
        verdict ??= new Uint8Array(nSeries);
        verdict[j] = v;
      }
    }
    if (verdict === undefined) return undefined;
    return split(batch, verdict);
  }
}

function split(batch: SampleBatch, verdict: Uint8Array): Admission {
  let kept = 0;
  for (let i = 0; i < batch.length; i++) if (verdict[batch.seriesRef[i]!] === 0) kept++;
  const out: SampleBatch = {
    series: batch.series,
    seriesRef: new Uint32Array(kept),
    timestamps: new Float64Array(kept),
    values: new Float64Array(kept),
    length: kept,
  };
  const origin = new Uint32Array(kept);
  const rejected: RejectedByLimit[] = [];
  let rejectedNewSeries = 0;
  let rejectedPerMetric = 0;
  let k = 0;
  for (let i = 0; i < batch.length; i++) {
    const ref = batch.seriesRef[i]!;
    const v = verdict[ref];
    if (v === 0) {
      out.seriesRef[k] = ref;
      out.timestamps[k] = batch.timestamps[i]!;
      out.values[k] = batch.values[i]!;
      origin[k++] = i;
    } else if (v === 1) {
      rejected.push({ index: i, reason: SERIES_PER_METRIC_LIMIT });
      rejectedPerMetric++;
    } else {
      rejected.push({ index: i, reason: NEW_SERIES_RATE_LIMITED });
      rejectedNewSeries++;
    }
  }
  return { batch: out, origin, rejected, rejectedNewSeries, rejectedPerMetric };
}

/**
 * Merges the store's answer for an admitted batch with the limiter's rejections: indexes back in the
 * original batch, sorted.
 */
export function mergeAdmission(
  adm: Admission,
  written: { accepted: number; rejected: readonly { index: number; reason: string }[] },
): { accepted: number; rejected: { index: number; reason: string }[] } {
  const rejected: { index: number; reason: string }[] = adm.rejected.map((r) => ({
    index: r.index,
    reason: r.reason,
  }));
  for (const r of written.rejected) rejected.push({ index: adm.origin[r.index]!, reason: r.reason });
  rejected.sort((a, b) => a.index - b.index);
  return { accepted: written.accepted, rejected };
}

/**
 * The ids (seriesIdHex) of the series of `metric` that hold samples in `store`: the limiter's view of a
 * shard store through its public select (the store has no count per metric; docs/security.md). Costs one
 * postings scan of the metric plus a snapshot per series, once per metric per leadership/re-read.
 */
export function seriesIdsOfMetric(
  store: { select(request: { metric: string; matchers: [] }): readonly { id: Uint8Array }[] },
  metric: string,
): string[] {
  return store.select({ metric, matchers: [] }).map((d) => seriesIdHex(d.id));
}

/**
 * The shard leader's write with the series limits applied: admits `batch` (see SeriesLimiter.admit),
 * proposes the admitted part through `write`, and answers with indexes of the original batch. Without a
 * limiter, or when all is admitted, it is just `write(batch)`.
 */
export async function writeAdmitted<
  R extends { accepted: number; rejected: { index: number; reason: string }[] },
>(
  limiter: SeriesLimiter | undefined,
  counter: LimitCounter | undefined,
  shard: number,
  /** The leader's current term (called only when a limiter is set). */
  term: () => number,
  batch: SampleBatch,
  write: (b: SampleBatch) => Promise<R>,
): Promise<{ accepted: number; rejected: { index: number; reason: string }[] }> {
  const adm = limiter?.admit(shard, term(), batch);
  if (adm === undefined) return write(batch);
  counter?.inc('maxNewSeriesPerMinute', adm.rejectedNewSeries);
  counter?.inc('maxSeriesPerMetric', adm.rejectedPerMetric);
  const written = adm.batch.length === 0 ? { accepted: 0, rejected: [] } : await write(adm.batch);
  return mergeAdmission(adm, written);
}
