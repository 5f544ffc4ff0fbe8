/**
 * The driver's write-latency paths: a leader's appends leave while its own log write is in flight, and a
 * commit-only hard state is saved without being waited for (a restart whose state machine applied past
 * the durable commit index records the commit instead of refusing to start).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RaftDriver } from '../../src/raft/driver.js';
import { MemoryLogStorage } from '../../src/raft/storage-memory.js';
import { MemoryNetwork } from '../../src/raft/transport-memory.js';
import { type Entry, EntryType, type HardState, MessageType } from '../../src/raft/types.js';
import { enc, RecordingStateMachine, soloDriver, waitFor } from './fixtures/driver-cluster.js';

/** MemoryLogStorage whose saves can be held (to observe what leaves before they are durable). */
class GatedStorage extends MemoryLogStorage {
  hold = false;
  private held: (() => void)[] = [];
  override async save(hs: HardState | undefined, entries: Entry[]): Promise<void> {
    if (this.hold && entries.length > 0) await new Promise<void>((r) => this.held.push(r));
    return super.save(hs, entries);
  }
  release(): void {
    this.hold = false;
    for (const r of this.held.splice(0)) r();
  }
  heldCount(): number {
    return this.held.length;
  }
}

/** Applies that can be held: issued (recorded) at once, completed on release. */
class GatedStateMachine extends RecordingStateMachine {
  hold = false;
  issued: string[] = [];
  private held: (() => void)[] = [];
  override async apply(entry: Entry): Promise<unknown> {
    this.issued.push(dec.decode(entry.data));
    if (this.hold) await new Promise<void>((r) => this.held.push(r));
    return super.apply(entry);
  }
  release(): void {
    this.hold = false;
    for (const r of this.held.splice(0)) r();
  }
}

const dec = new TextDecoder();
const drivers: RaftDriver[] = [];

/** A single-member driver with pipelineApply, leading, that has applied one entry ('a'). */
async function pipelinedSoloWithA(storage: MemoryLogStorage, sm: RecordingStateMachine): Promise<RaftDriver> {
  const driver = soloDriver(storage, sm, { pipelineApply: true });
  drivers.push(driver);
  await driver.start();
  await waitFor(() => driver.isLeader(), 5000, 'leader');
  await driver.propose(enc.encode('a'));
  return driver;
}
afterEach(async () => {
  for (const d of drivers.splice(0)) await d.stop();
});

