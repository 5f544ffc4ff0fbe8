import { afterEach, describe, expect, it } from 'vitest';
import { isTidemarkError, type TidemarkError } from '../../src/errors/errors.js';
import { type DriverTimers, RaftDriver } from '../../src/raft/driver.js';
import { MemoryLogStorage } from '../../src/raft/storage-memory.js';
import { MemoryNetwork } from '../../src/raft/transport-memory.js';
import { ConfChangeType, type Entry, type StateMachine, StateRole } from '../../src/raft/types.js';
import { enc, RecordingStateMachine, soloDriver, TestCluster, waitFor } from './fixtures/driver-cluster.js';

const dec = new TextDecoder();

/** A started one-voter driver (fast ticks) over memory storage, once it leads. */
async function soloLeader(sm: StateMachine, compactThreshold: number) {
  const storage = new MemoryLogStorage({ conf: { voters: ['solo'], learners: [] } });
  const solo = soloDriver(storage, sm, { heartbeatTick: 1, compactThreshold });
  await solo.start();
  await waitFor(() => solo.status().role === StateRole.Leader, 5000, 'solo to lead');
  return { solo, storage };
}

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function rejection(p: Promise<unknown>): Promise<TidemarkError> {
  try {
    await p;
  } catch (err) {
    expect(isTidemarkError(err), String(err)).toBe(true);
    return err as TidemarkError;
  }
  throw new Error('expected a rejection');
}

for (const storage of ['memory', 'lmdb'] as const) {
  describe(`RaftDriver (3 nodes, ${storage} storage)`, () => {
    it('commits and applies proposals on all nodes', async () => {
      cluster = await new TestCluster({ storage }).start();
      const leader = await cluster.waitLeader();
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => leader.driver.propose(enc.encode(`cmd-${i}`))),
      );
      // Resolved with the state machine's apply result, in proposal order.
      const rs = results as Array<{ index: number; count: number }>;
      expect(rs.map((r) => r.count)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      for (let i = 1; i < rs.length; i++) expect(rs[i].index).toBe(rs[i - 1].index + 1);
      const want = Array.from({ length: 200 }, (_, i) => `cmd-${i}`);
      expect(leader.sm.log).toEqual(want);
      await waitFor(
        () => cluster!.running().every((m) => m.sm.log.length === 200),
        5000,
        'followers to apply',
      );
      for (const m of cluster.running()) expect(m.sm.log).toEqual(want);
      // Batching: far fewer Readys than proposals on the leader.
      expect(leader.driver.status().stats.readies).toBeLessThan(200);
    });

    it('elects a new leader when the leader stops, and keeps committing', async () => {
      cluster = await new TestCluster({ storage }).start();
      const first = await cluster.waitLeader();
      await first.driver.propose(enc.encode('before'));
      await cluster.stopNode(first.id);
      const second = await cluster.waitLeader();
      expect(second.id).not.toBe(first.id);
      await second.driver.propose(enc.encode('after'));
      for (const m of cluster.running()) {
        await waitFor(() => m.sm.log.includes('after'), 10_000, `${m.id} to apply`);
        expect(m.sm.log).toEqual(['before', 'after']);
      }
      // The old leader comes back (LMDB: from its durable log) and catches up.
      const back = await cluster.startNode(first.id);
      await waitFor(() => back.sm.log.length === 2, 10_000, 'the restarted node to catch up');
      expect(back.sm.log).toEqual(['before', 'after']);
      expect(back.driver.isLeader()).toBe(false);
    });
  });
}

