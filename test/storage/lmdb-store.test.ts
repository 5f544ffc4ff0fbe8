import { copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { afterAll, describe, expect, it } from 'vitest';
import { isTidemarkError, type TidemarkError } from '../../src/errors/index.js';
import type { Series } from '../../src/model/index.js';
import {
  DEFAULT_STORE_OPTIONS,
  LmdbShardStore,
  resolveStoreOptions,
  type ShardStore,
} from '../../src/storage/index.js';
import { readImageMeta } from '../../src/storage/snapshot.js';
import { poll } from '../helpers/wait.js';
import { batch, dump, series, tempDir } from './helpers.js';

const CPU_A = series('cpu', { host: 'a' });

import { describeShardStore } from './store-suite.js';

const dirs = new Map<ShardStore, string>();
const cleanups: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanups) c();
});

describeShardStore('LmdbShardStore', {
  create: async (options) => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = await LmdbShardStore.open(dir, options);
    dirs.set(s, dir);
    return s;
  },
  reopen: async (store, options) => {
    const dir = dirs.get(store)!;
    await store.close();
    const s = await LmdbShardStore.open(dir, options);
    dirs.set(s, dir);
    return s;
  },
});

describeShardStore('LmdbShardStore (deferred sync)', {
  create: async (options) => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = await LmdbShardStore.open(dir, { ...options, syncIntervalMs: 20 });
    dirs.set(s, dir);
    return s;
  },
  reopen: async (store, options) => {
    const dir = dirs.get(store)!;
    await store.close();
    const s = await LmdbShardStore.open(dir, { ...options, syncIntervalMs: 20 });
    dirs.set(s, dir);
    return s;
  },
});

describeShardStore('LmdbShardStore (pipelined sync)', {
  create: async (options) => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = await LmdbShardStore.open(dir, { ...options, pipelinedSync: true });
    dirs.set(s, dir);
    return s;
  },
  reopen: async (store, options) => {
    const dir = dirs.get(store)!;
    await store.close();
    const s = await LmdbShardStore.open(dir, { ...options, pipelinedSync: true });
    dirs.set(s, dir);
    return s;
  },
});

describe('LmdbShardStore pipelined sync', () => {
  /** A copy of the directory as it is now (what a crash leaves), with the marker rewritten if `boot` is given. */
  function crashCopy(dir: string, boot?: string): string {
    const copy = tempDir('tidemark-crash-image-');
    cleanups.push(copy.cleanup);
    copyFileSync(join(dir, 'data.mdb'), join(copy.dir, 'data.mdb'));
    copyFileSync(join(dir, 'UNSYNCED'), join(copy.dir, 'UNSYNCED'));
    if (boot !== undefined) writeFileSync(join(copy.dir, 'UNSYNCED'), `${boot}\npipelined\n`);
    return copy.dir;
  }

  it('an OS restart opens the previous (synced) snapshot, at or past the reported durable index', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = await LmdbShardStore.open(dir, { pipelinedSync: true });
    expect(s.capabilities.syncDeferred).toBe(true);
    for (let k = 1; k <= 6; k++) await s.applyBatch(k, batch([[CPU_A, k * 1000, k]]));
    await s.applyBatch(7, batch([[CPU_A, 7000, 7]])); // committed after entry 6's commit was synced
    const durable = s.appliedIndex();
    expect(durable).toBeLessThanOrEqual(6);
    // Both images now, in this turn (entry 7's sync is still running; an idle no-op commit follows it).
    const processCrash = crashCopy(dir);
    const osCrash = crashCopy(dir, 'another-boot');
    // A process crash (same boot): the page cache had everything committed.
    const p = await LmdbShardStore.open(processCrash, { pipelinedSync: true });
    expect(p.appliedIndex()).toBe(7);
    await p.close();
    // An OS crash: commit 7 may not have reached the disk whole; the synced snapshot before it opens.
    const o = await LmdbShardStore.open(osCrash, { pipelinedSync: true });
    expect(o.appliedIndex()).toBe(6);
    expect(o.appliedIndex()).toBeGreaterThanOrEqual(durable);
    expect(dump(o, { metric: 'cpu' })[0]!.ts).toEqual([1000, 2000, 3000, 4000, 5000, 6000]);
    await o.applyBatch(7, batch([[CPU_A, 7000, 7]])); // what the Raft log re-applies
    expect(dump(o, { metric: 'cpu' })).toEqual(dump(s, { metric: 'cpu' }));
    await o.close();
    await s.close();
    expect(existsSync(join(dir, 'UNSYNCED'))).toBe(false);
  });

  it('a backup holds every apply made before it, even one whose group has not committed yet', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const copy = tempDir();
    cleanups.push(copy.cleanup);
    const s = await LmdbShardStore.open(dir, { pipelinedSync: true });
    for (let k = 1; k <= 3; k++) await s.applyBatch(k, batch([[CPU_A, k * 1000, k]]));
    const pending = s.applyBatch(4, batch([[CPU_A, 4000, 4]])); // its group waits for the previous fsync
    await s.backup(copy.dir);
    expect((await readImageMeta(copy.dir)).appliedIndex).toBe(4);
    await pending;
    await s.close();
  });

  it('when writes stop, the durable index catches up with the applied one (an idle no-op commit)', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = await LmdbShardStore.open(dir, { pipelinedSync: true });
    for (let k = 1; k <= 3; k++) await s.applyBatch(k, batch([[CPU_A, k * 1000, k]]));
    await poll(() => s.appliedIndex() === 3, 'durable index 3');
    await s.close();
  });

  it('checkpoint() and a reopen make everything applied durable', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    let s = await LmdbShardStore.open(dir, { pipelinedSync: true });
    await s.applyBatch(1, batch([[CPU_A, 1000, 1]]));
    await s.applyBatch(2, batch([[CPU_A, 2000, 2]]));
    await s.checkpoint();
    expect(s.appliedIndex()).toBe(2);
    await s.applyBatch(3, batch([[CPU_A, 3000, 3]]));
    await s.close();
    s = await LmdbShardStore.open(dir, { pipelinedSync: true });
    expect(s.appliedIndex()).toBe(3);
    await s.close();
  });

  it('a deferred-sync marker from another boot is still refused in pipelined mode', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = await LmdbShardStore.open(dir, { syncIntervalMs: 100 });
    await s.applyBatch(1, batch([[CPU_A, 1000, 1]]));
    await s.close();
    writeFileSync(join(dir, 'UNSYNCED'), 'another-boot\n');
    const err = (await LmdbShardStore.open(dir, { pipelinedSync: true }).catch(
      (e: unknown) => e,
    )) as TidemarkError;
    expect(err.reason).toBe('store_unsynced_os_restart');
  });
});

