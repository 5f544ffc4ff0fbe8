/**
 * Returning an LMDB file's free pages to the file system on a clean close. LMDB never shrinks its file:
 * pages freed by deletes and copy-on-write updates are reused, not returned, so a file keeps its high-water
 * mark. A compacted copy (mdb_env_copy2 with MDB_CP_COMPACT, taken while the environment is open, under
 * one read transaction) written to `<dir>/shrink.tmp/` replaces `<dir>/data.mdb` once the environment is
 * closed: the swap renames an fsync'd copy, so a crash at any point leaves one complete file or the other.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Database, RootDatabase } from 'lmdb';

/** Where the copy is written; whatever an interrupted shrink left there is removed before the next open. */
export const SHRINK_DIR = 'shrink.tmp';

/** Call before opening the environment in `dir`. */
export function removeShrinkLeftover(dir: string): void {
  rmSync(join(dir, SHRINK_DIR), { recursive: true, force: true });
}

/** Size of `<dir>/data.mdb` in bytes (0 when missing). */
export function fileBytes(dir: string): number {
  return statSync(join(dir, 'data.mdb'), { throwIfNoEntry: false })?.size ?? 0;
}

/**
 * Bytes of the file's pages that no database uses: the pages below the last one used, less the pages of
 * every named database, of the main database (which names them), of the free list, and the two meta pages.
 * Cheap (page counts from mdb_stat), so it decides whether a copy is worth taking without taking it.
 */
export function freeBytesEstimate(root: RootDatabase, dbs: readonly Database<Buffer, Buffer>[]): number {
  const env = root.getStats() as EnvStats;
  let used = 2 + pagesOf(env.root) + pagesOf(env.free);
  for (const db of dbs) used += pagesOf(db.getStats() as PageCounts);
  return Math.max(0, env.lastPageNumber + 1 - used) * env.pageSize;
}

/** What lmdb-js's getStats() reports (mdb_stat of a database; of the root also mdb_env_info and the free list). */
interface PageCounts {
  treeBranchPageCount: number;
  treeLeafPageCount: number;
  overflowPages: number;
}

interface EnvStats {
  pageSize: number;
  lastPageNumber: number;
  root: PageCounts;
  free: PageCounts;
}

function pagesOf(s: PageCounts): number {
  return s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
}

/** Writes a compacted copy of the open environment to `<dir>/shrink.tmp/data.mdb`; returns its size. */
export async function compactCopy(root: RootDatabase, dir: string): Promise<number> {
  const tmp = join(dir, SHRINK_DIR);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  await root.backup(tmp, true);
  return statSync(join(tmp, 'data.mdb')).size;
}

/**
 * After the environment is closed: when `swap`, the copy replaces `<dir>/data.mdb` (fsync'd first; the lock
 * file, which describes the old file's readers, is removed: LMDB recreates it); the copy is removed either way.
 */
export function finishShrink(dir: string, swap: boolean): void {
  const tmp = join(dir, SHRINK_DIR);
  if (swap) {
    fsyncFile(join(tmp, 'data.mdb'));
    renameSync(join(tmp, 'data.mdb'), join(dir, 'data.mdb'));
    rmSync(join(dir, 'lock.mdb'), { force: true });
    fsyncFile(dir);
  }
  rmSync(tmp, { recursive: true, force: true });
}

function fsyncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