describe('RaftDriver', () => {
  it('rejects proposals on a follower with NOT_LEADER and a leader hint', async () => {
    cluster = await new TestCluster().start();
    const leader = await cluster.waitLeader();
    const follower = cluster.running().find((m) => m !== leader)!;
    const err = await rejection(follower.driver.propose(enc.encode('x')));
    expect(err.code).toBe('NOT_LEADER');
    expect(err.details.leaderHint).toBe(leader.id);
  });

  it('refuses proposals with RESOURCE_EXHAUSTED when the queue is full', async () => {
    cluster = await new TestCluster({ driver: { maxPendingProposals: 8, retryAfterMs: 25 } }).start();
    const leader = await cluster.waitLeader();
    const ps = Array.from({ length: 20 }, (_, i) => leader.driver.propose(enc.encode(`p${i}`)));
    const settled = await Promise.allSettled(ps);
    const ok = settled.filter((s) => s.status === 'fulfilled');
    const refused = settled
      .filter((s) => s.status === 'rejected')
      .map((s) => (s as PromiseRejectedResult).reason);
    expect(ok.length).toBe(8);
    expect(refused.length).toBe(12);
    for (const err of refused) {
      expect(isTidemarkError(err, 'RESOURCE_EXHAUSTED')).toBe(true);
      expect((err as TidemarkError).retryAfterMs).toBe(25);
    }
    // Once drained, proposals are accepted again.
    await leader.driver.propose(enc.encode('later'));
    expect(leader.driver.status().pendingProposals).toBe(0);
  });

  it('reports pending proposals as outcome-unknown when leadership is lost', async () => {
    cluster = await new TestCluster().start();
    const leader = await cluster.waitLeader();
    // Cut the leader off: its proposals cannot commit, and check-quorum makes it step down.
    cluster.network.isolate(leader.id);
    const err = await rejection(leader.driver.propose(enc.encode('doomed')));
    // The entry was in the leader's log: it is not known to have failed, only to be unconfirmed.
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.reason).toBe('outcome_unknown');
    cluster.network.heal();
    const next = await cluster.waitLeader();
    await next.driver.propose(enc.encode('fine'));
    for (const m of cluster.running()) {
      await waitFor(() => m.sm.log.includes('fine'), 10_000, `${m.id} to apply`);
      expect(m.sm.log).not.toContain('doomed');
    }
  });

  it('serves linearizable reads (readIndex) on the leader and on followers', async () => {
    cluster = await new TestCluster().start();
    const leader = await cluster.waitLeader();
    await leader.driver.propose(enc.encode('w1'));
    for (const m of cluster.running()) {
      const idx = await m.driver.readIndex();
      expect(idx).toBeGreaterThan(0);
      // Safe to read locally now: the write acknowledged before the read is visible.
      expect(m.sm.log).toContain('w1');
      expect(m.driver.status().applied).toBeGreaterThanOrEqual(idx);
    }
  });

  it('transfers leadership and campaigns on request', async () => {
    cluster = await new TestCluster().start();
    const leader = await cluster.waitLeader();
    const target = cluster.running().find((m) => m !== leader)!;
    leader.driver.transferLeader(target.id);
    await waitFor(
      () => cluster!.running().every((m) => m.driver.leader() === target.id),
      5000,
      'the transfer',
    );
    await target.driver.propose(enc.encode('from-new-leader'));
    const other = cluster.running().find((m) => m !== target)!;
    other.driver.campaign();
    const after = await cluster.waitLeader();
    await after.driver.propose(enc.encode('after-campaign'));
    expect(after.sm.log).toEqual(['from-new-leader', 'after-campaign']);
  });

  it('compacts the log and catches a lagging follower up with a snapshot', async () => {
    // Small chunks: the image crosses the network as a multi-chunk stream.
    cluster = await new TestCluster({
      driver: { compactThreshold: 50 },
      network: { snapshotChunkBytes: 256 },
    }).start();
    const leader = await cluster.waitLeader();
    const lagging = cluster.running().find((m) => m !== leader)!;
    await cluster.stopNode(lagging.id);
    for (let i = 0; i < 4; i++) {
      await Promise.all(
        Array.from({ length: 60 }, (_, j) => leader.driver.propose(enc.encode(`c${i}-${j}`))),
      );
    }
    expect(leader.driver.status().stats.compactions).toBeGreaterThan(0);
    expect(leader.storage.firstIndex()).toBeGreaterThan(100);
    const back = await cluster.startNode(lagging.id);
    await waitFor(() => back.sm.log.length === 240, 10_000, 'the lagging follower to catch up');
    expect(back.sm.restores).toBeGreaterThan(0);
    expect(back.sm.log).toEqual(leader.sm.log);
    expect(cluster.network.stats.snapshotsAssembled).toBeGreaterThan(0);
    expect(cluster.network.stats.snapshotChunks).toBeGreaterThan(cluster.network.stats.snapshotsAssembled);
  });

  it('restarts a whole LMDB cluster: the log survives and is re-applied', async () => {
    cluster = await new TestCluster({ storage: 'lmdb' }).start();
    const leader = await cluster.waitLeader();
    await Promise.all(Array.from({ length: 30 }, (_, i) => leader.driver.propose(enc.encode(`d${i}`))));
    const want = [...leader.sm.log];
    await waitFor(() => cluster!.running().every((m) => m.sm.log.length === 30), 10_000, 'all to apply');
    for (const id of cluster.ids) await cluster.stopNode(id);
    for (const id of cluster.ids) await cluster.startNode(id);
    const next = await cluster.waitLeader();
    await next.driver.propose(enc.encode('after-restart'));
    for (const m of cluster.running()) {
      await waitFor(() => m.sm.log.length === 31, 10_000, `${m.id} to re-apply`);
      expect(m.sm.log).toEqual([...want, 'after-restart']);
    }
  });

  it('asks a state machine whose durability lags (persist) for a checkpoint, then compacts only up to it', async () => {
    // Like a shard store whose write-ahead log is the Raft log: appliedIndex() is its last checkpoint.
    class CheckpointingStateMachine extends RecordingStateMachine {
      durable = 0;
      persists = 0;
      override appliedIndex(): number {
        return this.durable;
      }
      async persist(): Promise<void> {
        this.persists++;
        await new Promise((r) => setTimeout(r, 5));
        this.durable = this.applied;
      }
    }
    const sm = new CheckpointingStateMachine();
    const { solo, storage } = await soloLeader(sm, 10);
    try {
      for (let i = 0; i < 9; i++) await solo.propose(enc.encode(`a${i}`));
      // Below the threshold: no checkpoint asked, nothing compacted.
      expect(sm.persists).toBe(0);
      expect(storage.firstIndex()).toBe(1);
      for (let i = 0; i < 20; i++) await solo.propose(enc.encode(`b${i}`));
      await waitFor(() => solo.status().stats.compactions > 0, 5000, 'a compaction');
      expect(sm.persists).toBeGreaterThan(0);
      // Never past what the state machine made durable: a restart re-applies from there.
      expect(storage.firstIndex() - 1).toBeLessThanOrEqual(sm.durable);
    } finally {
      await solo.stop();
    }
  });

  it('does not ask for a checkpoint again until something new was applied', async () => {
    // Entries the state machine does not record (like no-ops and conf changes for a shard store) can keep its
    // index below the threshold: a persist() cannot fix that, and repeating it would spin while idle.
    class SkippingStateMachine extends RecordingStateMachine {
      durable = 0;
      persists = 0;
      override async apply(entry: Entry): Promise<unknown> {
        if (dec.decode(entry.data).startsWith('skip')) return { index: entry.index, count: this.log.length };
        return super.apply(entry);
      }
      override appliedIndex(): number {
        return this.durable;
      }
      async persist(): Promise<void> {
        this.persists++;
        this.durable = this.applied;
      }
    }
    const sm = new SkippingStateMachine();
    const { solo } = await soloLeader(sm, 5);
    try {
      for (let i = 0; i < 2; i++) await solo.propose(enc.encode(`a${i}`));
      for (let i = 0; i < 8; i++) await solo.propose(enc.encode(`skip${i}`));
      await waitFor(() => sm.persists > 0, 5000, 'a checkpoint request');
      await new Promise((r) => setTimeout(r, 50));
      // At most one request per applied entry so far; then heartbeat Readys keep coming (tick 5 ms), and none
      // of them may ask again.
      const asked = sm.persists;
      expect(asked).toBeLessThanOrEqual(10);
      await new Promise((r) => setTimeout(r, 200));
      expect(sm.persists).toBe(asked);
      expect(solo.status().stats.compactions).toBe(0);
      await solo.propose(enc.encode('b'));
      await waitFor(() => solo.status().stats.compactions > 0, 5000, 'a compaction');
      expect(sm.persists).toBe(asked + 1);
    } finally {
      await solo.stop();
    }
  });

  it('adds a voter with proposeConfChange', async () => {
    cluster = await new TestCluster().start();
    const leader = await cluster.waitLeader();
    await leader.driver.propose(enc.encode('one'));
    // The newcomer starts knowing the old membership (not itself): it waits for the leader.
    const conf = await leader.driver.proposeConfChange({ type: ConfChangeType.AddVoter, node: 'n4' });
    expect(conf.voters).toContain('n4');
    const n4 = new RaftDriver({
      id: 'n4',
      storage: new MemoryLogStorage({ conf: { voters: ['n1', 'n2', 'n3'], learners: [] } }),
      transport: cluster.network.transport('n4'),
      stateMachine: new RecordingStateMachine(),
      tickMs: 10,
      electionTick: 10,
      heartbeatTick: 2,
    });
    await n4.start();
    try {
      await leader.driver.propose(enc.encode('two'));
      await waitFor(() => n4.status().applied >= leader.driver.status().applied, 10_000, 'n4 to catch up');
      expect(n4.status().conf.voters.sort()).toEqual(['n1', 'n2', 'n3', 'n4']);
      expect(leader.driver.status().conf.voters).toContain('n4');
    } finally {
      await n4.stop();
    }
  });

  it('keeps replicas identical under message loss (clients retry on NOT_LEADER)', async () => {
    cluster = await new TestCluster().start();
    cluster.network.dropRate = 0.1;
    for (let i = 0; i < 40; i++) {
      for (let attempt = 0; ; attempt++) {
        const leader = await cluster.waitLeader(10_000);
        try {
          await leader.driver.propose(enc.encode(`x${i}`));
          break;
        } catch (err) {
          if (attempt > 20 || !isTidemarkError(err) || !['NOT_LEADER', 'UNAVAILABLE'].includes(err.code))
            throw err;
        }
      }
    }
    cluster.network.dropRate = 0;
    const leader = await cluster.waitLeader();
    await leader.driver.propose(enc.encode('end'));
    await waitFor(() => cluster!.running().every((m) => m.sm.log.at(-1) === 'end'), 10_000, 'all to apply');
    const logs = cluster.running().map((m) => m.sm.log);
    for (const log of logs) expect(log).toEqual(logs[0]);
    for (let i = 0; i < 40; i++) expect(logs[0]).toContain(`x${i}`);
  });

  it('runs on injected timers: no tick, no election', async () => {
    let now = 0;
    let tick: (() => void) | undefined;
    const timers: DriverTimers = {
      now: () => now,
      setInterval: (fn) => {
        tick = fn;
        return 1;
      },
      clearInterval: () => {
        tick = undefined;
      },
    };
    const network = new MemoryNetwork();
    const sm = new RecordingStateMachine();
    const solo = new RaftDriver({
      id: 'solo',
      storage: new MemoryLogStorage({ conf: { voters: ['solo'], learners: [] } }),
      transport: network.transport('solo'),
      stateMachine: sm,
      timers,
      electionTick: 5,
      heartbeatTick: 1,
      random: () => 0,
      readTimeoutMs: 1000,
    });
    await solo.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(solo.isLeader()).toBe(false);
    for (let i = 0; i < 12 && !solo.isLeader(); i++) {
      now += 100;
      tick!();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(solo.isLeader()).toBe(true);
    expect(await solo.propose(enc.encode('hello'))).toMatchObject({ count: 1 });
    expect(await solo.readIndex()).toBeGreaterThan(0);
    await solo.stop();
    expect(tick).toBeUndefined();
  });

  it('rejects everything with CLOSED after stop()', async () => {
    cluster = await new TestCluster().start();
    const leader = await cluster.waitLeader();
    await leader.driver.stop();
    const err = await rejection(leader.driver.propose(enc.encode('x')));
    expect(err.code).toBe('CLOSED');
    expect((await rejection(leader.driver.readIndex())).code).toBe('CLOSED');
  });
});
