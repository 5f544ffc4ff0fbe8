/**
 * Lease-based reads (readMode 'lease', etcd ReadOnlyLeaseBased with the lease counted from the send
 * time of the acknowledged heartbeat round; src/raft/read-only.ts).
 */
import { describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/errors.js';
import { RawNode } from '../../src/raft/core.js';
import { LEASE_GUARD_TICKS } from '../../src/raft/read-only.js';
import { MessageType, type NodeId, StateRole } from '../../src/raft/types.js';
import { Rng } from '../../src/util/random.js';
import { MemStorage } from './helpers/memory-storage.js';
import { ids, type NetNode, type NetNodeOptions, Network } from './helpers/network.js';

const ELECTION = 10;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const SEED = Number(process.env.TIDEMARK_SEED ?? 1);

/** The test network, with every node in lease mode (the helper's nodes are rebuilt with readMode). */
class LeaseNetwork extends Network {
  static rng = new Rng(SEED);
  override add(id: NodeId, storage: MemStorage, opts: NetNodeOptions = {}): NetNode {
    const nn = super.add(id, storage, opts);
    nn.node = new RawNode({
      id,
      storage,
      electionTick: ELECTION,
      heartbeatTick: 1,
      preVote: true,
      checkQuorum: true,
      readMode: 'lease',
      random: LeaseNetwork.rng.fork().fn(),
    });
    return nn;
  }
}

function leaderWithLease(): LeaseNetwork {
  const net = new LeaseNetwork(ids(3));
  net.campaign('n1');
  net.propose('n1', 'a');
  net.tick('n1', 1); // one acknowledged heartbeat round: the lease
  return net;
}

const reads = (net: Network, id: NodeId) => net.nodes.get(id)!.readStates;

describe('raft core: lease reads', () => {
  it('refuses lease mode without checkQuorum', () => {
    let err: unknown;
    try {
      new RawNode({
        id: 'n1',
        storage: new MemStorage({ voters: ['n1'], learners: [] }),
        electionTick: ELECTION,
        heartbeatTick: 1,
        readMode: 'lease',
        random: () => 0,
      });
    } catch (e) {
      err = e;
    }
    expect(isTidemarkError(err, 'INVALID_ARGUMENT')).toBe(true);
  });

  it('the leader answers from its commit index without a message while the lease holds', () => {
    const net = leaderWithLease();
    const before = net.delivered.length;
    net.get('n1').readIndex(enc('r1'));
    net.flush();
    expect(net.delivered.slice(before)).toEqual([]);
    const rs = reads(net, 'n1');
    expect(rs.map((r) => dec(r.context))).toEqual(['r1']);
    expect(rs[0]!.index).toBe(net.get('n1').log.committed);
  });

  it('a follower gets the answer in one round trip (no heartbeat round)', () => {
    const net = leaderWithLease();
    const before = net.delivered.length;
    net.get('n2').readIndex(enc('f1'));
    net.flush();
    expect(net.delivered.slice(before).map((m) => m.type)).toEqual([
      MessageType.ReadIndex,
      MessageType.ReadIndexResp,
    ]);
    expect(reads(net, 'n2')[0]!.index).toBe(net.get('n1').log.committed);
  });

  it('without an acknowledged round yet (new leader), reads take the heartbeat round', () => {
    const net = new LeaseNetwork(ids(3));
    net.campaign('n1');
    net.propose('n1', 'a');
    const before = net.delivered.length;
    net.get('n1').readIndex(enc('r'));
    net.flush();
    const hb = net.delivered.slice(before).filter((m) => m.type === MessageType.Heartbeat);
    expect(hb.map((m) => dec(m.context!))).toEqual(['r', 'r']);
    expect(reads(net, 'n1')).toHaveLength(1);
  });

  it('expires electionTick - guard ticks after the last acknowledged round once quorum contact is lost', () => {
    const net = leaderWithLease();
    net.isolate('n1');
    const lease = ELECTION - LEASE_GUARD_TICKS;
    net.tick('n1', lease);
    net.get('n1').readIndex(enc('in'));
    net.flush();
    expect(reads(net, 'n1').map((r) => dec(r.context))).toEqual(['in']);
    net.tick('n1', 1);
    net.get('n1').readIndex(enc('out'));
    net.flush();
    net.tick('n1', 1);
    expect(reads(net, 'n1').map((r) => dec(r.context))).toEqual(['in']);
    expect(net.get('n1').role).toBe(StateRole.Leader); // still leader (checkQuorum has not fired yet)
  });

  it('a new leader serves no lease read before it commits an entry of its term', () => {
    const net = leaderWithLease();
    net.isolate('n1');
    net.drop = (m) => m.type === MessageType.App; // n2's no-op cannot replicate
    net.tick('n3', ELECTION); // n3 leaves n1's lease
    net.campaign('n2');
    const n2 = net.get('n2');
    expect(n2.role).toBe(StateRole.Leader);
    net.tick('n2', 2); // acknowledged lease rounds, but nothing committed in the term
    expect(n2.log.committed).toBeLessThan(n2.log.lastIndex());
    n2.readIndex(enc('r'));
    net.flush();
    expect(reads(net, 'n2')).toHaveLength(0);
    net.drop = undefined;
    net.tick('n2', 1);
    expect(reads(net, 'n2')).toHaveLength(1);
    expect(reads(net, 'n2')[0]!.index).toBe(n2.log.lastIndex());
    n2.readIndex(enc('r2'));
    const before = net.delivered.length;
    net.flush();
    expect(net.delivered.slice(before)).toEqual([]);
    expect(reads(net, 'n2')).toHaveLength(2);
  });

  it('a leader transfer ends lease reads for the term', () => {
    const net = leaderWithLease();
    net.ignore(MessageType.TimeoutNow); // the transfer never completes
    net.get('n1').transferLeader('n2');
    net.flush();
    const before = net.delivered.length;
    net.get('n1').readIndex(enc('r'));
    net.flush();
    const hb = net.delivered.slice(before).filter((m) => m.type === MessageType.Heartbeat);
    expect(hb.map((m) => dec(m.context!))).toEqual(['r', 'r']);
    net.tick('n1', ELECTION + 1); // the transfer is abandoned; still no lease in this term
    net.get('n1').readIndex(enc('r2'));
    const before2 = net.delivered.length;
    net.flush();
    expect(net.delivered.slice(before2).filter((m) => m.type === MessageType.Heartbeat)).toHaveLength(2);
  });

  it('a partitioned old leader never serves a lease read while another leader exists (seeded clocks)', () => {
    const seeds = process.env.TIDEMARK_SEED ? [SEED] : Array.from({ length: 20 }, (_, i) => i + 1);
    for (const seed of seeds) {
      try {
        LeaseNetwork.rng = new Rng(seed);
        const net = leaderWithLease();
        const rng = new Rng(seed * 7919);
        // The old leader is cut off at a random point of its heartbeat cycle.
        net.tick('n1', rng.int(0, 3));
        net.isolate('n1');
        let newLeaderAt = -1;
        for (let t = 0; t < 4 * ELECTION; t++) {
          // Same tick rate everywhere; the order within a tick is random.
          for (const id of rng.next() < 0.5 ? ['n1', 'n2', 'n3'] : ['n3', 'n2', 'n1']) net.tick(id, 1);
          const other = ['n2', 'n3'].find((id) => net.get(id).role === StateRole.Leader);
          if (other !== undefined && newLeaderAt < 0) {
            newLeaderAt = t;
            net.propose(other, `w${t}`); // a write the old leader has not seen
          }
          if (newLeaderAt >= 0 && net.get('n1').role === StateRole.Leader) {
            const n = reads(net, 'n1').length;
            net.get('n1').readIndex(enc(`stale${t}`));
            net.flush();
            expect(reads(net, 'n1').length, `stale read at tick ${t}`).toBe(n);
          }
        }
        expect(newLeaderAt).toBeGreaterThanOrEqual(0);
      } catch (err) {
        console.error(
          `seed ${seed} failed; replay: TIDEMARK_SEED=${seed} npx vitest run test/raft/core-lease.test.ts`,
        );
        throw err;
      }
    }
  });
});
