/**
 * The backup directory format, version 1 (docs/backup.md):
 *
 *   DIR/manifest.json     written last (temp file + fsync + rename): a directory without it is no backup
 *   DIR/shard-<n>.img     shard n's store image: a compacted copy of its LMDB environment (`data.mdb`)
 *
 * Helpers to name, parse and validate the manifest, to read what an image records (format version, applied
 * index, Kafka next offset) and to copy an image in bounded chunks while checking its size and SHA-256.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, open as openFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeNextOffset, KAFKA_NEXT_OFFSET_KEY } from '../cluster/entry.js';
import { dataCorruption, TidemarkError } from '../errors/index.js';
import { userMetaKey } from '../storage/keys.js';
import { readImageMetaDb } from '../storage/snapshot.js';

export const BACKUP_FORMAT = 'tidemark-backup';
export const BACKUP_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

export function imageFileOf(shard: number): string {
  return `shard-${shard}.img`;
}

/** One shard of a backup. */
export interface BackupShard {
  shard: number;
  /** The image file, relative to the backup directory. */
  file: string;
  /** Applied index recorded in the image: the shard's state is exactly the log up to here. */
  index: number;
  /** The ReadIndex barrier the image was taken after: every store entry <= readIndex is in the image. */
  readIndex: number;
  /** The shard's Raft term when the image was taken (>= the term of the entry at `index`). */
  term: number;
  /** Store format version recorded in the image. */
  storeFormatVersion: number;
  /** The shard's Kafka next offset recorded in the image (0 when it never consumed Kafka). */
  kafkaNextOffset: number;
  bytes: number;
  /** Hex SHA-256 of the image file. */
  sha256: string;
  /** The node that took the image, and the shard's voters in the source cluster. */
  sourceNode: string;
  sourceVoters: string[];
  /** When the image was received (ISO 8601). */
  takenAt: string;
}

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  version: typeof BACKUP_VERSION;
  /** When the backup started: every write acknowledged before it is in the images (ISO 8601). */
  startedAt: string;
  /** When the last image was complete (ISO 8601). */
  completedAt: string;
  /** The source cluster's shard count: a restore needs the same. */
  shardCount: number;
  shards: BackupShard[];
}

function bad(message: string): TidemarkError {
  return dataCorruption('backup_manifest_invalid', `backup manifest: ${message}`);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parses and checks a manifest (structure, version, one entry per shard, file names). */
export function parseManifest(text: string): BackupManifest {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw dataCorruption('backup_manifest_invalid', 'backup manifest is not valid JSON', {}, err);
  }
  if (typeof m !== 'object' || m === null) throw bad('not an object');
  const o = m as Record<string, unknown>;
  if (o.format !== BACKUP_FORMAT) throw bad(`format is ${JSON.stringify(o.format)}, not "${BACKUP_FORMAT}"`);
  if (o.version !== BACKUP_VERSION) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'backup_version_unsupported',
      `backup format version ${JSON.stringify(o.version)} is not supported (this version reads ${BACKUP_VERSION})`,
    );
  }
  if (!isCount(o.shardCount) || o.shardCount < 1) throw bad('shardCount must be a positive integer');
  if (!Array.isArray(o.shards) || o.shards.length !== o.shardCount)
    throw bad(`shards must list ${o.shardCount} shards`);
  const shards = o.shards as Record<string, unknown>[];
  shards.forEach((s, i) => {
    if (typeof s !== 'object' || s === null) throw bad(`shards[${i}] is not an object`);
    if (s.shard !== i) throw bad(`shards[${i}].shard must be ${i}`);
    if (s.file !== imageFileOf(i)) throw bad(`shards[${i}].file must be ${imageFileOf(i)}`);
    for (const k of ['index', 'readIndex', 'term', 'storeFormatVersion', 'kafkaNextOffset', 'bytes']) {
      if (!isCount(s[k])) throw bad(`shards[${i}].${k} must be a non-negative integer`);
    }
    if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(s.sha256))
      throw bad(`shards[${i}].sha256 must be 64 hex digits`);
    if (typeof s.sourceNode !== 'string') throw bad(`shards[${i}].sourceNode must be a string`);
    if (!Array.isArray(s.sourceVoters) || !s.sourceVoters.every((v) => typeof v === 'string'))
      throw bad(`shards[${i}].sourceVoters must be a list of node ids`);
  });
  return m as BackupManifest;
}

export async function readManifest(dir: string): Promise<BackupManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch (err) {
    throw new TidemarkError(
      'NOT_FOUND',
      'backup_not_found',
      `${join(dir, MANIFEST_FILE)} cannot be read: not a complete backup (${(err as Error).message})`,
      {},
      err,
    );
  }
  return parseManifest(text);
}

export interface ImageRecords {
  formatVersion: number;
  appliedIndex: number;
  kafkaNextOffset: number;
}

/**
 * What an image file records, read through LMDB (read-only, no sub-directory). Call it only on a file whose
 * checksum was verified: LMDB trusts its pages.
 */
export function readImageRecords(file: string): Promise<ImageRecords> {
  return readImageMetaDb(
    file,
    true,
    () => dataCorruption('backup_image_invalid', `${file} is not a shard store image (no format version)`),
    (meta, recorded) => {
      const kafka = meta.get(userMetaKey(KAFKA_NEXT_OFFSET_KEY));
      return {
        ...recorded,
        kafkaNextOffset: decodeNextOffset(kafka === undefined ? undefined : new Uint8Array(kafka)),
      };
    },
  );
}

/** Writes a stream of chunks to `path` (created, must not exist), hashing as it goes; one chunk in memory. */
export class HashingFileWriter {
  private readonly hash = createHash('sha256');
  bytes = 0;

  private constructor(private readonly handle: FileHandle) {}

  static async create(path: string): Promise<HashingFileWriter> {
    return new HashingFileWriter(await openFile(path, 'wx'));
  }

  async write(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, off, chunk.length - off, this.bytes + off);
      off += bytesWritten;
    }
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }

  /** fsyncs and closes; returns the size and hex SHA-256 of what was written. */
  async finish(): Promise<{ bytes: number; sha256: string }> {
    await this.handle.sync();
    await this.handle.close();
    return { bytes: this.bytes, sha256: this.hash.digest('hex') };
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => {});
  }
}

/** Checks a copied image against what the manifest says; names the shard and the file in the error. */
export function checkImage(
  what: string,
  got: { bytes: number; sha256: string },
  want: { bytes: number; sha256: string },
): void {
  if (got.bytes !== want.bytes) {
    throw dataCorruption(
      'backup_image_size_mismatch',
      `${what}: ${got.bytes} bytes, the manifest says ${want.bytes}: the backup is damaged or incomplete`,
    );
  }
  if (got.sha256 !== want.sha256) {
    throw dataCorruption(
      'backup_checksum_mismatch',
      `${what}: SHA-256 ${got.sha256} does not match the manifest's ${want.sha256}: the backup is damaged`,
    );
  }
}

/** fsyncs a directory (so a rename or a new file in it is durable). */
export async function fsyncDir(dir: string): Promise<void> {
  const h = await openFile(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
