/**
 * Store images for Raft snapshots (docs/snapshots.md), Raft-agnostic:
 *
 *  - `createStoreImage`: a consistent, compacted copy of a live store's LMDB environment (one file,
 *    `data.mdb`) with its size, SHA-256 and the applied index it holds;
 *  - `readImageFile`: reads such a file in bounded chunks (the sender's side of the stream);
 *  - `StoreImageWriter`: the receiver's side: writes chunks into `<shardDir>/store-incoming`, verifies
 *    size, checksum, format version and applied index, fsyncs, and marks the directory complete;
 *  - `swapInStore`: replaces `<shardDir>/store` by the verified incoming image with renames whose order
 *    makes a crash leave either the old or the new store, never a mix;
 *  - `recoverStoreSwap`: finishes or undoes an interrupted swap; call it before opening the store.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { type FileHandle, open as openFile, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type Database, open as openEnv } from 'lmdb';
import { dataCorruption, TidemarkError } from '../errors/index.js';
import { META_APPLIED, META_FORMAT, readU64 } from './keys.js';
import type { LmdbShardStore } from './lmdb-store.js';

export const IMAGE_FILE = 'data.mdb';
export const STORE_DIR = 'store';
export const INCOMING_DIR = 'store-incoming';
export const OLD_DIR = 'store-old';
/** Written (and fsynced) into store-incoming once the image there is complete and verified. */
export const INSTALL_MARKER = 'INSTALL';

export interface StoreImageInfo {
  /** Store format version recorded in the image. */
  formatVersion: number;
  /** Applied index recorded in the image (the state it recovers to). */
  appliedIndex: number;
  bytes: number;
  /** Hex SHA-256 of the image file. */
  sha256: string;
}

/** Injected faults for crash tests: called after each step of an install; throwing simulates a crash there. */
export type InstallStep =
  | 'incoming-written'
  | 'marker-written'
  | 'old-renamed'
  | 'new-renamed'
  | 'old-removed';
export type InstallFaultHook = (step: InstallStep) => void;

async function fsyncPath(path: string): Promise<void> {
  const h = await openFile(path, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** SHA-256 and size of a file, read in bounded chunks. */
export async function hashFile(
  path: string,
  chunkBytes = 1 << 20,
): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of readImageFile(path, chunkBytes)) {
    h.update(c);
    bytes += c.length;
  }
  return { bytes, sha256: h.digest('hex') };
}

/** The format version and applied index an image's `meta` sub-database records. */
export interface ImageMeta {
  formatVersion: number;
  appliedIndex: number;
}

/**
 * Opens the image at `path` read-only (a directory, or with `noSubdir` a single file), hands `read` its `meta`
 * sub-database and the recorded format version and applied index, and closes it. No format version: `invalid()`.
 */
export async function readImageMetaDb<T>(
  path: string,
  noSubdir: boolean,
  invalid: () => TidemarkError,
  read: (meta: Database<Buffer, Buffer>, recorded: ImageMeta) => T,
): Promise<T> {
  const env = openEnv({ path, noSubdir, readOnly: true, maxDbs: 8, compression: false });
  try {
    const meta = env.openDB<Buffer, Buffer>({
      name: 'meta',
      keyEncoding: 'binary',
      encoding: 'binary',
      compression: false,
    });
    const fmt = meta.get(META_FORMAT);
    if (fmt === undefined || fmt.length !== 4) throw invalid();
    const applied = meta.get(META_APPLIED);
    return read(meta, {
      formatVersion: fmt.readUInt32BE(0),
      appliedIndex: applied === undefined ? 0 : readU64(applied, 0),
    });
  } finally {
    await env.close();
    // A read-only environment without a sub-directory still creates `<file>-lock`.
    if (noSubdir) await rm(`${path}-lock`, { force: true });
  }
}

/** Reads the format version and applied index recorded in the environment in `dir` (read-only). */
export function readImageMeta(dir: string): Promise<ImageMeta> {
  return readImageMetaDb(
    dir,
    false,
    () => dataCorruption('store_image_invalid', `store image in ${dir} has no format version`),
    (_meta, recorded) => recorded,
  );
}