describe('RaftDriver write latency', () => {
  it("sends a leader's appends before its own log write is durable, and commits only once it is", async () => {
    const ids = ['n1', 'n2', 'n3'];
    const net = new MemoryNetwork();
    const conf = { voters: ids, learners: [] };
    const nodes = ids.map((id) => {
      const storage = new GatedStorage({ conf });
      const sm = new RecordingStateMachine();
      const driver = new RaftDriver({
        id,
        storage,
        transport: net.transport(id),
        stateMachine: sm,
        // Long election timeout: the held write stops the leader's Ready loop (and its heartbeats).
        tickMs: 10,
        electionTick: 100,
      });
      drivers.push(driver);
      return { id, storage, sm, driver };
    });
    for (const n of nodes) await n.driver.start();
    const leader = await waitFor(() => nodes.find((n) => n.driver.isLeader()), 5000, 'a leader');
    await leader.driver.propose(enc.encode('warm-up'));
    const followers = nodes.filter((n) => n !== leader);
    leader.storage.hold = true;
    const p = leader.driver.propose(enc.encode('x'));
    // The followers receive (and persist) the entry while the leader's own write is held.
    await waitFor(
      () => followers.every((f) => f.storage.lastIndex() >= leader.storage.lastIndex() + 1),
      5000,
      'followers to persist the entry',
    );
    // Two followers form a quorum without the leader: the entry is committed; the leader applies it only
    // after its own write (its Ready loop waits for it).
    expect(leader.sm.log).not.toContain('x');
    leader.storage.release();
    await p;
    expect(leader.sm.log).toEqual(['warm-up', 'x']);
    for (const f of followers) await waitFor(() => f.sm.log.includes('x'), 5000, `${f.id} to apply`);
  });

  it('starts when the state machine applied past the durable commit index (commit-only saves are lazy)', async () => {
    const storage = new MemoryLogStorage({ conf: { voters: ['solo'], learners: [] } });
    const e = (index: number, s: string): Entry => ({
      index,
      term: 1,
      type: EntryType.Normal,
      data: enc.encode(s),
    });
    await storage.save({ term: 1, vote: 'solo', commit: 1 }, [e(1, 'a'), e(2, 'b'), e(3, 'c')]);
    const sm = new RecordingStateMachine();
    sm.applied = 3;
    sm.log = ['a', 'b', 'c'];
    const driver = soloDriver(storage, sm);
    drivers.push(driver);
    await driver.start();
    expect(storage.initialState().hardState.commit).toBe(3);
    await waitFor(() => driver.isLeader(), 5000, 'leader');
    await driver.propose(enc.encode('d'));
    // Nothing at or below the recorded commit was applied again (RecordingStateMachine throws if it were).
    expect(sm.log).toEqual(['a', 'b', 'c', 'd']);
  });

  it('with pipelineApply, persists the next entries while the previous ones apply, and applies in order', async () => {
    const storage = new MemoryLogStorage({ conf: { voters: ['solo'], learners: [] } });
    const sm = new GatedStateMachine();
    const driver = await pipelinedSoloWithA(storage, sm);
    sm.hold = true;
    const b = driver.propose(enc.encode('b'));
    await waitFor(() => sm.issued.includes('b'), 5000, "b's apply to start");
    const c = driver.propose(enc.encode('c'));
    let cDone = false;
    void c.then(() => {
      cDone = true;
    });
    // c reaches the durable log while b's apply is still running (the old driver waited for b first).
    await waitFor(() => storage.lastIndex() >= driver.status().applied + 2, 5000, 'c to be persisted');
    expect(sm.log).toEqual(['a']);
    expect(cDone).toBe(false);
    // ...but is applied only after b: never two Readies' applies at once, never out of order.
    expect(sm.issued).toEqual(['a', 'b']);
    sm.release();
    await Promise.all([b, c]);
    expect(sm.log).toEqual(['a', 'b', 'c']);
    expect(driver.status().applied).toBe(storage.lastIndex());
  });

  it('with pipelineApply, applies committed entries already durable while the next entries are written', async () => {
    const storage = new GatedStorage({ conf: { voters: ['solo'], learners: [] } });
    const sm = new RecordingStateMachine();
    const driver = await pipelinedSoloWithA(storage, sm);
    storage.hold = true;
    const b = driver.propose(enc.encode('b'));
    let bDone = false;
    void b.then(() => {
      bDone = true;
    });
    await waitFor(() => storage.heldCount() === 1, 5000, "b's write to be held");
    const c = driver.propose(enc.encode('c'));
    // b's write completes; c's (the next Ready, which also commits b) is held.
    storage.release();
    storage.hold = true;
    await waitFor(() => storage.heldCount() === 1, 5000, "c's write to be held");
    // b was durable before that Ready: it is applied and answered while c's write is still in flight.
    await waitFor(() => bDone, 5000, 'b to be answered while c is written');
    expect(sm.log).toEqual(['a', 'b']);
    expect(storage.lastIndex()).toBe(driver.status().applied);
    storage.release();
    await c;
    expect(sm.log).toEqual(['a', 'b', 'c']);
  });

  it('a follower applies early only what it has on disk as committed: a replaced suffix waits for its write', async () => {
    const conf = { voters: ['n1', 'n2', 'n3'], learners: [] };
    const storage = new GatedStorage({ conf });
    const e = (index: number, term: number, s: string): Entry => ({
      index,
      term,
      type: EntryType.Normal,
      data: enc.encode(s),
    });
    // Entry 2 of term 1 was persisted here but never committed; the term-2 leader replaces it.
    await storage.save({ term: 1, vote: 'n2', commit: 1 }, [e(1, 1, 'a'), e(2, 1, 'stale')]);
    const sm = new RecordingStateMachine();
    const net = new MemoryNetwork();
    const driver = new RaftDriver({
      id: 'n1',
      storage,
      transport: net.transport('n1'),
      stateMachine: sm,
      tickMs: 1000,
      electionTick: 100,
      pipelineApply: true,
    });
    drivers.push(driver);
    await driver.start();
    await waitFor(() => sm.log.includes('a'), 5000, 'a to apply');
    storage.hold = true;
    // The leader sends the replacement of entry 2 plus entry 3, both committed: this Ready writes them and
    // commits them at once.
    net.transport('n2').send([
      {
        type: MessageType.App,
        from: 'n2',
        to: 'n1',
        term: 2,
        index: 1,
        logTerm: 1,
        entries: [e(2, 2, 'b'), e(3, 2, 'c')],
        commit: 3,
        reject: false,
        rejectHint: 0,
      },
    ]);
    await waitFor(() => storage.heldCount() === 1, 5000, 'the write to be held');
    await new Promise((r) => setTimeout(r, 50));
    // Entry 2 on disk is still the stale one: the new entry 2 must not be applied before its write.
    expect(sm.log).toEqual(['a']);
    storage.release();
    await waitFor(() => sm.log.length === 3, 5000, 'b and c to apply');
    expect(sm.log).toEqual(['a', 'b', 'c']);
  });
});
