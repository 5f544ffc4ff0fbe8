import { describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/errors.js';
import { MessageType, StateRole } from '../../src/raft/types.js';
import { ids, Network, str } from './helpers/network.js';

describe('raft core: leader transfer', () => {
  it('transfers to an up-to-date follower with TimeoutNow', () => {
    const net = new Network(ids(3), { checkQuorum: true, preVote: true });
    net.campaign('n1');
    net.propose('n1', 'a');
    net.get('n1').transferLeader('n2');
    net.flush();
    expect(net.delivered.some((m) => m.type === MessageType.TimeoutNow && m.to === 'n2')).toBe(true);
    expect(net.get('n2').role).toBe(StateRole.Leader);
    expect(net.get('n2').term).toBe(2);
    expect(net.get('n1').role).toBe(StateRole.Follower);
    expect(net.get('n1').lead).toBe('n2');
  });

  it('catches a slow follower up before handing over', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.isolate('n3');
    for (let i = 0; i < 5; i++) net.propose('n1', `e${i}`);
    net.recover();
    net.get('n1').transferLeader('n3');
    net.flush();
    const firstTimeoutNow = net.delivered.findIndex((m) => m.type === MessageType.TimeoutNow);
    const lastApp = net.delivered.findLastIndex(
      (m) => m.type === MessageType.App && m.to === 'n3' && m.term === 1 && m.entries.length > 0,
    );
    expect(lastApp).toBeGreaterThanOrEqual(0);
    expect(lastApp).toBeLessThan(firstTimeoutNow);
    expect(net.get('n3').role).toBe(StateRole.Leader);
    net.tickAll(1);
    expect(net.nodes.get('n3')!.applied.map(str)).toEqual(['e0', 'e1', 'e2', 'e3', 'e4']);
  });

  it('drops proposals during a transfer and aborts it after an election timeout', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.isolate('n3');
    net.propose('n1', 'a');
    net.get('n1').transferLeader('n3');
    net.flush();
    let err: unknown;
    try {
      net.get('n1').propose(new TextEncoder().encode('b'));
    } catch (e) {
      err = e;
    }
    expect(isTidemarkError(err, 'UNAVAILABLE')).toBe(true);
    expect(net.get('n1').status().leadTransferee).toBe('n3');
    net.tick('n1', 10);
    expect(net.get('n1').status().leadTransferee).toBe('');
    expect(net.get('n1').role).toBe(StateRole.Leader);
    net.propose('n1', 'b');
    expect(net.nodes.get('n2')!.applied.map(str)).toEqual(['a', 'b']);
  });

  it('transfer to self or a non-leader call is rejected or ignored', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.get('n1').transferLeader('n1');
    expect(net.get('n1').status().leadTransferee).toBe('');
    let err: unknown;
    try {
      net.get('n2').transferLeader('n3');
    } catch (e) {
      err = e;
    }
    expect(isTidemarkError(err, 'NOT_LEADER')).toBe(true);
  });
});
