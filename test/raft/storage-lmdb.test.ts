import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeIndexKey, encodeEntry, indexKey } from '../../src/raft/codec.js';
import { LmdbLogEnv, LmdbLogStorage } from '../../src/raft/storage-lmdb.js';
import type { SnapshotLogStorage } from '../../src/raft/storage-memory.js';
import { ent, logStorageSuite } from './storage-suite.js';

const root = mkdtempSync(join(tmpdir(), 'tidemark-raft-lmdb-'));
let n = 0;
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Default entry cache, no cache (every read from LMDB) and a tiny cache (constant eviction) with
// compacted entries deleted one per save.
for (const [label, cacheBytes, gcBatch] of [
  ['lmdb', undefined, undefined],
  ['lmdb, no entry cache', 0, undefined],
  ['lmdb, 200-byte entry cache, gc 1/save', 200, 1],
] as const) {
  logStorageSuite(label, {
    create: (conf) => LmdbLogStorage.open({ path: join(root, `log-${n++}`), conf, cacheBytes, gcBatch }),
    reopen: async (s: SnapshotLogStorage) => {
      const l = s as LmdbLogStorage;
      await l.close();
      return LmdbLogStorage.open({ path: l.path, cacheBytes, gcBatch });
    },
  });
}

// Many logs in one shared environment (a node's shards): the same contract for each, and a log closed and
// reopened under its name finds its own state while its neighbours keep running.
const shared = LmdbLogEnv.open(join(root, 'shared'), { maxLogs: 256 });
const names = new Map<SnapshotLogStorage, string>();
afterAll(() => shared.close());
logStorageSuite('lmdb, shared environment', {
  create: async (conf) => {
    const name = `shard-${n++}`;
    // A noisy neighbour in the same environment, written to while the log under test works.
    const neighbour = await LmdbLogStorage.open({ path: '', env: shared, name: `${name}-neighbour`, conf });
    await neighbour.save({ term: 9, vote: 'x', commit: 0 }, [ent(1, 9), ent(2, 9)]);
    const s = await LmdbLogStorage.open({ path: '', env: shared, name, conf });
    names.set(s, name);
    return s;
  },
  reopen: async (s: SnapshotLogStorage) => {
    const name = names.get(s)!;
    await (s as LmdbLogStorage).close();
    const r = await LmdbLogStorage.open({ path: '', env: shared, name });
    names.set(r, name);
    return r;
  },
});

