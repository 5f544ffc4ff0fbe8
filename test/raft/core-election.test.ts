import { describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/errors.js';
import { ConfChangeType, MessageType, StateRole } from '../../src/raft/types.js';
import { entriesWithTerms, MemStorage } from './helpers/memory-storage.js';
import { ids, msg, Network, str } from './helpers/network.js';

const enc = (s: string) => new TextEncoder().encode(s);

describe('raft core: elections', () => {
  it('elects a single leader and replicates its no-op', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    const n1 = net.get('n1');
    expect(n1.role).toBe(StateRole.Leader);
    expect(n1.term).toBe(1);
    for (const id of ids(3)) {
      expect(net.get(id).log.committed).toBe(1);
      expect(net.get(id).lead).toBe('n1');
    }
  });

  it('elects a leader by ticking (randomized timeouts) and never two leaders in a term', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const net = new Network(ids(5), {}, seed);
      const leadersByTerm = new Map<number, string>();
      for (let t = 0; t < 60; t++) {
        net.tickAll();
        for (const [id, nn] of net.nodes) {
          if (nn.node.role !== StateRole.Leader) continue;
          const prev = leadersByTerm.get(nn.node.term);
          expect(prev === undefined || prev === id).toBe(true);
          leadersByTerm.set(nn.node.term, id);
        }
      }
      expect(net.leader()).toBeDefined();
    }
  });

  it('split vote: no leader in that term, a later term elects exactly one', () => {
    const net = new Network(ids(4));
    // n1 and n3 campaign at once; n2 votes for n1, n4 votes for n3: 2-2, nobody wins term 1.
    net.cutLink('n1', 'n4');
    net.cutLink('n3', 'n2');
    net.cutLink('n1', 'n3');
    net.get('n1').campaign();
    net.get('n3').campaign();
    net.flush();
    expect(net.get('n1').role).toBe(StateRole.Candidate);
    expect(net.get('n3').role).toBe(StateRole.Candidate);
    expect(net.get('n1').term).toBe(1);
    expect(net.leader()).toBeUndefined();
    net.recover();
    net.campaign('n1');
    expect(net.get('n1').role).toBe(StateRole.Leader);
    expect(net.get('n1').term).toBe(2);
    expect([...net.nodes.values()].filter((n) => n.node.role === StateRole.Leader)).toHaveLength(1);
  });

  it('does not vote for a candidate whose log is less up to date', () => {
    const net = new Network([]);
    const conf = { voters: ids(3), learners: [] };
    // n1: last entry (2, term 1); n2: last (2, term 2); n3: last (3, term 1).
    const s1 = new MemStorage(conf);
    s1.append(entriesWithTerms([1, 1]));
    s1.hardState = { term: 2, vote: '', commit: 0 };
    const s2 = new MemStorage(conf);
    s2.append(entriesWithTerms([1, 2]));
    s2.hardState = { term: 2, vote: '', commit: 0 };
    const s3 = new MemStorage(conf);
    s3.append(entriesWithTerms([1, 1, 1]));
    s3.hardState = { term: 2, vote: '', commit: 0 };
    net.add('n1', s1);
    net.add('n2', s2);
    net.add('n3', s3);
    net.campaign('n1');
    expect(net.get('n1').role).not.toBe(StateRole.Leader);
    const resps = net.delivered.filter((m) => m.type === MessageType.VoteResp && m.to === 'n1');
    expect(resps.length).toBe(2);
    expect(resps.every((m) => m.reject)).toBe(true);
    // n2 has the highest last term: it wins.
    net.campaign('n2');
    expect(net.get('n2').role).toBe(StateRole.Leader);
  });

  it('a vote is given at most once per term and survives a restart', () => {
    const net = new Network(ids(3));
    net.isolate('n1');
    net.campaign('n2'); // n3 votes for n2 in term 1 (n1 unreachable)
    expect(net.get('n3').vote).toBe('n2');
    // Restart n3 from its durable storage: the vote is remembered.
    const s3 = net.nodes.get('n3')!.storage;
    net.add('n3', s3);
    expect(net.get('n3').vote).toBe('n2');
    expect(net.get('n3').term).toBe(1);
    net.get('n3').step(msg({ type: MessageType.Vote, from: 'n1', to: 'n3', term: 1, index: 1, logTerm: 1 }));
    const rd = net.get('n3').ready();
    const resp = rd.messages.find((m) => m.type === MessageType.VoteResp);
    expect(resp?.reject).toBe(true);
  });

  it('steps down on a message with a higher term', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    expect(net.get('n1').role).toBe(StateRole.Leader);
    net.get('n1').step(msg({ type: MessageType.App, from: 'n2', to: 'n1', term: 5, index: 1, logTerm: 1 }));
    expect(net.get('n1').role).toBe(StateRole.Follower);
    expect(net.get('n1').term).toBe(5);
    expect(net.get('n1').lead).toBe('n2');
  });

  it('a vote request with a stale term is rejected with the current term', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.campaign('n2'); // term 2
    const n3 = net.get('n3');
    expect(n3.term).toBe(2);
    n3.step(msg({ type: MessageType.Vote, from: 'n1', to: 'n3', term: 1, index: 9, logTerm: 9 }));
    const resp = n3.ready().messages.find((m) => m.type === MessageType.VoteResp);
    expect(resp).toMatchObject({ to: 'n1', term: 2, reject: true });
  });

  it('a proposal on a follower throws NOT_LEADER with the leader hint', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    try {
      net.get('n2').propose(enc('x'));
      expect.unreachable();
    } catch (err) {
      expect(isTidemarkError(err, 'NOT_LEADER')).toBe(true);
      expect((err as { details: { leaderHint?: string } }).details.leaderHint).toBe('n1');
    }
  });

  it('check-quorum: a leader cut off from the quorum steps down after an election timeout', () => {
    const net = new Network(ids(3), { checkQuorum: true });
    net.campaign('n1');
    net.isolate('n1');
    net.tick('n1', 10); // first round: peers still count as active from the election
    net.tick('n1', 10);
    expect(net.get('n1').role).toBe(StateRole.Follower);
  });

  it('check-quorum: a follower in a leader lease ignores a disruptive vote request', () => {
    const net = new Network(ids(3), { checkQuorum: true });
    net.campaign('n1');
    net.get('n2').step(msg({ type: MessageType.Vote, from: 'n3', to: 'n2', term: 2, index: 1, logTerm: 1 }));
    expect(net.get('n2').term).toBe(1);
    expect(
      net
        .get('n2')
        .ready()
        .messages.filter((m) => m.type === MessageType.VoteResp),
    ).toHaveLength(0);
    expect(net.get('n1').role).toBe(StateRole.Leader);
  });

  it('pre-vote: a partitioned node rejoining does not bump the term or depose the leader', () => {
    const net = new Network(ids(3), { preVote: true, checkQuorum: false });
    net.campaign('n1');
    net.propose('n1', 'a');
    net.isolate('n3');
    for (let i = 0; i < 100; i++) net.tick('n3');
    // It keeps pre-campaigning but never increments its term.
    expect(net.get('n3').term).toBe(1);
    expect(net.get('n3').role).toBe(StateRole.PreCandidate);
    net.propose('n1', 'b');
    net.recover();
    net.tick('n3', 25);
    net.tickAll(3);
    expect(net.get('n1').role).toBe(StateRole.Leader);
    expect(net.get('n1').term).toBe(1);
    expect(net.get('n3').lead).toBe('n1');
    expect(net.nodes.get('n3')!.applied.map(str)).toEqual(['a', 'b']);
  });

  it('without pre-vote a rejoining partitioned node disrupts the leader (contrast)', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.isolate('n3');
    for (let i = 0; i < 30; i++) net.tick('n3');
    expect(net.get('n3').term).toBeGreaterThan(1);
    net.recover();
    net.tick('n3', 25);
    expect(net.get('n1').term).toBeGreaterThan(1);
  });

  it('a stale leader back from a partition steps down when pre-vote is on', () => {
    const net = new Network(ids(3), { preVote: true });
    net.campaign('n1');
    net.isolate('n1');
    net.campaign('n2');
    net.campaign('n2');
    expect(net.get('n2').role).toBe(StateRole.Leader);
    expect(net.get('n2').term).toBe(2);
    net.recover();
    net.tick('n1', 1); // heartbeat with the stale term is answered with the new term
    expect(net.get('n1').role).toBe(StateRole.Follower);
    expect(net.get('n1').term).toBe(2);
  });

  it('learners never campaign, are not asked to vote and do not count', () => {
    const net = new Network([]);
    const conf = { voters: ['n1', 'n2'], learners: ['n3'] };
    for (const id of ids(3)) net.add(id, new MemStorage(conf));
    for (let i = 0; i < 100; i++) net.tick('n3');
    expect(net.get('n3').role).toBe(StateRole.Follower);
    expect(net.get('n3').term).toBe(0);
    net.get('n3').campaign();
    expect(net.get('n3').role).toBe(StateRole.Follower);
    net.campaign('n1');
    expect(net.get('n1').role).toBe(StateRole.Leader);
    expect(net.delivered.filter((m) => m.type === MessageType.Vote).map((m) => m.to)).toEqual(['n2']);
    net.propose('n1', 'x');
    expect(net.nodes.get('n3')!.applied.map(str)).toEqual(['x']);
    // Promotion makes it a voter that may campaign.
    net.get('n1').proposeConfChange({ type: ConfChangeType.AddVoter, node: 'n3' });
    net.flush();
    net.tickAll(2);
    expect(net.get('n3').status().conf.voters).toContain('n3');
    expect(net.get('n3').promotable()).toBe(true);
  });
});
