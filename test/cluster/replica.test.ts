import { cpSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeNextOffset, entryCodec, KAFKA_NEXT_OFFSET_KEY } from '../../src/cluster/entry.js';
import { decodeDescriptor } from '../../src/cluster/store-snapshot.js';
import { isTidemarkError } from '../../src/errors/index.js';
import { RaftDriver } from '../../src/raft/driver.js';
import { MemoryLogStorage } from '../../src/raft/storage-memory.js';
import { MemoryNetwork } from '../../src/raft/transport-memory.js';
import { type Entry, type StateMachine, StateRole } from '../../src/raft/types.js';
import { createStoreImage } from '../../src/storage/snapshot.js';
import { dumpStore, makeBatch, ReplicaCluster, waitFor } from './fixtures/replica-cluster.js';

let cluster: ReplicaCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe('entry codec (the shard entry format)', () => {
  it('round-trips batches with a Kafka range and deletes', () => {
    const b = makeBatch(1000, 10);
    const kafka = { partition: 3, firstOffset: 40, lastOffset: 42 };
    const cmd = entryCodec.decode(entryCodec.encode({ kind: 'batch', batch: b, kafka }));
    expect(cmd.kind).toBe('batch');
    if (cmd.kind !== 'batch') return;
    expect(cmd.batch.length).toBe(10);
    expect([...cmd.batch.timestamps]).toEqual([...b.timestamps]);
    expect([...cmd.batch.values]).toEqual([...b.values]);
    expect([...cmd.batch.seriesRef]).toEqual([...b.seriesRef]);
    expect(cmd.batch.series).toEqual(b.series);
    expect(cmd.kafka).toEqual(kafka);
    const d = entryCodec.decode(
      entryCodec.encode({
        kind: 'delete',
        request: { metric: 'cpu', matchers: [{ name: 'host', op: '=~', value: 'h.*' }], minT: 5 },
      }),
    );
    expect(d).toEqual({
      kind: 'delete',
      request: { metric: 'cpu', matchers: [{ name: 'host', op: '=~', value: 'h.*' }], minT: 5 },
    });
    expect(() => entryCodec.decode(new Uint8Array([9, 1]))).toThrow(/version/);
    expect(() => entryCodec.decode(new Uint8Array([1, 1, 1]))).toThrow(/truncated/);
  });
});

describe('driver pipelineApply', () => {
  /** A state machine whose applies complete on a later turn; records how many were in flight at once. */
  class SlowSM implements StateMachine {
    inflight = 0;
    maxInflight = 0;
    applied = 0;
    order: number[] = [];
    async apply(e: Entry): Promise<unknown> {
      this.inflight++;
      this.maxInflight = Math.max(this.maxInflight, this.inflight);
      await new Promise((r) => setImmediate(r));
      this.inflight--;
      this.order.push(e.index);
      this.applied = e.index;
      return e.index;
    }
    appliedIndex(): number {
      return this.applied;
    }
    async snapshot(): Promise<Uint8Array> {
      return new Uint8Array();
    }
    async restore(): Promise<void> {}
  }

  for (const pipelineApply of [false, true]) {
    it(`issues a Ready's applies ${pipelineApply ? 'together' : 'one at a time'} (pipelineApply: ${pipelineApply})`, async () => {
      const sm = new SlowSM();
      const d = new RaftDriver({
        id: 'solo',
        storage: new MemoryLogStorage({ conf: { voters: ['solo'], learners: [] } }),
        transport: new MemoryNetwork().transport('solo'),
        stateMachine: sm,
        tickMs: 5,
        electionTick: 3,
        pipelineApply,
      });
      await d.start();
      try {
        await waitFor(() => d.isLeader(), 'leader');
        const res = await Promise.all(
          Array.from({ length: 50 }, (_, i) => d.propose(new Uint8Array([i + 1]))),
        );
        // Results map to their own entries, in order.
        for (let i = 1; i < res.length; i++) expect(res[i] as number).toBe((res[i - 1] as number) + 1);
        expect(sm.order).toEqual([...sm.order].sort((a, b) => a - b));
        if (pipelineApply) expect(sm.maxInflight).toBeGreaterThan(1);
        else expect(sm.maxInflight).toBe(1);
      } finally {
        await d.stop();
      }
    });
  }
});