describe('LmdbShardStore deferred sync', () => {
  it('reports as applied only what an fsync covered; checkpoint and close sync', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    // A long interval: only checkpoint() syncs during the test.
    let s = await LmdbShardStore.open(dir, { syncIntervalMs: 3_600_000 });
    expect(existsSync(join(dir, 'UNSYNCED'))).toBe(true);
    await s.applyBatch(1, batch([[CPU_A, 1000, 1]]));
    await s.applyBatch(2, batch([[CPU_A, 2000, 2]]));
    expect(s.appliedIndex()).toBe(0);
    expect(dump(s, { metric: 'cpu' })).toHaveLength(1); // visible before it is durable
    await s.checkpoint();
    expect(s.appliedIndex()).toBe(2);
    await s.close();
    expect(existsSync(join(dir, 'UNSYNCED'))).toBe(false);
    s = await LmdbShardStore.open(dir, { syncIntervalMs: 3_600_000 });
    expect(s.appliedIndex()).toBe(2);
    await s.close();
  });

  it('the interval timer syncs on its own', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = await LmdbShardStore.open(dir, { syncIntervalMs: 10 });
    await s.applyBatch(1, batch([[CPU_A, 1000, 1]]));
    await poll(() => s.appliedIndex() === 1, 'the periodic sync');
    await s.close();
  });

  it('refuses a store left unsynced by an OS restart (another boot id), naming the way out', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = await LmdbShardStore.open(dir, { syncIntervalMs: 100 });
    await s.applyBatch(1, batch([[CPU_A, 1000, 1]]));
    await s.close();
    writeFileSync(join(dir, 'UNSYNCED'), 'another-boot\n');
    const err = (await LmdbShardStore.open(dir, { syncIntervalMs: 100 }).catch(
      (e: unknown) => e,
    )) as TidemarkError;
    expect(isTidemarkError(err)).toBe(true);
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.reason).toBe('store_unsynced_os_restart');
    expect(err.message).toMatch(/sets it aside/);
  });

  it('close() waits for every background sync (a sync on a closed environment would crash the process)', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    // A 1 ms interval keeps syncs running and queued while close() runs.
    for (let round = 0; round < 20; round++) {
      const s = await LmdbShardStore.open(dir, { syncIntervalMs: 1 });
      for (let k = 0; k < 5; k++) await s.append(batch([[CPU_A, round * 100 + k, k]]));
      await new Promise((r) => setTimeout(r, round % 4));
      await s.close();
    }
    const s = await LmdbShardStore.open(dir, { syncIntervalMs: 1 });
    expect(s.appliedIndex()).toBe(100);
    await s.close();
  });

  it('validates syncIntervalMs', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const err = (await LmdbShardStore.open(dir, { syncIntervalMs: -1 }).catch(
      (e: unknown) => e,
    )) as TidemarkError;
    expect(err.details.field).toBe('options.syncIntervalMs');
  });
});

