import { describe, expect, it } from 'vitest';
import { RawNode } from '../../src/raft/core.js';
import { committedIndex, VoteResult, voteResult } from '../../src/raft/quorum.js';
import { MessageType, StateRole } from '../../src/raft/types.js';
import { Rng } from '../../src/util/random.js';
import { MemStorage } from './helpers/memory-storage.js';
import { msg } from './helpers/network.js';

const enc = (s: string) => new TextEncoder().encode(s);

function node(id: string, storage: MemStorage, applied?: number): RawNode {
  return new RawNode({ id, storage, electionTick: 10, heartbeatTick: 1, applied, random: new Rng(7).fn() });
}

describe('raft core: Ready / advance', () => {
  it('a leader counts its own entries only after advance() (persist before commit)', () => {
    const s = new MemStorage({ voters: ['n1'], learners: [] });
    const n = node('n1', s);
    n.campaign();
    expect(n.role).toBe(StateRole.Leader);
    let rd = n.ready();
    expect(rd.entries.map((e) => e.index)).toEqual([1]);
    expect(rd.hardState).toEqual({ term: 1, vote: 'n1', commit: 0 });
    expect(rd.committedEntries).toEqual([]);
    expect(n.log.committed).toBe(0); // not durable yet: not counted
    s.save(rd.hardState, rd.entries);
    n.advance();
    expect(n.log.committed).toBe(1);
    rd = n.ready();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([1]);
    expect(rd.hardState?.commit).toBe(1);
    s.save(rd.hardState, rd.entries);
    n.advance();
    expect(n.hasReady()).toBe(false);
    expect(n.status().applied).toBe(1);
  });

  it('a follower acknowledgement travels in the same Ready as the entries it acknowledges', () => {
    const s = new MemStorage({ voters: ['n1', 'n2'], learners: [] });
    const n = node('n2', s);
    n.step(
      msg({
        type: MessageType.App,
        from: 'n1',
        to: 'n2',
        term: 1,
        index: 0,
        logTerm: 0,
        entries: [{ term: 1, index: 1, type: 0, data: enc('a') }],
        commit: 0,
      }),
    );
    const rd = n.ready();
    expect(rd.entries.map((e) => e.index)).toEqual([1]);
    expect(rd.hardState?.term).toBe(1);
    const ack = rd.messages.find((m) => m.type === MessageType.AppResp);
    expect(ack?.index).toBe(1);
    expect(ack?.reject).toBe(false);
  });

  it('input between ready() and advance() is held for the next Ready; committed entries are handed out once', () => {
    const s = new MemStorage({ voters: ['n1'], learners: [] });
    const n = node('n1', s);
    n.campaign();
    let rd = n.ready();
    s.save(rd.hardState, rd.entries);
    n.advance();
    n.propose(enc('a'));
    const applied: number[] = [];
    rd = n.ready();
    applied.push(...rd.committedEntries.map((e) => e.index));
    expect(rd.entries.map((e) => e.index)).toEqual([2]);
    n.propose(enc('b')); // between ready and advance
    s.save(rd.hardState, rd.entries);
    n.advance();
    const rd2 = n.ready();
    applied.push(...rd2.committedEntries.map((e) => e.index));
    expect(rd2.entries.map((e) => e.index)).toEqual([3]);
    s.save(rd2.hardState, rd2.entries);
    n.advance();
    const rd3 = n.ready();
    applied.push(...rd3.committedEntries.map((e) => e.index));
    n.advance();
    expect(applied).toEqual([1, 2, 3]);
    expect(n.status().applied).toBe(3);
  });

  it('restarts from durable state: term, vote, commit and applied', () => {
    const s = new MemStorage({ voters: ['n1'], learners: [] });
    let n = node('n1', s);
    n.campaign();
    for (let i = 0; i < 3; i++) {
      const rd = n.ready();
      s.save(rd.hardState, rd.entries);
      n.advance();
      if (i === 0) n.propose([enc('a'), enc('b')]);
    }
    expect(s.hardState).toEqual({ term: 1, vote: 'n1', commit: 3 });
    n = node('n1', s, 2);
    expect(n.term).toBe(1);
    expect(n.vote).toBe('n1');
    const rd = n.ready();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([3]); // resumes after `applied`
  });
});

describe('raft core: quorum and rng', () => {
  it('computes majority commit index and vote results', () => {
    const m = new Map([
      ['a', 5],
      ['b', 3],
      ['c', 9],
    ]);
    expect(committedIndex(['a', 'b', 'c'], (id) => m.get(id) ?? 0)).toBe(5);
    expect(committedIndex(['a', 'b', 'c', 'd'], (id) => m.get(id) ?? 0)).toBe(3);
    expect(voteResult(['a', 'b', 'c'], new Map([['a', true]]))).toBe(VoteResult.Pending);
    expect(
      voteResult(
        ['a', 'b', 'c'],
        new Map([
          ['a', true],
          ['b', true],
        ]),
      ),
    ).toBe(VoteResult.Won);
    expect(
      voteResult(
        ['a', 'b', 'c'],
        new Map([
          ['a', false],
          ['b', false],
        ]),
      ),
    ).toBe(VoteResult.Lost);
  });

  it('Rng is deterministic and in range', () => {
    const a = new Rng(123);
    const b = new Rng(123);
    for (let i = 0; i < 1000; i++) {
      const x = a.next();
      expect(x).toBe(b.next());
      expect(x >= 0 && x < 1).toBe(true);
      const k = a.int(3, 9);
      expect(k).toBe(b.int(3, 9));
      expect(k >= 3 && k < 9).toBe(true);
    }
    expect(new Rng('x').nextU32()).toBe(new Rng('x').nextU32());
    expect(new Rng(1).nextU32()).not.toBe(new Rng(2).nextU32());
  });
});