describe('ShardReplica: 3 replicas over MemoryNetwork with LMDB', () => {
  it('replicates writes; linearizable reads on followers see acknowledged writes', async () => {
    cluster = new ReplicaCluster();
    await cluster.startAll();
    const leader = await cluster.leader();
    const res = await leader.write(makeBatch(1000, 30), {
      kafka: { partition: 0, firstOffset: 0, lastOffset: 99 },
    });
    expect(res.accepted).toBe(30);
    expect(res.duplicate).toBe(false);
    // The same records again (a proposal retried after an unknown outcome): applied as nothing.
    const again = await leader.write(makeBatch(5000, 30), {
      kafka: { partition: 0, firstOffset: 50, lastOffset: 99 },
    });
    expect(again).toMatchObject({ accepted: 0, kafka: 'replay' });
    // Records past a gap are not applied either.
    const gap = await leader.write(makeBatch(9000, 30), {
      kafka: { partition: 0, firstOffset: 101, lastOffset: 120 },
    });
    expect(gap).toMatchObject({ accepted: 0, kafka: 'gap' });
    const expected = dumpStore(leader.store);
    expect(expected.length).toBe(30);
    for (const id of cluster.ids) {
      const r = cluster.get(id);
      // A linearizable read on any replica sees the acknowledged write immediately.
      const got = await r.read({ metric: 'cpu' });
      expect(got.reduce((n, s) => n + s.toArrays().count, 0)).toBe(30);
      expect(dumpStore(r.store)).toEqual(expected);
      expect(decodeNextOffset(r.store.getMeta(KAFKA_NEXT_OFFSET_KEY))).toBe(100);
    }
    // Deletes replicate too.
    const del = await leader.delete({ metric: 'cpu', matchers: [{ name: 'host', op: '=', value: 'h0' }] });
    expect(del.samplesDeleted).toBe(10);
    for (const id of cluster.ids) {
      await cluster.get(id).read({ metric: 'cpu' });
      expect(dumpStore(cluster.get(id).store).length).toBe(20);
    }
    const st = leader.status();
    expect(st.role).toBe(StateRole.Leader);
    expect(st.leader).toBe(leader.nodeId);
    expect(st.applied).toBeGreaterThanOrEqual(st.durableApplied);
    expect(st.commit).toBeGreaterThanOrEqual(st.applied);
  });

  it('a Ready with many committed entries is applied with one group commit (pipelined applies)', async () => {
    cluster = new ReplicaCluster();
    await cluster.startAll();
    const leader = await cluster.leader();
    const before = leader.status().raft.stats.readies;
    // Proposed while the driver is idle: 200 entries (writes made while it is busy would be merged).
    await waitFor(() => !leader.driver.busy, 'the Raft loop to be idle');
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => leader.write(makeBatch(i * 10, 10))),
    );
    expect(results.every((r) => r.accepted === 10)).toBe(true);
    // 200 proposals are batched by the driver into few Readys (not one Ready + one fsync each).
    expect(leader.status().raft.stats.readies - before).toBeLessThan(120);
    // The Raft log is the store's write-ahead log: what the store holds on its own (durableApplied) is its
    // last checkpoint, which lags the applies until the next one (pipelined sync: once synced).
    expect(leader.status().durableApplied).toBeLessThanOrEqual(leader.status().applied);
    await leader.checkpoint();
    expect(leader.status().durableApplied).toBeGreaterThanOrEqual(results.length);
  });

  it('writes made while the Raft loop is busy share one entry, each answered as if applied alone', async () => {
    cluster = new ReplicaCluster({ replica: { storeOptions: { oooWindowMs: 1000 } } });
    await cluster.startAll();
    const leader = await cluster.leader();
    await leader.write(makeBatch(1_000_000, 30));
    const lastBefore = leader.status().lastIndex;
    // One write starts a cycle; the ones made while it is persisting are merged.
    const first = leader.write(makeBatch(1_000_100, 30));
    // The Raft loop starts on the next turn and then waits for its log write (LMDB's write thread).
    await new Promise((r) => setImmediate(r));
    expect(leader.driver.busy).toBe(true);
    const batches = Array.from({ length: 40 }, (_, i) => {
      const b = makeBatch(1_000_200 + i * 10, 10);
      // Sample 4 of every fourth write is far behind the newest sample of its series: too_old.
      if (i % 4 === 0) b.timestamps[4] = 1_000;
      return b;
    });
    const results = await Promise.all(batches.map((b) => leader.write(b)));
    await first;
    results.forEach((r, i) => {
      expect(r.rejected).toEqual(i % 4 === 0 ? [{ index: 4, reason: 'too_old' }] : []);
      expect(r.accepted).toBe(i % 4 === 0 ? 9 : 10);
    });
    expect(leader.merger.mergedWrites).toBeGreaterThanOrEqual(39);
    // 41 writes, a handful of entries.
    expect(leader.status().lastIndex - lastBefore).toBeLessThan(6);
    const expected = dumpStore(leader.store);
    expect(expected.length).toBe(30 + 30 + 400 - 10);
    for (const id of cluster.ids) {
      await cluster.get(id).read({ metric: 'cpu' });
      expect(dumpStore(cluster.get(id).store)).toEqual(expected);
    }
  });

  it('NOT_LEADER from a follower carries the leader hint', async () => {
    cluster = new ReplicaCluster();
    await cluster.startAll();
    const leader = await cluster.leader();
    const follower = [...cluster.replicas.values()].find((r) => r !== leader)!;
    await waitFor(() => follower.leader() === leader.nodeId, 'follower to know the leader');
    const err = await follower.write(makeBatch(0, 3)).catch((e: unknown) => e);
    expect(isTidemarkError(err, 'NOT_LEADER')).toBe(true);
    if (isTidemarkError(err)) expect(err.details.leaderHint).toBe(leader.nodeId);
    // Stale reads never go to the leader.
    expect(await follower.read({ metric: 'cpu' }, { stale: true })).toEqual([]);
  });

  it('a full proposal queue answers RESOURCE_EXHAUSTED with a retry hint', async () => {
    cluster = new ReplicaCluster({ replica: { driver: { maxPendingProposals: 4, retryAfterMs: 25 } } });
    await cluster.startAll();
    const leader = await cluster.leader();
    // Ten entries: proposed while the driver is idle (writes made while it is busy would share one).
    await waitFor(() => !leader.driver.busy, 'the Raft loop to be idle');
    const ps = Array.from({ length: 10 }, (_, i) => leader.write(makeBatch(i, 2)).catch((e: unknown) => e));
    const out = await Promise.all(ps);
    const exhausted = out.filter((e) => isTidemarkError(e, 'RESOURCE_EXHAUSTED'));
    expect(exhausted.length).toBe(6);
    if (isTidemarkError(exhausted[0])) expect(exhausted[0].details.retryAfterMs).toBe(25);
  });

  it('a write past its deadline rejects DEADLINE_EXCEEDED', async () => {
    cluster = new ReplicaCluster();
    await cluster.startAll();
    const leader = await cluster.leader();
    const err = await leader.write(makeBatch(0, 1), { deadline: Date.now() - 1 }).catch((e: unknown) => e);
    expect(isTidemarkError(err, 'DEADLINE_EXCEEDED')).toBe(true);
  });

  it('leader stop → a new leader; acknowledged writes intact on the survivors', async () => {
    cluster = new ReplicaCluster();
    await cluster.startAll();
    const old = await cluster.leader();
    for (let i = 0; i < 20; i++) await old.write(makeBatch(i * 100, 10));
    const expected = dumpStore(old.store);
    await cluster.stop(old.nodeId);
    const next = await cluster.leader();
    expect(next.nodeId).not.toBe(old.nodeId);
    await next.write(makeBatch(50_000, 5));
    for (const r of cluster.replicas.values()) {
      await r.read({ metric: 'cpu' });
      const got = dumpStore(r.store);
      for (const line of expected) expect(got).toContain(line);
      expect(got.length).toBe(expected.length + 5);
    }
  });

  it('transferLeader hands leadership over', async () => {
    cluster = new ReplicaCluster();
    await cluster.startAll();
    const old = await cluster.leader();
    await old.write(makeBatch(0, 3));
    const target = cluster.ids.find((id) => id !== old.nodeId)!;
    await waitFor(() => cluster!.get(target).status().applied >= old.status().applied, 'target caught up');
    old.transferLeader(target);
    await waitFor(() => cluster!.get(target).isLeader(), 'transfer');
  });

  it('restart from its dirs re-applies only what the store had not made durable (idempotent by index)', async () => {
    // No compaction: the restarted replica's own log must still hold what its store lost.
    cluster = new ReplicaCluster({ replica: { driver: { compactThreshold: 0 } } });
    await cluster.startAll();
    const leader = await cluster.leader();
    const victim = cluster.ids.find((id) => id !== leader.nodeId)!;
    for (let i = 0; i < 10; i++) await leader.write(makeBatch(i * 100, 10));
    await waitFor(() => cluster!.get(victim).status().applied >= leader.status().applied, 'victim caught up');
    // Snapshot of the victim's store as of now (store durable at X).
    await cluster.stop(victim);
    const storeDir = join(cluster.dataDir(victim), 'shard-7', 'store');
    const saved = join(cluster.root, 'saved-store');
    cpSync(storeDir, saved, { recursive: true });
    // Restart, apply 15 more entries (its log now holds them), stop.
    let r = await cluster.start(victim);
    for (let i = 10; i < 25; i++) await leader.write(makeBatch(i * 100, 10));
    await waitFor(() => r.status().applied >= leader.status().applied, 'victim caught up again');
    const logLast = r.status().lastIndex;
    await cluster.stop(victim);
    // Crash model: the log kept the 15 entries, the store lost them (it is back at X).
    rmSync(storeDir, { recursive: true, force: true });
    cpSync(saved, storeDir, { recursive: true });
    r = await cluster.start(victim);
    const x = r.store.appliedIndex();
    await waitFor(() => r.leader() !== '', 'leader known');
    expect(x).toBeLessThan(logLast);
    await waitFor(() => r.status().applied >= leader.status().applied, 're-apply');
    // Exactly the 15 batches after X were applied again, and nothing at or below X.
    expect(r.stateMachine.stats.applied).toBe(15);
    expect(r.stateMachine.stats.duplicates).toBe(0);
    await r.read({ metric: 'cpu' });
    expect(dumpStore(r.store)).toEqual(dumpStore(leader.store));
    // A clean restart re-applies nothing.
    await cluster.stop(victim);
    r = await cluster.start(victim);
    await waitFor(() => r.leader() !== '', 'leader known');
    await r.read({ metric: 'cpu' });
    expect(r.stateMachine.stats.applied).toBe(0);
    expect(dumpStore(r.store)).toEqual(dumpStore(leader.store));
  });

  it('a clean stop checkpoints the store and compacts the log up to it; the restart replays nothing', async () => {
    cluster = new ReplicaCluster();
    await cluster.startAll();
    const leader = await cluster.leader();
    const victim = cluster.ids.find((id) => id !== leader.nodeId)!;
    for (let i = 0; i < 12; i++) await leader.write(makeBatch(i * 100, 10));
    await waitFor(() => cluster!.get(victim).status().applied >= leader.status().applied, 'victim caught up');
    // Below the compaction threshold: the running replica keeps its whole log.
    expect(cluster.get(victim).status().firstIndex).toBe(1);
    const applied = cluster.get(victim).status().applied;
    await cluster.stop(victim);
    const r = await cluster.start(victim);
    const st = r.status();
    expect(st.firstIndex - 1).toBeGreaterThanOrEqual(applied - 1);
    expect(st.durableApplied).toBeGreaterThanOrEqual(st.firstIndex - 1);
    await leader.write(makeBatch(90_000, 5));
    await waitFor(() => r.status().applied >= leader.status().applied, 'restarted replica caught up');
    await r.read({ metric: 'cpu' });
    expect(dumpStore(r.store)).toEqual(dumpStore(leader.store));
    expect(r.stateMachine.stats.applied).toBe(1); // only the new write: nothing was replayed
  });

  it('a replica with an empty data dir is rebuilt by a streamed snapshot after the others compacted', async () => {
    // n3 is a founding voter that starts only after n1 and n2 compacted their logs past everything it lacks.
    // (A replica that *lost* its disk must rejoin as a new member: it forgot its votes and acknowledgements,
    // and the Raft core refuses a commit index beyond its log. See docs/snapshots.md.)
    cluster = new ReplicaCluster({ replica: { driver: { compactThreshold: 20 } } });
    const victim = 'n3';
    await cluster.start('n1');
    await cluster.start('n2');
    let leader = await cluster.leader();
    // Enough data for a multi-chunk image; enough entries for the survivors to compact their logs.
    for (let i = 0; i < 60; i++) await leader.write(makeBatch(i * 1000, 200, 20));
    await waitFor(
      () => [...cluster!.replicas.values()].every((r) => r.status().firstIndex > 20),
      'survivors to compact',
    );
    // Compaction never passes the store's durable applied index, and the snapshot is a small descriptor.
    for (const r of cluster.replicas.values()) {
      const st = r.status();
      expect(st.firstIndex - 1).toBeLessThanOrEqual(st.durableApplied);
    }
    const imagesBefore = cluster.snapshots.stats.images;
    const r = await cluster.start(victim);
    leader = await cluster.leader();
    await waitFor(() => r.stateMachine.stats.restores >= 1, 'snapshot install', 30_000);
    await leader.write(makeBatch(900_000, 5));
    await r.read({ metric: 'cpu' });
    expect(dumpStore(r.store)).toEqual(dumpStore(leader.store));
    expect(cluster.snapshots.stats.images).toBeGreaterThan(imagesBefore);
    expect(cluster.snapshots.stats.chunks).toBeGreaterThan(1);
    expect(cluster.snapshots.stats.bytes).toBeGreaterThan(8 * 1024);
    // The Raft snapshot the victim holds is the descriptor, not the image.
    const snap = (r as unknown as { log: { snapshot(): { data: Uint8Array } } }).log.snapshot();
    expect(snap.data.length).toBeLessThan(1024);
    expect(decodeDescriptor(snap.data).shard).toBe(7);
    // No leftovers of the install.
    const shardDir = join(cluster.dataDir(victim), 'shard-7');
    expect(existsSync(join(shardDir, 'store-incoming'))).toBe(false);
    expect(existsSync(join(shardDir, 'store-old'))).toBe(false);
    // It survives a restart with the installed store.
    await cluster.stop(victim);
    const again = await cluster.start(victim);
    await waitFor(() => again.leader() !== '', 'leader known');
    await again.read({ metric: 'cpu' });
    expect(dumpStore(again.store)).toEqual(dumpStore(leader.store));
  });

  it('a broken image stream is retried; a crash mid-install reopens to a consistent store', async () => {
    cluster = new ReplicaCluster({ replica: { driver: { compactThreshold: 10 } } });
    await cluster.startAll();
    const leader = await cluster.leader();
    const victim = cluster.ids.find((id) => id !== leader.nodeId)!;
    // The victim has some data of its own, then falls behind compaction.
    for (let i = 0; i < 5; i++) await leader.write(makeBatch(i * 1000, 100, 10));
    await waitFor(() => cluster!.get(victim).status().applied >= leader.status().applied, 'victim caught up');
    await cluster.stop(victim);
    for (let i = 5; i < 40; i++) await leader.write(makeBatch(i * 1000, 100, 10));
    await waitFor(() => leader.status().firstIndex > 30, 'leader compacts');
    // First stream breaks after 2 chunks (retried); then the swap "crashes" after the old store was moved.
    cluster.snapshots.failAfterChunks = 2;
    let crashed = false;
    let fatal: unknown;
    await cluster.start(victim, {
      installFaults: (step) => {
        if (step === 'old-renamed') {
          crashed = true;
          throw new Error('injected crash after old-renamed');
        }
      },
      onFatal: (e) => {
        fatal = e;
      },
    });
    await waitFor(() => crashed && fatal !== undefined, 'injected crash', 30_000);
    const shardDir = join(cluster.dataDir(victim), 'shard-7');
    expect(existsSync(join(shardDir, 'store'))).toBe(false);
    expect(existsSync(join(shardDir, 'store-old'))).toBe(true);
    expect(existsSync(join(shardDir, 'store-incoming', 'INSTALL'))).toBe(true);
    // "Process restart": drop the dead replica, reopen from the dirs.
    await cluster.stop(victim).catch(() => {});
    const r = await cluster.start(victim);
    expect(r.status().recovery).toBe('rolled-forward');
    await waitFor(() => r.leader() !== '', 'leader known');
    await r.read({ metric: 'cpu' });
    expect(dumpStore(r.store)).toEqual(dumpStore(leader.store));
  });

  it('a store ahead of its log (newer image installed, then a crash) starts and converges', async () => {
    cluster = new ReplicaCluster({ replica: { driver: { compactThreshold: 0 } } });
    await cluster.startAll();
    const leader = await cluster.leader();
    const victim = cluster.ids.find((id) => id !== leader.nodeId)!;
    for (let i = 0; i < 10; i++) await leader.write(makeBatch(i * 100, 10));
    await waitFor(() => cluster!.get(victim).status().applied >= leader.status().applied, 'caught up');
    await cluster.stop(victim);
    for (let i = 10; i < 30; i++) await leader.write(makeBatch(i * 100, 10));
    // The victim's store becomes an image of the leader's (applied far past the victim's log commit).
    const storeDir = join(cluster.dataDir(victim), 'shard-7', 'store');
    const img = join(cluster.root, 'img');
    const info = await createStoreImage(leader.store, img);
    rmSync(storeDir, { recursive: true, force: true });
    cpSync(img, storeDir, { recursive: true });
    const r = await cluster.start(victim);
    expect(r.store.appliedIndex()).toBe(info.appliedIndex);
    expect(r.status().applied).toBeLessThan(info.appliedIndex);
    await waitFor(() => r.status().applied >= leader.status().applied, 'converge');
    await leader.write(makeBatch(99_000, 3));
    await waitFor(() => r.leader() !== '', 'leader known');
    await r.read({ metric: 'cpu' });
    expect(dumpStore(r.store)).toEqual(dumpStore(leader.store));
    // Everything the log re-delivered up to the image's index was a duplicate.
    expect(r.stateMachine.stats.duplicates).toBeGreaterThan(0);
  });

  it('when the snapshot source is unreachable the image comes from another member', async () => {
    cluster = new ReplicaCluster({ replica: { driver: { compactThreshold: 20 } } });
    await cluster.start('n1');
    await cluster.start('n2');
    const leader = await cluster.leader();
    const other = leader.nodeId === 'n1' ? 'n2' : 'n1';
    for (let i = 0; i < 40; i++) await leader.write(makeBatch(i * 1000, 100, 10));
    await waitFor(() => leader.status().firstIndex > 20, 'leader compacts');
    await waitFor(() => cluster!.get(other).status().applied >= leader.status().applied, 'other caught up');
    cluster.snapshots.down.add(leader.nodeId);
    const r = await cluster.start('n3');
    await waitFor(() => r.stateMachine.stats.restores >= 1, 'snapshot install', 30_000);
    expect(cluster.get(other).stateMachine.stats.imagesServed).toBeGreaterThanOrEqual(1);
    expect(leader.stateMachine.stats.imagesServed).toBe(0);
    await waitFor(() => r.leader() !== '', 'leader known');
    await r.read({ metric: 'cpu' });
    expect(dumpStore(r.store)).toEqual(dumpStore(leader.store));
  });

  it('a store left unsynced by an OS restart is set aside and rebuilt from a peer; the log is kept', async () => {
    cluster = new ReplicaCluster({
      replica: { storeOptions: { syncIntervalMs: 20 }, driver: { compactThreshold: 20 } },
    });
    await cluster.startAll();
    const leader = await cluster.leader();
    const victim = cluster.ids.find((id) => id !== leader.nodeId)!;
    for (let i = 0; i < 40; i++) await leader.write(makeBatch(i * 100, 10));
    await waitFor(() => cluster!.get(victim).status().firstIndex > 1, 'the victim compacted its log');
    const hardTerm = cluster.get(victim).status().term;
    await cluster.stop(victim);
    // The machine "restarted" with unsynced commits: the marker names another boot.
    const storeDir = join(cluster.dataDir(victim), 'shard-7', 'store');
    writeFileSync(join(storeDir, 'UNSYNCED'), 'another-boot\n');
    const discarded: string[] = [];
    const r = await cluster.start(victim, { onStoreDiscarded: (aside) => discarded.push(aside) });
    expect(discarded).toHaveLength(1);
    expect(existsSync(discarded[0]!)).toBe(true);
    // Same Raft identity and log: its term never went back.
    expect(r.status().term).toBeGreaterThanOrEqual(hardTerm);
    await waitFor(() => r.status().applied >= leader.status().applied, 'rebuilt');
    await waitFor(() => r.leader() !== '', 'leader known');
    await r.read({ metric: 'cpu' });
    expect(dumpStore(r.store)).toEqual(dumpStore(leader.store));
    expect(dumpStore(r.store)).toHaveLength(400);
  });

  it('R=1: an OS restart with an unsynced store commit opens the previous snapshot and replays the log tail', async () => {
    // One voter, no sync interval: the store syncs pipelined; the log is compacted up to its durable index.
    cluster = new ReplicaCluster({ ids: ['solo'], replica: { driver: { compactThreshold: 5 } } });
    await cluster.startAll();
    const solo = await cluster.leader();
    for (let i = 0; i < 40; i++) await solo.write(makeBatch(i * 100, 10));
    await waitFor(() => solo.status().firstIndex > 1, 'the log compacted');
    const s = solo.status();
    expect(s.durableApplied).toBeGreaterThanOrEqual(s.firstIndex - 1);
    // The machine crashes now: what is on disk is the files as they are (the page cache's view), and the
    // store's marker then names another boot.
    const image = join(cluster.root, 'image');
    cpSync(join(cluster.dataDir('solo'), 'shard-7'), image, { recursive: true });
    const expected = dumpStore(solo.store);
    await cluster.stop('solo');
    rmSync(join(cluster.dataDir('solo'), 'shard-7'), { recursive: true, force: true });
    cpSync(image, join(cluster.dataDir('solo'), 'shard-7'), { recursive: true });
    writeFileSync(join(cluster.dataDir('solo'), 'shard-7', 'store', 'UNSYNCED'), 'another-boot\npipelined\n');
    const discarded: string[] = [];
    const r = await cluster.start('solo', { onStoreDiscarded: (aside) => discarded.push(aside) });
    expect(discarded).toEqual([]); // nothing set aside: there is no peer to rebuild it from
    await waitFor(() => r.isLeader(), 'leader again');
    await r.read({ metric: 'cpu' });
    expect(dumpStore(r.store)).toEqual(expected);
    expect(dumpStore(r.store)).toHaveLength(400);
  });
});