describe('LmdbShardStore specifics', () => {
  it('a checkpoint encodes only the head samples appended since the last one (head record segments)', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const cpu = series('cpu', { host: 'a' });
    const records = async (): Promise<Buffer[]> => {
      const env = open({ path: dir, compression: false });
      const head = env.openDB({ name: 'head', keyEncoding: 'binary', encoding: 'binary' });
      const out = [...head.getRange({})].map((e) => Buffer.from(e.value as Buffer));
      await env.close();
      return out;
    };
    /** Version byte and segment count of the only head record. */
    const shape = async () => {
      const [r] = await records();
      return { version: r![0], segments: r![21 + r!.readUInt32BE(17)] };
    };
    const samples = (ts: number[], v = 1) => batch(ts.map((t) => [cpu, t, t * v] as const));
    const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    let s = await LmdbShardStore.open(dir);
    await s.append(samples(range(1, 10)));
    await s.close(); // a clean close checkpoints
    expect(await shape()).toEqual({ version: 2, segments: 1 });
    s = await LmdbShardStore.open(dir);
    await s.append(samples(range(11, 15)));
    await s.checkpoint();
    await s.append(samples(range(16, 20)));
    await s.close();
    // Two checkpoints after the reopen, each appending what came since.
    expect(await shape()).toEqual({ version: 2, segments: 3 });
    s = await LmdbShardStore.open(dir);
    expect(dump(s, { metric: 'cpu' })[0]!.ts).toEqual(range(1, 20));
    // A change inside what the record holds (a value replaced at t = 3) re-encodes the head whole.
    await s.append(batch([[cpu, 3, -3]]));
    await s.close();
    expect(await shape()).toEqual({ version: 2, segments: 1 });
    s = await LmdbShardStore.open(dir);
    const d = dump(s, { metric: 'cpu' })[0]!;
    expect(d.ts).toEqual(range(1, 20));
    expect(d.vals[2]).toBe(-3);
    await s.close();
    // A version 1 record (one chunk, u32-length-prefixed) from an older build still loads.
    const [v2] = await records();
    const keyLen = v2!.readUInt32BE(17);
    const chunkLen = v2!.readUInt32BE(22 + keyLen);
    const v1 = Buffer.concat([
      v2!.subarray(0, 21 + keyLen),
      v2!.subarray(22 + keyLen, 26 + keyLen + chunkLen),
    ]);
    v1[0] = 1;
    const env = open({ path: dir, compression: false });
    const head = env.openDB({ name: 'head', keyEncoding: 'binary', encoding: 'binary' });
    const [k] = [...head.getKeys({})];
    await head.put(k as Buffer, v1);
    await env.close();
    s = await LmdbShardStore.open(dir);
    expect(dump(s, { metric: 'cpu' })[0]!.vals).toEqual(d.vals);
    await s.append(samples([21]));
    await s.close();
    expect(await shape()).toEqual({ version: 2, segments: 2 });
    s = await LmdbShardStore.open(dir);
    expect(dump(s, { metric: 'cpu' })[0]!.ts).toEqual(range(1, 21));
    await s.close();
  });

  it('a clean close returns free pages to the file system (compacted copy), and the store reopens intact', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const file = join(dir, 'data.mdb');
    const hosts = Array.from({ length: 200 }, (_, h) => series('cpu', { host: `h${h}` }));
    const keep = series('mem', { host: 'a' });
    let s = await LmdbShardStore.open(dir);
    for (let round = 0; round < 20; round++) {
      const rows: (readonly [Series, number, number])[] = [[keep, round, round * 2]];
      for (const h of hosts) for (let t = round * 50; t < round * 50 + 50; t++) rows.push([h, t, t + 0.25]);
      await s.append(batch(rows));
      await s.checkpoint();
    }
    await s.deleteSeries({ metric: 'cpu' });
    await s.checkpoint();
    const expected = dump(s, { metric: 'mem' });
    const before = statSync(file).size;
    await s.close();
    const after = statSync(file).size;
    expect(after * 4).toBeLessThanOrEqual(before);
    expect(existsSync(join(dir, 'shrink.tmp'))).toBe(false);
    s = await LmdbShardStore.open(dir);
    expect(dump(s, { metric: 'mem' })).toEqual(expected);
    expect(dump(s, { metric: 'cpu' })).toEqual([]);
    await s.append(batch([[keep, 100, 1]]));
    await s.close();
    // A file that is mostly live data is not copied (same inode).
    const ino = statSync(file).ino;
    s = await LmdbShardStore.open(dir);
    expect(dump(s, { metric: 'mem' })[0]!.ts).toHaveLength(21);
    await s.close();
    expect(statSync(file).ino).toBe(ino);
    // A copy an interrupted close left behind is removed by the next open.
    mkdirSync(join(dir, 'shrink.tmp'));
    writeFileSync(join(dir, 'shrink.tmp', 'data.mdb'), 'partial');
    s = await LmdbShardStore.open(dir);
    expect(existsSync(join(dir, 'shrink.tmp'))).toBe(false);
    expect(dump(s, { metric: 'mem' })[0]!.ts).toHaveLength(21);
    await s.close();
  });

  it('refuses an unknown format version with a clear error', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const s = await LmdbShardStore.open(dir);
    await s.close();
    const env = open({ path: dir, compression: false });
    const meta = env.openDB({ name: 'meta', keyEncoding: 'binary', encoding: 'binary' });
    const v = Buffer.alloc(4);
    v.writeUInt32BE(99);
    await meta.put(Buffer.from('format'), v);
    await env.close();
    const err = await LmdbShardStore.open(dir).catch((e: unknown) => e);
    expect(isTidemarkError(err, 'FAILED_PRECONDITION')).toBe(true);
    expect((err as TidemarkError).reason).toBe('store_format_unsupported');
    expect((err as Error).message).toMatch(/format version 99/);
  });

  it('refuses a malformed head record with DATA_CORRUPTION naming it', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const cpu = series('cpu', { host: 'a' });
    let s = await LmdbShardStore.open(dir);
    await s.append(batch([1, 2, 3].map((t) => [cpu, t, t] as const)));
    await s.close();
    const env = open({ path: dir, compression: false });
    const head = env.openDB({ name: 'head', keyEncoding: 'binary', encoding: 'binary' });
    const [{ key, value }] = [...head.getRange({})] as { key: Buffer; value: Buffer }[];
    const keyLen = value.readUInt32BE(17);
    const good = Buffer.from(value);
    const variants: Buffer[] = [];
    // Two segments announced, one present.
    const missing = Buffer.from(good);
    missing[21 + keyLen] = 2;
    variants.push(missing);
    // The same segment twice: timestamps out of order once concatenated.
    const seg = good.subarray(22 + keyLen);
    const twice = Buffer.concat([good.subarray(0, 21 + keyLen), Buffer.from([2]), seg, seg]);
    variants.push(twice);
    // An unknown version.
    const v9 = Buffer.from(good);
    v9[0] = 9;
    variants.push(v9);
    for (const bad of variants) {
      await head.put(key, bad);
      const err = await LmdbShardStore.open(dir).catch((e: unknown) => e);
      expect(isTidemarkError(err, 'DATA_CORRUPTION'), String(err)).toBe(true);
      expect((err as TidemarkError).reason).toBe('head_record_invalid');
    }
    await head.put(key, good);
    await env.close();
    s = await LmdbShardStore.open(dir);
    expect(dump(s, { metric: 'cpu' })[0]!.ts).toEqual([1, 2, 3]);
    await s.close();
  });

  it('validates options once, naming the field', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    for (const [opts, field] of [
      [{ sealSamples: 0 }, 'options.sealSamples'],
      [{ oooWindowMs: -1 }, 'options.oooWindowMs'],
      [{ retentionMs: 1.5 }, 'options.retentionMs'],
      [{ nope: 1 }, 'options.nope'],
      [{ externalLog: 'yes' }, 'options.externalLog'],
      [{ syncIntervalMs: -5 }, 'options.syncIntervalMs'],
    ] as const) {
      const err = await LmdbShardStore.open(dir, opts as never).catch((e: unknown) => e);
      expect(isTidemarkError(err, 'INVALID_ARGUMENT')).toBe(true);
      expect((err as TidemarkError).field).toBe(field);
    }
    expect(resolveStoreOptions({})).toEqual(DEFAULT_STORE_OPTIONS);
  });

  it('a corrupt chunk fails the operation with DATA_CORRUPTION, poisons the store, and reopen recovers', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const opts = { sealSamples: 4 };
    const cpu = { metric: 'cpu', tags: { host: 'a' } };
    let s = await LmdbShardStore.open(dir, opts);
    await s.append(batch([1, 2, 3, 4, 5, 6].map((t) => [cpu, t * 10, t] as const)));
    await s.close();
    const env = open({ path: dir, compression: false });
    const chunks = env.openDB({ name: 'chunks', keyEncoding: 'binary', encoding: 'binary' });
    const [first] = [...chunks.getRange({})];
    const bad = Buffer.from(first!.value as Buffer);
    bad[bad.length - 1]! ^= 0xff;
    await chunks.put(first!.key, bad);
    await env.close();
    s = await LmdbShardStore.open(dir, opts);
    // reads report the corruption through the iterator
    const [sd] = s.select({ metric: 'cpu' });
    const it = sd!.iterator();
    while (it.next()) {}
    expect(isTidemarkError(it.err(), 'DATA_CORRUPTION')).toBe(true);
    // a write that must merge into the corrupt chunk fails; the store refuses further work
    const err = await s.append(batch([[cpu, 15, 1]])).catch((e: unknown) => e);
    expect(isTidemarkError(err, 'DATA_CORRUPTION')).toBe(true);
    expect(() => s.select({ metric: 'cpu' })).toThrow();
    await s.close();
    s = await LmdbShardStore.open(dir, opts);
    expect(s.appliedIndex()).toBe(1);
    expect(s.select({ metric: 'cpu', minT: 50 })[0]!.toArrays().count).toBe(2);
    await s.close();
  });
});

