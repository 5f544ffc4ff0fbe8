/**
 * Leader balancing: moves each shard's leadership toward its preferred leader (ShardMap replicas[0]) once
 * elections have settled. Pure decision logic; the node feeds it what its local leaders see and carries
 * out the transfers it returns.
 *
 * Rules (never fight failures):
 *  - only a shard whose local replica is the leader, whose preferred leader is another voter, and that has
 *    had the same leader for at least `settleMs` is considered;
 *  - the preferred node must be recently active (heard from within the last election timeout) and fully
 *    caught up (its match index = the leader's last index);
 *  - a shard is not retried before `cooldownMs` after an attempt, and at most `maxPerRound` transfers start
 *    per round (rate limit).
 */

export interface BalanceCandidate {
  shard: number;
  /** This node (the shard's current leader). */
  self: string;
  preferred: string;
  /** When this node last saw the shard's leader change (ms, monotonic or wall clock; same as `now`). */
  leaderSince: number;
  lastIndex: number;
  /** The leader's view of the preferred node: undefined when it is not a voter. */
  preferredProgress: { match: number; recentActive: boolean } | undefined;
}

export interface BalancerOptions {
  /** A leader must be stable this long before it is moved (default 3,000 ms). */
  settleMs?: number;
  /** Minimum time between two attempts for one shard (default 10,000 ms). */
  cooldownMs?: number;
  /** Transfers started per round (default 1). */
  maxPerRound?: number;
}

export class LeaderBalancer {
  private readonly settleMs: number;
  private readonly cooldownMs: number;
  private readonly maxPerRound: number;
  private readonly lastAttempt = new Map<number, number>();

  constructor(options: BalancerOptions = {}) {
    this.settleMs = options.settleMs ?? 3_000;
    this.cooldownMs = options.cooldownMs ?? 10_000;
    this.maxPerRound = options.maxPerRound ?? 1;
  }

  /** The transfers to start now: [shard, to] pairs. Records them as attempted. */
  round(candidates: readonly BalanceCandidate[], now: number): Array<{ shard: number; to: string }> {
    const out: Array<{ shard: number; to: string }> = [];
    for (const c of candidates) {
      if (out.length >= this.maxPerRound) break;
      if (c.preferred === c.self) continue;
      if (now - c.leaderSince < this.settleMs) continue;
      const last = this.lastAttempt.get(c.shard);
      if (last !== undefined && now - last < this.cooldownMs) continue;
      const p = c.preferredProgress;
      if (p === undefined || !p.recentActive || p.match < c.lastIndex) continue;
      this.lastAttempt.set(c.shard, now);
      out.push({ shard: c.shard, to: c.preferred });
    }
    return out;
  }
}
