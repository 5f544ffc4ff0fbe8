import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  decideIncarnation,
  type HelloAnswer,
  memberId,
  memberOfNode,
  nodeOfMember,
  readIdentity,
  writeIdentity,
} from '../../src/cluster/member.js';

const answer = (node: string, progressedShards: number[] = [], started = true): HelloAnswer => ({
  node,
  started,
  progressedShards,
});

describe('member ids', () => {
  it('the founding incarnation is the node id; later ones carry the incarnation', () => {
    expect(memberId('a', '')).toBe('a');
    expect(memberId('a', '0f3c9a21')).toBe('a~0f3c9a21');
    expect(nodeOfMember('a~0f3c9a21')).toBe('a');
    expect(nodeOfMember('node-1.x')).toBe('node-1.x');
    expect(memberOfNode(['a', 'b', 'b~1'], 'b')).toBe('b~1');
    expect(memberOfNode(['a', 'b'], 'c')).toBeUndefined();
  });
});

describe('decideIncarnation', () => {
  const shardPeers = new Map([
    [0, ['b', 'c']],
    [1, ['c', 'd']],
  ]);
  const fresh = () => 'beef0001';

  it('founds only when every peer of every hosted shard answered without progress', () => {
    expect(decideIncarnation(shardPeers, new Map([['b', answer('b')]]), fresh)).toBeUndefined();
    const all = new Map(['b', 'c', 'd'].map((n) => [n, answer(n, [], false)]));
    expect(decideIncarnation(shardPeers, all, fresh)).toBe('');
  });

  it('any answer with progress on a hosted shard decides a new incarnation at once', () => {
    expect(decideIncarnation(shardPeers, new Map([['d', answer('d', [1])]]), fresh)).toBe('beef0001');
  });

  it('progress on a shard this node does not host is no reason', () => {
    const all = new Map(['b', 'c', 'd'].map((n) => [n, answer(n, [7])]));
    expect(decideIncarnation(shardPeers, all, fresh)).toBe('');
  });
});

describe('identity file', () => {
  it('absent on a new directory; founding for a directory with a Raft log but no file; refuses another node', () => {
    const root = mkdtempSync(join(tmpdir(), 'tidemark-identity-'));
    const fresh = join(root, 'fresh');
    expect(readIdentity(fresh, 'a')).toBeUndefined();
    const old = join(root, 'old');
    mkdirSync(join(old, 'raft-log'), { recursive: true });
    expect(readIdentity(old, 'a')).toMatchObject({ nodeId: 'a', incarnation: '' });
    writeIdentity(fresh, { format: 1, nodeId: 'a', incarnation: '12345678', createdAtMs: 1 });
    expect(readIdentity(fresh, 'a')).toMatchObject({ incarnation: '12345678' });
    expect(() => readIdentity(fresh, 'b')).toThrow(/belongs to node a/);
    writeFileSync(join(fresh, 'identity.json'), '{not json');
    expect(() => readIdentity(fresh, 'a')).toThrow(/not valid JSON/);
  });
});
