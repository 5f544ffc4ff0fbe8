/**
 * The store-image install in isolation: a crash (an injected throw) at every step of the transfer and
 * swap, then recoverStoreSwap + reopen, must give exactly the old store or exactly the new one.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeDescriptor, encodeDescriptor } from '../../src/cluster/store-snapshot.js';
import { LmdbShardStore } from '../../src/storage/lmdb-store.js';
import {
  createStoreImage,
  IMAGE_FILE,
  INCOMING_DIR,
  type InstallStep,
  OLD_DIR,
  readImageFile,
  recoverStoreSwap,
  STORE_DIR,
  StoreImageWriter,
  swapInStore,
} from '../../src/storage/snapshot.js';
import { dumpStore, makeBatch } from './fixtures/replica-cluster.js';

let root: string | undefined;
afterEach(() => {
  if (root) rmSync(root, { recursive: true, force: true });
  root = undefined;
});

async function build(dir: string, base: number, n: number): Promise<string[]> {
  const s = await LmdbShardStore.open(dir);
  for (let i = 0; i < n; i++) await s.applyBatch(i + 1, makeBatch(base + i * 1000, 300, 10));
  const d = dumpStore(s);
  await s.close();
  return d;
}

async function image(srcDir: string, out: string) {
  const s = await LmdbShardStore.open(srcDir);
  try {
    return await createStoreImage(s, out);
  } finally {
    await s.close();
  }
}

async function transfer(
  shardDir: string,
  imgDir: string,
  info: Awaited<ReturnType<typeof image>>,
  fault?: (s: InstallStep) => void,
  corrupt = false,
) {
  const w = new StoreImageWriter(shardDir, fault);
  await w.begin(info);
  let first = true;
  for await (const c of readImageFile(join(imgDir, IMAGE_FILE), 4096)) {
    if (corrupt && first) c[100] = (c[100]! + 1) & 0xff;
    first = false;
    await w.write(c);
  }
  return w;
}

async function reopenDump(shardDir: string): Promise<{ dump: string[]; applied: number }> {
  await recoverStoreSwap(shardDir);
  const s = await LmdbShardStore.open(join(shardDir, STORE_DIR));
  const r = { dump: dumpStore(s), applied: s.appliedIndex() };
  await s.close();
  return r;
}

describe('store image install: crash safety', () => {
  it('descriptor round-trips and stays small', () => {
    const d = {
      version: 1 as const,
      shard: 3,
      snapshotId: 'x',
      formatVersion: 1,
      index: 42,
      term: 2,
      source: 'n1',
    };
    const b = encodeDescriptor(d);
    expect(b.length).toBeLessThan(200);
    expect(decodeDescriptor(b)).toEqual(d);
    expect(() => decodeDescriptor(new Uint8Array([1, 2, 3]))).toThrow();
  });

  const steps: Array<[InstallStep | 'partial' | 'corrupt', 'old' | 'new']> = [
    ['partial', 'old'],
    ['corrupt', 'old'],
    ['incoming-written', 'old'],
    ['marker-written', 'new'],
    ['old-renamed', 'new'],
    ['new-renamed', 'new'],
    ['old-removed', 'new'],
  ];
  for (const [step, expectWhich] of steps) {
    it(`crash at ${step} → reopen gives the ${expectWhich} store, whole`, async () => {
      root = mkdtempSync(join(tmpdir(), 'tidemark-install-'));
      const shardDir = join(root, 'shard-1');
      mkdirSync(shardDir);
      const oldDump = await build(join(shardDir, STORE_DIR), 0, 3);
      const newDump = await build(join(root, 'leader-store'), 500_000, 8);
      const imgDir = join(root, 'img');
      const info = await image(join(root, 'leader-store'), imgDir);
      expect(info.bytes).toBeGreaterThan(4096 * 2);
      expect(info.appliedIndex).toBe(8);
      const crash = (s: InstallStep) => {
        if (s === step) throw new Error(`crash at ${s}`);
      };
      if (step === 'partial') {
        const w = new StoreImageWriter(shardDir);
        await w.begin(info);
        let n = 0;
        for await (const c of readImageFile(join(imgDir, IMAGE_FILE), 4096)) {
          if (n++ === 2) break;
          await w.write(c);
        }
        // crash: no finish, no abort
      } else if (step === 'corrupt') {
        const w = await transfer(shardDir, imgDir, info, undefined, true);
        await expect(w.finish()).rejects.toThrow(/checksum/);
        await w.abort();
      } else {
        await expect(
          (async () => {
            const w = await transfer(shardDir, imgDir, info, crash);
            await w.finish();
            await swapInStore(shardDir, crash);
          })(),
        ).rejects.toThrow(/crash at/);
      }
      const got = await reopenDump(shardDir);
      if (expectWhich === 'old') {
        expect(got.dump).toEqual(oldDump);
        expect(got.applied).toBe(3);
      } else {
        expect(got.dump).toEqual(newDump);
        expect(got.applied).toBe(8);
      }
      expect(existsSync(join(shardDir, INCOMING_DIR))).toBe(false);
      expect(existsSync(join(shardDir, OLD_DIR))).toBe(false);
    });
  }

  it('a torn install marker is not trusted', async () => {
    root = mkdtempSync(join(tmpdir(), 'tidemark-install-'));
    const shardDir = join(root, 'shard-1');
    mkdirSync(shardDir);
    const oldDump = await build(join(shardDir, STORE_DIR), 0, 2);
    await build(join(root, 'leader-store'), 500_000, 4);
    const info = await image(join(root, 'leader-store'), join(root, 'img'));
    const w = await transfer(shardDir, join(root, 'img'), info);
    await w.finish();
    writeFileSync(join(shardDir, INCOMING_DIR, 'INSTALL'), '{"bytes":');
    expect(await recoverStoreSwap(shardDir)).toBe('discarded-incoming');
    expect((await reopenDump(shardDir)).dump).toEqual(oldDump);
  });
});
