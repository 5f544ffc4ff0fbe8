import { describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/errors.js';
import { MessageType, StateRole } from '../../src/raft/types.js';
import { ids, Network } from './helpers/network.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe('raft core: ReadIndex', () => {
  it('the leader confirms leadership with a heartbeat round before answering', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.propose('n1', 'a');
    const before = net.delivered.length;
    net.get('n1').readIndex(enc('r1'));
    net.flush();
    const hb = net.delivered.slice(before).filter((m) => m.type === MessageType.Heartbeat);
    expect(hb.length).toBe(2);
    expect(hb.every((m) => m.context && dec(m.context) === 'r1')).toBe(true);
    const rs = net.nodes.get('n1')!.readStates;
    expect(rs).toHaveLength(1);
    expect(dec(rs[0].context)).toBe('r1');
    expect(rs[0].index).toBe(2);
  });

  it('a follower forwards the request and gets the leader commit index', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.propose('n1', 'a');
    net.get('n2').readIndex(enc('f1'));
    net.flush();
    const rs = net.nodes.get('n2')!.readStates;
    expect(rs).toHaveLength(1);
    expect(rs[0].index).toBe(net.get('n1').log.committed);
  });

  it('an isolated leader cannot serve reads', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.isolate('n1');
    net.get('n1').readIndex(enc('r'));
    net.tick('n1', 5);
    expect(net.nodes.get('n1')!.readStates).toHaveLength(0);
  });

  it('after a leader change no read is served before the new leader commits in its term', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.propose('n1', 'a');
    net.isolate('n1');
    net.drop = (m) => m.type === MessageType.App; // the new leader's no-op cannot replicate
    net.campaign('n2');
    const n2 = net.get('n2');
    expect(n2.role).toBe(StateRole.Leader);
    const noopIndex = n2.log.lastIndex();
    expect(n2.log.committed).toBeLessThan(noopIndex);
    net.tick('n2', 1); // heartbeats tell n3 who leads
    n2.readIndex(enc('r'));
    net.get('n3').readIndex(enc('r3'));
    net.flush();
    net.tick('n2', 3);
    expect(net.nodes.get('n2')!.readStates).toHaveLength(0);
    expect(net.nodes.get('n3')!.readStates).toHaveLength(0);
    net.drop = undefined;
    net.tick('n2', 2);
    const rs = net.nodes.get('n2')!.readStates;
    expect(rs).toHaveLength(1);
    expect(rs[0].index).toBeGreaterThanOrEqual(noopIndex);
    const rs3 = net.nodes.get('n3')!.readStates;
    expect(rs3).toHaveLength(1);
    expect(rs3[0].index).toBeGreaterThanOrEqual(noopIndex);
  });

  it('a follower without a known leader throws NOT_LEADER', () => {
    const net = new Network(ids(3));
    let err: unknown;
    try {
      net.get('n2').readIndex(enc('x'));
    } catch (e) {
      err = e;
    }
    expect(isTidemarkError(err, 'NOT_LEADER')).toBe(true);
  });

  it('a single-voter leader answers at once (after committing in its term)', () => {
    const net = new Network(ids(1));
    net.campaign('n1');
    net.get('n1').readIndex(enc('s'));
    net.flush();
    expect(net.nodes.get('n1')!.readStates.map((r) => r.index)).toEqual([1]);
  });
});
