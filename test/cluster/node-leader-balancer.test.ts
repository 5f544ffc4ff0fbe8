import { describe, expect, it } from 'vitest';
import { type BalanceCandidate, LeaderBalancer } from '../../src/cluster/leader-balancer.js';

const c = (over: Partial<BalanceCandidate> = {}): BalanceCandidate => ({
  shard: 0,
  self: 'a',
  preferred: 'b',
  leaderSince: 0,
  lastIndex: 10,
  preferredProgress: { match: 10, recentActive: true },
  ...over,
});

describe('LeaderBalancer', () => {
  it('moves a settled leadership to a healthy, caught-up preferred leader', () => {
    const b = new LeaderBalancer({ settleMs: 100, cooldownMs: 1000 });
    expect(b.round([c()], 100)).toEqual([{ shard: 0, to: 'b' }]);
  });

  it('never fights failures: waits for elections to settle, skips inactive, lagging or non-voter targets', () => {
    const b = new LeaderBalancer({ settleMs: 100, cooldownMs: 1000 });
    expect(b.round([c({ leaderSince: 50 })], 100)).toEqual([]);
    expect(b.round([c({ preferredProgress: { match: 10, recentActive: false } })], 100)).toEqual([]);
    expect(b.round([c({ preferredProgress: { match: 9, recentActive: true } })], 100)).toEqual([]);
    expect(b.round([c({ preferredProgress: undefined })], 100)).toEqual([]);
    expect(b.round([c({ preferred: 'a' })], 100)).toEqual([]);
  });

  it('rate-limits: one transfer per round, a cooldown per shard', () => {
    const b = new LeaderBalancer({ settleMs: 0, cooldownMs: 1000, maxPerRound: 1 });
    const both = [c({ shard: 0 }), c({ shard: 1 })];
    expect(b.round(both, 0)).toEqual([{ shard: 0, to: 'b' }]);
    expect(b.round(both, 10)).toEqual([{ shard: 1, to: 'b' }]);
    expect(b.round(both, 20)).toEqual([]);
    expect(b.round(both, 1000)).toEqual([{ shard: 0, to: 'b' }]);
  });
});