/**
 * Writes a consistent copy of `store` into `dir` (created; must not exist or be empty) and describes it.
 * Cost: one sequential pass over the store's live pages; the JS thread is not blocked.
 */
export async function createStoreImage(store: LmdbShardStore, dir: string): Promise<StoreImageInfo> {
  await rm(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await store.backup(dir);
  const meta = await readImageMeta(dir);
  await rm(join(dir, 'lock.mdb'), { force: true });
  const { bytes, sha256 } = await hashFile(join(dir, IMAGE_FILE));
  return { ...meta, bytes, sha256 };
}

/** Yields the file in chunks of at most chunkBytes (fresh buffers: a consumer may keep them). */
export async function* readImageFile(path: string, chunkBytes: number): AsyncGenerator<Uint8Array> {
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1) throw new RangeError('chunkBytes must be >= 1');
  const h = await openFile(path, 'r');
  try {
    let pos = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(chunkBytes);
      const { bytesRead } = await h.read(buf, 0, chunkBytes, pos);
      if (bytesRead === 0) return;
      pos += bytesRead;
      yield new Uint8Array(buf.buffer, buf.byteOffset, bytesRead);
    }
  } finally {
    await h.close();
  }
}

function imageError(reason: string, message: string): TidemarkError {
  return dataCorruption(reason, message);
}

/**
 * Receiver side of an image transfer: writes into `<shardDir>/store-incoming`. begin → write* → finish
 * (verifies and marks complete) or abort (removes the partial image). Holds one chunk at a time.
 */
export class StoreImageWriter {
  private handle: FileHandle | undefined;
  private hash = createHash('sha256');
  private received = 0;
  private expected: StoreImageInfo | undefined;
  readonly dir: string;

  constructor(
    private readonly shardDir: string,
    private readonly faults?: InstallFaultHook,
  ) {
    this.dir = join(shardDir, INCOMING_DIR);
  }

  async begin(expected: StoreImageInfo): Promise<void> {
    this.expected = expected;
    await rm(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
    this.handle = await openFile(join(this.dir, IMAGE_FILE), 'wx');
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.handle === undefined || this.expected === undefined)
      throw new TidemarkError('FAILED_PRECONDITION', 'image_not_started', 'image transfer not started');
    if (this.received + chunk.length > this.expected.bytes) {
      throw imageError('snapshot_image_overflow', 'snapshot image runs past its announced size');
    }
    let off = 0;
    while (off < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, off, chunk.length - off, this.received + off);
      off += bytesWritten;
    }
    this.hash.update(chunk);
    this.received += chunk.length;
  }

  /** Verifies size, checksum, format and applied index; fsyncs; writes the install marker. */
  async finish(): Promise<StoreImageInfo> {
    const exp = this.expected;
    const h = this.handle;
    if (h === undefined || exp === undefined)
      throw new TidemarkError('FAILED_PRECONDITION', 'image_not_started', 'image transfer not started');
    await h.sync();
    await h.close();
    this.handle = undefined;
    if (this.received !== exp.bytes) {
      throw imageError(
        'snapshot_image_size_mismatch',
        `snapshot image has ${this.received} bytes, ${exp.bytes} announced`,
      );
    }
    const sha256 = this.hash.digest('hex');
    if (sha256 !== exp.sha256)
      throw imageError('snapshot_checksum_mismatch', 'snapshot image failed its checksum');
    const meta = await readImageMeta(this.dir);
    await rm(join(this.dir, 'lock.mdb'), { force: true });
    if (meta.formatVersion !== exp.formatVersion || meta.appliedIndex !== exp.appliedIndex) {
      throw imageError(
        'snapshot_image_meta_mismatch',
        `snapshot image holds format ${meta.formatVersion} index ${meta.appliedIndex}, ` +
          `announced ${exp.formatVersion} / ${exp.appliedIndex}`,
      );
    }
    this.faults?.('incoming-written');
    const marker = join(this.dir, INSTALL_MARKER);
    const m = await openFile(marker, 'w');
    try {
      await m.writeFile(JSON.stringify(exp));
      await m.sync();
    } finally {
      await m.close();
    }
    await fsyncPath(this.dir);
    await fsyncPath(this.shardDir);
    this.faults?.('marker-written');
    return exp;
  }

  async abort(): Promise<void> {
    if (this.handle !== undefined) {
      await this.handle.close().catch(() => {});
      this.handle = undefined;
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Replaces `<shardDir>/store` with the verified `<shardDir>/store-incoming` (the store must be closed):
 *   1. rename store → store-old, fsync shardDir;
 *   2. rename store-incoming → store, fsync shardDir  (the commit point);
 *   3. remove store-old and the marker.
 * A crash anywhere is repaired by recoverStoreSwap (rolls forward once the marker exists).
 */
export async function swapInStore(shardDir: string, faults?: InstallFaultHook): Promise<void> {
  const incoming = join(shardDir, INCOMING_DIR);
  const store = join(shardDir, STORE_DIR);
  const old = join(shardDir, OLD_DIR);
  if (!existsSync(join(incoming, INSTALL_MARKER))) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'snapshot_image_incomplete',
      'no verified image to install',
    );
  }
  await rm(old, { recursive: true, force: true });
  if (existsSync(store)) {
    await rename(store, old);
    await fsyncPath(shardDir);
  }
  faults?.('old-renamed');
  await rename(incoming, store);
  await fsyncPath(shardDir);
  faults?.('new-renamed');
  await rm(old, { recursive: true, force: true });
  await unlink(join(store, INSTALL_MARKER)).catch(() => {});
  faults?.('old-removed');
}

