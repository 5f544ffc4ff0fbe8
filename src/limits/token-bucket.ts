/**
 * A token bucket with an injected clock: `capacity` tokens at most, refilled continuously at
 * `perMinute / 60,000` tokens per ms. Pure (no timers): the bucket is brought up to date on each call.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly perMs: number;

  constructor(
    /** Tokens gained per minute (also the burst: a full bucket holds one minute's worth). */
    readonly perMinute: number,
    private readonly now: () => number,
  ) {
    if (!Number.isFinite(perMinute) || perMinute <= 0) throw new RangeError('perMinute must be > 0');
    this.perMs = perMinute / 60_000;
    this.tokens = perMinute;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    // A clock that goes backwards (NTP step) refills nothing rather than draining the bucket.
    if (t > this.last) {
      this.tokens = Math.min(this.perMinute, this.tokens + (t - this.last) * this.perMs);
      this.last = t;
    }
  }

  /** Takes one token if there is one. */
  tryTake(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whole tokens available now. */
  available(): number {
    this.refill();
    return Math.floor(this.tokens);
  }

  /** Ms until one token is available (0 if one is). */
  retryAfterMs(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil((1 - this.tokens) / this.perMs);
  }
}
