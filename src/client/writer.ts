/**
 * A buffered writer: coalesces small writes into batches of up to `maxSamples`, sent when a batch is full
 * or `maxDelayMs` after the first buffered sample. The buffer is bounded: `write` waits (backpressure) while
 * buffered + in-flight samples would exceed `maxBufferedSamples`, so memory never grows without bound.
 */
import { TidemarkError } from '../errors/index.js';
import { mergePrepared, type Prepared, prepare, type WriteInput } from './prepare.js';

export interface WriterOptions {
  /** Most samples per batch (default 5000). */
  maxSamples: number;
  /** Longest a sample waits in the buffer before its batch is sent, in ms (default 100). */
  maxDelayMs: number;
  /** Most samples buffered or in flight before `write` waits (default 4 · maxSamples). */
  maxBufferedSamples: number;
  /** Batches sent at once (default 2). */
  maxInFlight: number;
  /** Called for each batch that failed after its retries (the error is also thrown by the next flush). */
  onError?: (err: TidemarkError) => void;
}

export interface WriterStats {
  /** Batches sent successfully. */
  batches: number;
  /** Batches that failed after their retries. */
  failedBatches: number;
  accepted: number;
  rejected: number;
}

type Send = (p: Prepared) => Promise<{ accepted: number; rejected: unknown[] }>;

export class BatchWriter {
  readonly stats: WriterStats = { batches: 0, failedBatches: 0, accepted: 0, rejected: 0 };
  private readonly options: WriterOptions;
  private pending: Prepared[] = [];
  private pendingSamples = 0;
  private inFlightSamples = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  /** The oldest pending sample is due (timer fired or flush requested). */
  private due = false;
  private waiters: (() => void)[] = [];
  private error: TidemarkError | undefined;
  private closed = false;

  /** @internal Created by TidemarkClient.writer(). */
  constructor(
    private readonly send: Send,
    options: Partial<WriterOptions>,
    private readonly onClose: () => void,
  ) {
    const maxSamples = options.maxSamples ?? 5000;
    this.options = {
      maxSamples,
      maxDelayMs: options.maxDelayMs ?? 100,
      maxBufferedSamples: Math.max(options.maxBufferedSamples ?? 4 * maxSamples, maxSamples),
      maxInFlight: Math.max(1, options.maxInFlight ?? 2),
      ...(options.onError === undefined ? {} : { onError: options.onError }),
    };
    for (const k of ['maxSamples', 'maxDelayMs', 'maxBufferedSamples'] as const) {
      const v = this.options[k];
      if (!Number.isFinite(v) || v < (k === 'maxDelayMs' ? 0 : 1)) {
        throw new TidemarkError(
          'INVALID_ARGUMENT',
          'writer_options_invalid',
          `batch.${k}: ${v} is out of range`,
          {
            field: `batch.${k}`,
          },
        );
      }
    }
  }

  /** Samples buffered, not yet sent. */
  get buffered(): number {
    return this.pendingSamples;
  }

  /**
   * Validates (INVALID_ARGUMENT naming the field; nothing buffered) and buffers samples. Resolves once they
   * are buffered, waiting while the buffer is full. Send errors surface from `flush()` / `close()`.
   */
  async write(input: WriteInput): Promise<void> {
    this.checkOpen();
    const p = prepare(input);
    if (p.samples === 0) return;
    // A write bigger than the whole buffer is let in alone, when the buffer is empty.
    while (this.used() > 0 && this.used() + p.samples > this.options.maxBufferedSamples) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      this.checkOpen();
    }
    this.pending.push(p);
    this.pendingSamples += p.samples;
    this.pump();
  }

  /** Sends everything buffered and waits for it; throws the first send error since the last flush. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.pendingSamples > 0) {
        this.due = true;
        this.pump();
      }
      if (this.inFlight.size === 0 && this.pendingSamples === 0) break;
      await Promise.race(this.inFlight);
    }
    const err = this.error;
    this.error = undefined;
    if (err !== undefined) throw err;
  }

  /** Flushes, then refuses further writes. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      this.wake();
      this.onClose();
    }
  }

  private used(): number {
    return this.pendingSamples + this.inFlightSamples;
  }

  private checkOpen(): void {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'the writer is closed');
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Sends full (or due) batches while there is room in flight; arms the delay timer for the rest. */
  private pump(): void {
    while (
      this.pendingSamples > 0 &&
      this.inFlight.size < this.options.maxInFlight &&
      (this.due || this.pendingSamples >= this.options.maxSamples)
    ) {
      this.sendBatch(this.takeBatch());
    }
    if (this.pendingSamples === 0) {
      this.due = false;
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
    } else if (this.timer === undefined && !this.due) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.due = true;
        this.pump();
      }, this.options.maxDelayMs);
    }
  }

  /** Whole writes up to maxSamples (a single larger write goes alone). */
  private takeBatch(): Prepared {
    const parts: Prepared[] = [];
    let n = 0;
    while (this.pending.length > 0) {
      const next = this.pending[0]!;
      if (parts.length > 0 && n + next.samples > this.options.maxSamples) break;
      parts.push(next);
      n += next.samples;
      this.pending.shift();
    }
    this.pendingSamples -= n;
    return mergePrepared(parts);
  }

  private sendBatch(batch: Prepared): void {
    this.inFlightSamples += batch.samples;
    const p = this.send(batch).then(
      (r) => {
        this.stats.batches++;
        this.stats.accepted += r.accepted;
        this.stats.rejected += r.rejected.length;
      },
      (e: unknown) => {
        const err =
          e instanceof TidemarkError ? e : new TidemarkError('INTERNAL', 'internal', String(e), {}, e);
        this.stats.failedBatches++;
        this.error ??= err;
        this.options.onError?.(err);
      },
    );
    const done = p.finally(() => {
      this.inFlight.delete(done);
      this.inFlightSamples -= batch.samples;
      this.wake();
      this.pump();
    });
    this.inFlight.add(done);
  }
}