describe('LmdbShardStore recovery (crash images)', () => {
  /** Opens a copy of the data file as it is now: what a crash at this point would leave. */
  async function crashImage(dir: string, opts: Parameters<typeof LmdbShardStore.open>[1]) {
    const copy = tempDir('tidemark-crash-image-');
    cleanups.push(copy.cleanup);
    copyFileSync(join(dir, 'data.mdb'), join(copy.dir, 'data.mdb'));
    return LmdbShardStore.open(copy.dir, opts);
  }
  const cpu = { metric: 'cpu', tags: { host: 'a' } };

  it('redoes a seal whose chunk was later split by a large out-of-order merge', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const opts = { sealSamples: 2, checkpointRecords: 1000, oooWindowMs: 10_000 };
    const s = await LmdbShardStore.open(dir, opts);
    await s.append(
      batch([
        [cpu, 100, 1],
        [cpu, 200, 2],
      ]),
    ); // seals chunk 100: [100, 200]
    await s.append(batch([[cpu, 300, 3]]));
    // 5 samples into chunk 100 -> 7 > 2 × sealSamples: split into chunks 100, 120, 140, 200
    await s.append(batch([110, 120, 130, 140, 150].map((t) => [cpu, t, t] as const)));
    expect(s.stats().chunks).toBeGreaterThan(2);
    const expected = dump(s, { metric: 'cpu' });
    expect(expected[0]!.ts).toEqual([100, 110, 120, 130, 140, 150, 200, 300]);
    const r = await crashImage(dir, opts);
    expect(dump(r, { metric: 'cpu' })).toEqual(expected);
    await r.close();
    await s.close();
  });

  it('redoes deletes, retention and series removal and re-creation', async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    const opts = { sealSamples: 3, checkpointRecords: 1000, retentionMs: 1000, oooWindowMs: 10_000 };
    const s = await LmdbShardStore.open(dir, opts);
    await s.append(batch([1, 2, 3, 4, 5, 6, 7].map((t) => [cpu, t * 100, t] as const)));
    await s.applyRetention(1450); // cutoff 450
    await s.deleteSeries({ metric: 'cpu', minT: 600, maxT: 650 });
    await s.deleteSeries({ metric: 'cpu' }); // removes the series
    await s.append(
      batch([
        [cpu, 500, 9],
        [cpu, 900, 10],
      ]),
    ); // a new incarnation
    const expected = dump(s, { metric: 'cpu' });
    expect(expected).toEqual([{ series: 'cpu{host=a}', ts: [500, 900], vals: [9, 10] }]);
    const r = await crashImage(dir, opts);
    expect(dump(r, { metric: 'cpu' })).toEqual(expected);
    expect(r.appliedIndex()).toBe(s.appliedIndex());
    expect(r.stats().retentionCutoff).toBe(450);
    await r.close();
    await s.close();
  });
});
