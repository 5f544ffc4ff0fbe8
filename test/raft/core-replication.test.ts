import { describe, expect, it } from 'vitest';
import { isTidemarkError } from '../../src/errors/errors.js';
import { RawNode } from '../../src/raft/core.js';
import { type Entry, MessageType, StateRole } from '../../src/raft/types.js';
import { Rng } from '../../src/util/random.js';
import { entriesWithTerms, MemStorage } from './helpers/memory-storage.js';
import { ids, msg, Network, str } from './helpers/network.js';

const enc = (s: string) => new TextEncoder().encode(s);

function terms(node: RawNode): number[] {
  const out: number[] = [];
  for (let i = node.log.firstIndex(); i <= node.log.lastIndex(); i++) out.push(node.log.term(i) ?? -1);
  return out;
}

describe('raft core: log replication', () => {
  it('replicates and commits proposals on all nodes, in order', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    for (const s of ['a', 'b', 'c']) net.propose('n1', s);
    net.get('n1').propose([enc('d'), enc('e')]);
    net.flush();
    net.tickAll(1); // heartbeat carries the final commit index
    for (const nn of net.nodes.values()) {
      expect(nn.applied.map(str)).toEqual(['a', 'b', 'c', 'd', 'e']);
      expect(nn.node.log.committed).toBe(6);
    }
  });

  // Raft paper Figure 7: the leader of term 8 brings each of the follower logs (a)-(f) in line with its own.
  const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const followerLogs: Record<string, number[]> = {
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };
  for (const [name, flog] of Object.entries(followerLogs)) {
    it(`Figure 7 follower (${name}): missing entries filled, conflicting entries truncated`, () => {
      const conf = { voters: ids(3), learners: [] };
      const ls = new MemStorage(conf);
      ls.append(entriesWithTerms(leaderLog));
      ls.hardState = { term: 8, vote: '', commit: leaderLog.length };
      const fs = new MemStorage(conf);
      fs.append(entriesWithTerms(flog));
      fs.hardState = { term: 7, vote: '', commit: 0 };
      const net = new Network([]);
      net.add('n1', ls);
      net.add('n2', fs);
      // n3 is absent: its vote is injected (n2 may have a longer log and refuse n1).
      net.get('n1').campaign();
      net.send(msg({ type: MessageType.VoteResp, from: 'n3', to: 'n1', term: 9 }));
      expect(net.get('n1').role).toBe(StateRole.Leader);
      net.propose('n1', 'x');
      expect(terms(net.get('n2'))).toEqual(terms(net.get('n1')));
      expect(terms(net.get('n1'))).toEqual([...leaderLog, 9, 9]);
      // Storage (what is durable) agrees too.
      expect(fs.lastIndex()).toBe(12);
      for (let i = 1; i <= 12; i++) expect(fs.term(i)).toBe(ls.term(i));
    });
  }

  it('fast backtracking skips a whole conflicting term per round trip', () => {
    const conf = { voters: ids(3), learners: [] };
    const ls = new MemStorage(conf);
    ls.append(entriesWithTerms([1, ...Array(50).fill(3)]));
    ls.hardState = { term: 3, vote: '', commit: 1 };
    const fs = new MemStorage(conf);
    fs.append(entriesWithTerms([1, ...Array(100).fill(2)]));
    fs.hardState = { term: 3, vote: '', commit: 1 };
    const net = new Network([]);
    net.add('n1', ls);
    net.add('n2', fs);
    net.get('n1').campaign();
    net.send(msg({ type: MessageType.VoteResp, from: 'n3', to: 'n1', term: 4 }));
    const rejects = net.delivered.filter((m) => m.type === MessageType.AppResp && m.reject);
    expect(rejects.length).toBeLessThanOrEqual(2);
    expect(terms(net.get('n2'))).toEqual(terms(net.get('n1')));
  });

  it('Figure 8: entries of an earlier term are not committed by counting replicas', () => {
    const conf = { voters: ids(5), learners: [] };
    const mk = (log: number[], term: number) => {
      const s = new MemStorage(conf);
      s.append(entriesWithTerms(log));
      s.hardState = { term, vote: '', commit: 1 };
      return s;
    };
    // State (c) of Figure 8 before S1 replicates: S1,S2 have (2, term 2); S5 has (2, term 3).
    const setup = () => {
      const net = new Network([]);
      net.add('n1', mk([1, 2], 3), { maxSizePerMsg: 1 }); // one entry per append
      net.add('n2', mk([1, 2], 3));
      net.add('n3', mk([1], 3));
      net.add('n4', mk([1], 3));
      net.add('n5', mk([1, 3], 3));
      return net;
    };

    // (c): S1 leads term 4 and gets index 2 (term 2) onto S3 — a majority — but nothing of term 4.
    const net = setup();
    net.isolate('n5');
    // Appends lose every entry from index 3 on (the term-4 entries never reach anyone).
    net.mutate = (m) =>
      m.type === MessageType.App ? { ...m, entries: m.entries.filter((e) => e.index < 3) } : m;
    net.campaign('n1');
    expect(net.get('n1').role).toBe(StateRole.Leader);
    expect(net.get('n1').term).toBe(4);
    net.tickAll(3);
    expect(net.get('n3').log.term(2)).toBe(2);
    expect(net.get('n1').log.committed).toBe(1); // NOT committed despite being on 3 of 5
    // (d): S1 crashes, S5 wins term 5 (its last term 3 beats 2) and overwrites index 2 everywhere.
    net.recover();
    net.isolate('n1');
    net.campaign('n5'); // term 4: everyone already voted for S1
    net.campaign('n5'); // term 5
    expect(net.get('n5').role).toBe(StateRole.Leader);
    expect(net.get('n5').term).toBe(5);
    net.tickAll(2);
    for (const id of ['n2', 'n3', 'n4', 'n5']) expect(net.get(id).log.term(2)).toBe(3);

    // (e): instead, S1 replicates an entry of its own term to a majority: index 2 commits with it, and S5
    // can no longer win an election.
    const net2 = setup();
    net2.isolate('n5');
    net2.campaign('n1');
    net2.propose('n1', 'x');
    expect(net2.get('n1').log.committed).toBe(4);
    net2.recover();
    net2.isolate('n1');
    net2.campaign('n5');
    net2.campaign('n5');
    expect(net2.get('n5').role).not.toBe(StateRole.Leader);
  });

  it('sends a snapshot to a follower behind the compaction point', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.isolate('n3');
    for (let i = 0; i < 20; i++) net.propose('n1', `e${i}`);
    const n1 = net.nodes.get('n1')!;
    const applied = n1.node.log.applied;
    n1.storage.compact(applied, n1.conf, enc(JSON.stringify(n1.applied.map(str))));
    expect(n1.storage.firstIndex()).toBe(applied + 1);
    net.recover();
    net.tickAll(2);
    const n3 = net.nodes.get('n3')!;
    expect(net.delivered.some((m) => m.type === MessageType.Snap && m.to === 'n3')).toBe(true);
    expect(n3.storage.snapshotMeta().index).toBe(applied);
    expect(n3.node.log.committed).toBe(n1.node.log.committed);
    expect(n3.node.log.applied).toBe(n1.node.log.applied);
    // And normal replication resumes.
    net.propose('n1', 'after');
    net.tickAll(1);
    expect(n3.applied.map(str)).toEqual(['after']);
    const st = net.get('n1').status();
    expect(st.progress?.get('n3')?.state).toBe('replicate');
  });

  it('a failed snapshot is resent after reportSnapshot(false)', () => {
    const net = new Network(ids(3));
    net.campaign('n1');
    net.isolate('n3');
    for (let i = 0; i < 5; i++) net.propose('n1', `e${i}`);
    const n1 = net.nodes.get('n1')!;
    n1.storage.compact(n1.node.log.applied, n1.conf, enc('img'));
    net.recover();
    net.ignore(MessageType.Snap);
    net.tickAll(2);
    expect(net.get('n1').status().progress?.get('n3')?.state).toBe('snapshot');
    net.get('n1').reportSnapshot('n3', false);
    net.recover();
    net.tickAll(3);
    expect(net.get('n3').log.committed).toBe(net.get('n1').log.committed);
  });

  it('bounds uncommitted entries on the leader', () => {
    const s = new MemStorage({ voters: ['n1', 'n2'], learners: [] });
    const node = new RawNode({
      id: 'n1',
      storage: s,
      electionTick: 10,
      heartbeatTick: 1,
      maxUncommittedEntriesSize: 1000,
      random: new Rng(1).fn(),
    });
    node.campaign();
    node.step(msg({ type: MessageType.VoteResp, from: 'n2', to: 'n1', term: 1 }));
    expect(node.role).toBe(StateRole.Leader);
    node.propose(new Uint8Array(600));
    node.propose(new Uint8Array(300));
    let err: unknown;
    try {
      node.propose(new Uint8Array(200));
    } catch (e) {
      err = e;
    }
    expect(isTidemarkError(err, 'RESOURCE_EXHAUSTED')).toBe(true);
  });

  it('pipelines appends up to maxInflightMsgs and respects maxSizePerMsg', () => {
    const net = new Network(ids(2), { maxInflightMsgs: 2, maxSizePerMsg: 100 });
    net.campaign('n1');
    net.ignore(MessageType.AppResp);
    const n1 = net.get('n1');
    for (let i = 0; i < 10; i++) n1.propose(new Uint8Array(50));
    net.flush();
    // After the two in-flight appends, replication pauses until acknowledgements arrive.
    const apps = net.delivered.filter(
      (m) => m.type === MessageType.App && m.entries.length > 0 && m.index >= 1,
    );
    expect(apps.length).toBe(2);
    for (const m of apps)
      expect(m.entries.reduce((a: number, e: Entry) => a + e.data.length, 0)).toBeLessThanOrEqual(100);
    net.recover();
    net.tickAll(3);
    expect(net.get('n2').log.committed).toBe(11);
  });
});