describe('LmdbLogStorage', () => {
  it('uses 8-byte big-endian index keys', () => {
    expect(Array.from(indexKey(0x0102030405))).toEqual([0, 0, 0, 1, 2, 3, 4, 5]);
    // Version byte, type, varint term, varint index, data.
    expect(Array.from(encodeEntry({ index: 300, term: 2, type: 1, data: new Uint8Array([9]) }))).toEqual([
      1, 1, 2, 0xac, 0x02, 9,
    ]);
  });

  it('ignores the initial conf of an existing log', async () => {
    const path = join(root, 'conf');
    const a = await LmdbLogStorage.open({ path, conf: { voters: ['a'], learners: [] } });
    await a.save({ term: 1, vote: 'a', commit: 0 }, [ent(1, 1)]);
    await a.close();
    const b = await LmdbLogStorage.open({ path, conf: { voters: ['z'], learners: [] } });
    expect(b.initialState().conf).toEqual({ voters: ['a'], learners: [] });
    expect(b.lastIndex()).toBe(1);
    await b.close();
    await expect(b.save(undefined, [ent(2, 1)])).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('deletes compacted entries lazily, a batch per save, and resumes after a reopen', async () => {
    const path = join(root, 'gc');
    const s = await LmdbLogStorage.open({ path, gcBatch: 10 });
    const ents = Array.from({ length: 100 }, (_, i) => ent(i + 1, 1));
    await s.save(undefined, ents);
    await s.compact(80, { voters: ['a'], learners: [] });
    expect(s.firstIndex()).toBe(81);
    expect(s.storedEntryCount()).toBe(100); // garbage is still there, unreachable
    await s.save(undefined, [ent(101, 1)]);
    expect(s.storedEntryCount()).toBe(91); // 10 deleted by this save
    await s.close();
    const r = await LmdbLogStorage.open({ path, gcBatch: 10 });
    expect(r.firstIndex()).toBe(81);
    expect(r.lastIndex()).toBe(101);
    expect(r.entries(81, 102).length).toBe(21);
    await r.save(undefined, [ent(102, 1)]);
    expect(r.storedEntryCount()).toBe(82);
    await r.collectAllGarbage();
    expect(r.storedEntryCount()).toBe(22);
    // Compacting everything leaves only garbage; a reopen sees an empty log after the snapshot.
    await r.compact(102, { voters: ['a'], learners: [] });
    await r.close();
    const t = await LmdbLogStorage.open({ path, gcBatch: 10 });
    expect(t.firstIndex()).toBe(103);
    expect(t.lastIndex()).toBe(102);
    expect(t.term(102)).toBe(1);
    await t.collectAllGarbage();
    expect(t.storedEntryCount()).toBe(0);
    await t.close();
  });

  it('serializes concurrent saves in call order', async () => {
    const s = await LmdbLogStorage.open({ path: join(root, 'concurrent') });
    const ps = [];
    for (let i = 1; i <= 50; i++) ps.push(s.save({ term: 1, vote: '', commit: i - 1 }, [ent(i, 1)]));
    ps.push(s.save(undefined, [ent(40, 2)]));
    await Promise.all(ps);
    expect(s.lastIndex()).toBe(40);
    expect(s.term(40)).toBe(2);
    expect(s.initialState().hardState.commit).toBe(49);
    await s.close();
  });
});

describe('LmdbLogEnv', () => {
  it('closing shrinks a file that compaction left mostly free, and the logs reopen intact', async () => {
    const dir = join(root, `shrink-${n++}`);
    const conf = { voters: ['a'], learners: [] };
    const big = new Uint8Array(16 * 1024).fill(7);
    let env = LmdbLogEnv.open(dir, { maxLogs: 4 });
    let a = await LmdbLogStorage.open({ path: '', env, name: 'shard-0', conf });
    let b = await LmdbLogStorage.open({ path: '', env, name: 'shard-1', conf });
    const entries = Array.from({ length: 400 }, (_, i) => ({ ...ent(i + 1, 1), data: big }));
    await a.save({ term: 1, vote: 'a', commit: 400 }, entries);
    await b.save({ term: 1, vote: 'a', commit: 3 }, entries.slice(0, 3));
    // Log a is compacted up to 390 (as a clean stop does), b keeps its three entries.
    await a.compact(390, conf, new Uint8Array([1, 2, 3]));
    await a.collectAllGarbage();
    await a.close();
    await b.close();
    const file = join(dir, 'data.mdb');
    const before = statSync(file).size;
    expect(before).toBeGreaterThan(6 * 1024 * 1024);
    await env.close();
    const after = statSync(file).size;
    expect(after * 2).toBeLessThanOrEqual(before);
    expect(existsSync(join(dir, 'shrink.tmp'))).toBe(false);
    env = LmdbLogEnv.open(dir, { maxLogs: 4 });
    a = await LmdbLogStorage.open({ path: '', env, name: 'shard-0' });
    b = await LmdbLogStorage.open({ path: '', env, name: 'shard-1' });
    expect(a.initialState().hardState).toEqual({ term: 1, vote: 'a', commit: 400 });
    expect(a.firstIndex()).toBe(391);
    expect(a.lastIndex()).toBe(400);
    expect(Array.from(a.entries(391, 401, Number.MAX_SAFE_INTEGER)[9]!.data.subarray(0, 2))).toEqual([7, 7]);
    expect(a.snapshot().data).toEqual(new Uint8Array([1, 2, 3]));
    expect(b.lastIndex()).toBe(3);
    await a.save(undefined, [ent(401, 1)]);
    expect(a.lastIndex()).toBe(401);
    await a.close();
    await b.close();
    // A file that is mostly live data is left as it is.
    const size = statSync(file).size;
    await env.close();
    expect(statSync(file).size).toBe(size);
  });
});

describe('index keys', () => {
  it('round-trip and sort like the numbers they encode', () => {
    const xs = [0, 1, 255, 256, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER];
    for (const x of xs) expect(decodeIndexKey(indexKey(x))).toBe(x);
    const sorted = xs.map(indexKey).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(sorted.map(decodeIndexKey)).toEqual(xs);
  });
});