export type SwapRecovery = 'none' | 'rolled-forward' | 'rolled-back' | 'discarded-incoming' | 'cleaned-up';

/**
 * Repairs `<shardDir>` after a crash during an image transfer or swap, leaving exactly one complete store
 * (or none, for a brand-new replica) in `<shardDir>/store`:
 *  - store-incoming with the marker: the image is complete and verified → finish the swap (roll forward);
 *  - store-incoming without it: a partial transfer → delete it (the old store is untouched);
 *  - store-old with store: the swap committed → delete store-old;
 *  - store-old without store (and no verified incoming): impossible by the order above, but recoverable →
 *    rename store-old back.
 */
export async function recoverStoreSwap(shardDir: string): Promise<SwapRecovery> {
  const incoming = join(shardDir, INCOMING_DIR);
  const store = join(shardDir, STORE_DIR);
  const old = join(shardDir, OLD_DIR);
  if (existsSync(incoming)) {
    if (existsSync(join(incoming, INSTALL_MARKER))) {
      // Validate the marker parses; a torn marker means it was never fsynced, so the image is not trusted.
      let ok = false;
      try {
        const exp = JSON.parse(await readFile(join(incoming, INSTALL_MARKER), 'utf8')) as StoreImageInfo;
        const st = await stat(join(incoming, IMAGE_FILE));
        ok = st.size === exp.bytes;
      } catch {
        ok = false;
      }
      if (ok) {
        if (existsSync(store)) {
          await rm(old, { recursive: true, force: true });
          await rename(store, old);
          await fsyncPath(shardDir);
        }
        await rename(incoming, store);
        await fsyncPath(shardDir);
        await rm(old, { recursive: true, force: true });
        await unlink(join(store, INSTALL_MARKER)).catch(() => {});
        return 'rolled-forward';
      }
    }
    await rm(incoming, { recursive: true, force: true });
    if (!existsSync(store) && existsSync(old)) {
      await rename(old, store);
      await fsyncPath(shardDir);
      return 'rolled-back';
    }
    return 'discarded-incoming';
  }
  if (existsSync(old)) {
    if (existsSync(store)) {
      await rm(old, { recursive: true, force: true });
      return 'cleaned-up';
    }
    await rename(old, store);
    await fsyncPath(shardDir);
    return 'rolled-back';
  }
  return 'none';
}
