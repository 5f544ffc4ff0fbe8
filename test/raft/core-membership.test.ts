import { describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/errors.js';
import { ConfChangeType, MessageType, StateRole } from '../../src/raft/types.js';
import { MemStorage } from './helpers/memory-storage.js';
import { ids, Network, str } from './helpers/network.js';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('raft core: membership changes (one at a time)', () => {
  it('adds a voter that catches up from an empty log and then counts toward the quorum', () => {
    const net = new Network(ids(3), { bootstrap: true });
    net.campaign('n1');
    net.propose('n1', 'a');
    net.add('n4', new MemStorage()); // joins with an empty configuration
    net.get('n1').proposeConfChange({ type: ConfChangeType.AddVoter, node: 'n4' });
    net.flush();
    net.tickAll(2);
    for (const nn of net.nodes.values()) expect(nn.conf.voters).toEqual(ids(4));
    expect(net.nodes.get('n4')!.applied.map(str)).toEqual(['a']);
    // With 4 voters the quorum is 3: two down nodes block commitment.
    net.isolate('n3');
    net.isolate('n4');
    net.propose('n1', 'b');
    expect(net.nodes.get('n1')!.applied.map(str)).toEqual(['a']);
    net.recover();
    net.tickAll(2);
    expect(net.nodes.get('n1')!.applied.map(str)).toEqual(['a', 'b']);
  });

  it('adds a learner (replicated, not counted) and promotes it', () => {
    const net = new Network(ids(2), { bootstrap: true });
    net.campaign('n1');
    net.add('n3', new MemStorage());
    net.get('n1').proposeConfChange({ type: ConfChangeType.AddLearner, node: 'n3' });
    net.flush();
    net.propose('n1', 'x');
    net.tickAll(1);
    expect(net.nodes.get('n3')!.applied.map(str)).toEqual(['x']);
    expect(net.get('n1').status().conf).toEqual({ voters: ['n1', 'n2'], learners: ['n3'] });
    // A learner's acknowledgement does not count: with n2 down nothing commits.
    net.isolate('n2');
    net.propose('n1', 'y');
    expect(net.nodes.get('n1')!.applied.map(str)).toEqual(['x']);
    net.recover();
    net.tickAll(1);
    net.get('n1').proposeConfChange({ type: ConfChangeType.AddVoter, node: 'n3' });
    net.flush();
    net.tickAll(1);
    expect(net.get('n3').status().conf).toEqual({ voters: ['n1', 'n2', 'n3'], learners: [] });
    expect(net.get('n3').promotable()).toBe(true);
  });

  it('accepts only one pending configuration change at a time', () => {
    const net = new Network(ids(3), { bootstrap: true });
    net.campaign('n1');
    net.isolate('n2');
    net.isolate('n3');
    const n1 = net.get('n1');
    n1.proposeConfChange({ type: ConfChangeType.AddLearner, node: 'n4' });
    net.flush();
    const err = caught(() => n1.proposeConfChange({ type: ConfChangeType.AddLearner, node: 'n5' }));
    expect(isTidemarkError(err, 'FAILED_PRECONDITION')).toBe(true);
    net.recover();
    net.tickAll(1); // first change commits and is applied
    expect(n1.status().conf.learners).toEqual(['n4']);
    n1.proposeConfChange({ type: ConfChangeType.AddLearner, node: 'n5' });
    net.flush();
    expect(n1.status().conf.learners).toEqual(['n4', 'n5']);
  });

  it('a new leader cannot change the configuration before committing an entry of its term', () => {
    const net = new Network(ids(3), { bootstrap: true });
    net.drop = (m) => m.type === MessageType.App;
    net.campaign('n1');
    expect(net.get('n1').role).toBe(StateRole.Leader);
    const err = caught(() =>
      net.get('n1').proposeConfChange({ type: ConfChangeType.RemoveNode, node: 'n3' }),
    );
    expect(isTidemarkError(err, 'FAILED_PRECONDITION')).toBe(true);
    net.recover();
    net.tickAll(1);
    net.get('n1').proposeConfChange({ type: ConfChangeType.RemoveNode, node: 'n3' });
    net.flush();
    expect(net.get('n1').status().conf.voters).toEqual(['n1', 'n2']);
  });

  it('removes the leader: it hands over with TimeoutNow, steps down and never campaigns', () => {
    const net = new Network(ids(3), { bootstrap: true });
    net.campaign('n1');
    net.propose('n1', 'a');
    net.get('n1').proposeConfChange({ type: ConfChangeType.RemoveNode, node: 'n1' });
    net.flush();
    expect(net.get('n1').role).toBe(StateRole.Follower);
    expect(net.get('n1').promotable()).toBe(false);
    expect(net.delivered.some((m) => m.type === MessageType.TimeoutNow && m.from === 'n1')).toBe(true);
    expect(['n2', 'n3']).toContain(net.leader()?.id);
    net.tickAll(1);
    for (let i = 0; i < 40 && !net.leader(); i++) net.tickAll(1);
    const lead = net.leader();
    expect(lead && lead.id !== 'n1').toBe(true);
    for (let i = 0; i < 30; i++) net.tickAll(1);
    expect(net.get('n1').role).toBe(StateRole.Follower);
    // The new configuration is {n2, n3}; both apply new proposals.
    net.propose(lead!.id, 'b');
    net.tickAll(1);
    expect(net.nodes.get('n2')!.applied.map(str)).toEqual(['a', 'b']);
    expect(net.nodes.get('n3')!.applied.map(str)).toEqual(['a', 'b']);
    expect(net.get('n2').status().conf.voters).toEqual(['n2', 'n3']);
  });

  it('a removed leader catches the remaining voter up before handing over (2 -> 1 voters)', () => {
    const net = new Network(ids(2), { bootstrap: true });
    net.campaign('n1');
    net.tickAll(1);
    const n1 = net.get('n1');
    const r = n1.proposeConfChange({ type: ConfChangeType.RemoveNode, node: 'n1' }).index;
    n1.propose(new TextEncoder().encode('x'));
    // n2 gets the removal but not what follows it.
    net.mutate = (m) =>
      m.type === MessageType.App && m.to === 'n2'
        ? { ...m, entries: m.entries.filter((e) => e.index <= r) }
        : m;
    net.flush();
    expect(n1.status().conf.voters).toEqual(['n2']); // removal applied on n1 ...
    expect(n1.role).toBe(StateRole.Leader); // ... which leads on until n2 has its whole log
    expect(() => n1.propose(new TextEncoder().encode('y'))).toThrow();
    net.recover();
    net.tickAll(2);
    expect(n1.role).toBe(StateRole.Follower);
    expect(net.get('n2').role).toBe(StateRole.Leader);
    expect(net.get('n2').status().conf.voters).toEqual(['n2']);
    expect(net.nodes.get('n2')!.applied.map(str)).toEqual(['x']);
  });

  it('removing a follower shrinks the quorum', () => {
    const net = new Network(ids(3), { bootstrap: true });
    net.campaign('n1');
    net.get('n1').proposeConfChange({ type: ConfChangeType.RemoveNode, node: 'n3' });
    net.flush();
    net.isolate('n3');
    net.propose('n1', 'a');
    expect(net.nodes.get('n1')!.applied.map(str)).toEqual(['a']);
  });

  it('refuses to remove the last voter', () => {
    const net = new Network(ids(1));
    net.campaign('n1');
    const err = caught(() =>
      net.get('n1').proposeConfChange({ type: ConfChangeType.RemoveNode, node: 'n1' }),
    );
    expect(isTidemarkError(err, 'INVALID_ARGUMENT')).toBe(true);
  });
});
