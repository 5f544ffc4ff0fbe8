/**
 * Workloads: writers of uniquely identifiable samples and readers of whole series, all through the SDK and
 * the client-port proxies, every operation recorded in the history. A writer writes one sample per
 * operation to one open series of its own shard (writer p writes shard p mod S; series `w<p>-<k>`,
 * replaced after `seriesWrites` writes so each series' history stays small for Porcupine); timestamp =
 * run base + position in the series; value unique in the run.
 * The SDK retries within each operation's deadline as applications let it (or, with `sdkRetries` off, makes
 * one request per operation).
 */
import { TidemarkClient } from '../../src/client/index.js';
import { makeSeries, seriesId, shardOf } from '../../src/model/index.js';
import type { Rng } from '../../src/util/random.js';
import { CHAOS_METRIC, type HistoryRecorder } from './history.js';

export interface WorkloadOptions {
  endpoints: string[];
  shards: number;
  /** Writer loops; writer p writes to shard p mod shards (use a multiple of shards). */
  writers: number;
  readers: number;
  /** Writes per series before a writer moves to a new one. */
  seriesWrites: number;
  /** Per-operation deadline (ms). */
  opTimeoutMs: number;
  /**
   * Let the SDK retry within the deadline (avoiding an address that failed, following leader hints), as
   * applications do; off: one request per operation, so `outcome: none` refusals count as failed.
   */
  sdkRetries: boolean;
  /** Pause between a process's operations (ms). */
  writePauseMs: number;
  readPauseMs: number;
  /** First timestamp (ms); series k's sample i has timestamp baseMs + i. */
  baseMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Workload {
  private stopped = false;
  private loops: Promise<void>[] = [];
  private clients: TidemarkClient[] = [];
  /** Series with at least one invoked write (readers pick from the most recent). */
  private readonly active: string[] = [];
  private readonly shardOfSeries = new Map<string, number>();

  constructor(
    private readonly options: WorkloadOptions,
    private readonly recorder: HistoryRecorder,
    private readonly rng: Rng,
  ) {}

  async start(): Promise<void> {
    const o = this.options;
    const connect = (rng: Rng) =>
      TidemarkClient.connect({
        endpoints: o.endpoints,
        deadlineMs: o.opTimeoutMs,
        retry: o.sdkRetries ? { initialMs: 20, maxMs: 200 } : { maxAttempts: 1 },
        shardMapRefreshMs: 1000,
        random: rng.fn(),
      });
    for (let p = 0; p < o.writers; p++) {
      const c = await connect(this.rng.fork());
      this.clients.push(c);
      this.loops.push(this.writer(p, c));
    }
    for (let r = 0; r < o.readers; r++) {
      const c = await connect(this.rng.fork());
      this.clients.push(c);
      this.loops.push(this.reader(o.writers + r, c, this.rng.fork()));
    }
  }

  private shard(series: string): number {
    let s = this.shardOfSeries.get(series);
    if (s === undefined) {
      s = shardOf(seriesId(makeSeries(CHAOS_METRIC, { s: series })), this.options.shards);
      this.shardOfSeries.set(series, s);
    }
    return s;
  }

  /** The next series name of `process` (from `k` on) that lands on `shard`. */
  private seriesFor(process: number, shard: number, from: { k: number }): string {
    for (;;) {
      const name = `w${process}-${from.k++}`;
      if (this.shard(name) === shard) return name;
    }
  }

  private async writer(process: number, client: TidemarkClient): Promise<void> {
    const o = this.options;
    // Each writer stays on one shard, so a shard that cannot take writes stalls only its own writers and
    // the gaps between acknowledged writes per shard measure that shard's unavailability.
    const shard = process % o.shards;
    const names = { k: 0 };
    let series = '';
    let count = o.seriesWrites;
    for (let n = 0; !this.stopped; n++) {
      if (count === o.seriesWrites) {
        series = this.seriesFor(process, shard, names);
        count = 0;
        this.active.push(series);
      }
      const t = o.baseMs + count++;
      // Unique in the run, with a fraction so the value codecs are exercised beyond integers.
      const v = process * 1_000_000 + n + 0.25;
      const op = this.recorder.invokeWrite(process, series, shard, t, v);
      try {
        await client.write(
          { series: { metric: CHAOS_METRIC, tags: { s: series } }, timestamps: [t], values: [v] },
          { deadlineMs: o.opTimeoutMs },
        );
        this.recorder.ok(op);
      } catch (err) {
        this.recorder.fail(op, err, !o.sdkRetries);
      }
      await sleep(o.writePauseMs);
    }
  }

  private async reader(process: number, client: TidemarkClient, rng: Rng): Promise<void> {
    const o = this.options;
    while (!this.stopped) {
      if (this.active.length === 0) {
        await sleep(o.readPauseMs);
        continue;
      }
      // Mostly series being written now (where reads race writes), sometimes an older one.
      const recent = this.active.slice(-o.writers);
      const series = rng.chance(0.8) ? rng.pick(recent) : rng.pick(this.active);
      const op = this.recorder.invokeRead(process, series);
      try {
        const samples: [number, number][] = [];
        for await (const s of client.query(
          {
            metric: CHAOS_METRIC,
            matchers: [{ name: 's', op: '=', value: series }],
            start: o.baseMs,
            end: o.baseMs + o.seriesWrites,
          },
          { deadlineMs: o.opTimeoutMs },
        )) {
          for (let j = 0; j < s.timestamps.length; j++) samples.push([s.timestamps[j]!, s.values[j]!]);
        }
        this.recorder.ok(op, samples);
      } catch (err) {
        this.recorder.fail(op, err);
      }
      await sleep(o.readPauseMs);
    }
  }

  /** Stops the loops and waits for in-flight operations to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((c) => c.close().catch(() => undefined)));
  }
}
