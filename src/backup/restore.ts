/**
 * Restoring a backup into a new cluster (docs/backup.md): run once per node of the new cluster, with the node's
 * own configuration (the same as `tidemark start`), on an empty data directory; then start the nodes.
 *
 * For each shard placed on the node (rendezvous placement over the new cluster's nodes) it installs the
 * shard's image as the store (`<dataDir>/shard-<n>/store/data.mdb`, copied in bounded chunks and checked
 * against the manifest's size and SHA-256, then against the index the image records) and seeds the shard's
 * Raft log in `<dataDir>/raft-log` as if the node had installed a snapshot at the image's index: snapshot
 * meta {index, term, conf = the new cluster's replicas of the shard}, hard state {term, commit: index}. Every
 * replica of a shard gets the same image and the same snapshot point, so the groups start consistent and
 * elect a leader in a later term.
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeConfig } from '../cluster/config.js';
import { ShardMap } from '../cluster/shard-map.js';
import { encodeDescriptor } from '../cluster/store-snapshot.js';
import { dataCorruption, TidemarkError } from '../errors/index.js';
import { LmdbLogEnv, LmdbLogStorage } from '../raft/storage-lmdb.js';
import { STORE_FORMAT_VERSION } from '../storage/lmdb-store.js';
import { IMAGE_FILE, readImageFile, readImageMeta, STORE_DIR } from '../storage/snapshot.js';
import {
  type BackupManifest,
  type BackupShard,
  checkImage,
  fsyncDir,
  HashingFileWriter,
  readManifest,
} from './format.js';

export interface RestoreOptions {
  /** The backup directory. */
  from: string;
  /** The new node's configuration (node id, peers, shards, replication, data directory). */
  config: NodeConfig;
  /** Copy buffer (bytes, default 1 MiB). */
  chunkBytes?: number;
}

export interface RestoredShard {
  shard: number;
  index: number;
  term: number;
  voters: string[];
  kafkaNextOffset: number;
  bytes: number;
}

export interface RestoreResult {
  nodeId: string;
  dataDir: string;
  manifest: BackupManifest;
  shards: RestoredShard[];
}

function checkEmptyDataDir(dir: string): boolean {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (entries.length > 0) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'data_dir_not_empty',
      `data directory ${dir} is not empty: a restore seeds a new node; give it an empty or new directory`,
      { field: 'dataDir' },
    );
  }
  return true;
}

/** Seeds `options.config.dataDir` from the backup; see the file comment. */
export async function restoreNode(options: RestoreOptions): Promise<RestoreResult> {
  const { config, from } = options;
  const manifest = await readManifest(from);
  if (manifest.shardCount !== config.shards) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'backup_shard_count_mismatch',
      `the backup has ${manifest.shardCount} shards but this cluster is configured with ${config.shards}: ` +
        `restore into a cluster with --shards ${manifest.shardCount} (the shard of a series depends on the count)`,
      { field: 'shards' },
    );
  }
  for (const s of manifest.shards) {
    if (s.storeFormatVersion !== STORE_FORMAT_VERSION) {
      throw new TidemarkError(
        'FAILED_PRECONDITION',
        'store_format_unsupported',
        `shard ${s.shard}: the backup holds store format ${s.storeFormatVersion}, this version reads ${STORE_FORMAT_VERSION}`,
      );
    }
  }
  const dataDir = config.dataDir;
  const existed = checkEmptyDataDir(dataDir);
  const map = ShardMap.fromConfig(config);
  const local = map.shardsOfNode(config.nodeId);
  mkdirSync(dataDir, { recursive: true });
  const out: RestoredShard[] = [];
  try {
    // Stores first (the expensive, checkable part), then the logs: a failure leaves no half-seeded log.
    for (const shard of local) {
      const s = manifest.shards[shard]!;
      await installImage(from, s, join(dataDir, `shard-${shard}`), options.chunkBytes ?? 1 << 20);
    }
    const env = LmdbLogEnv.open(join(dataDir, 'raft-log'), { maxLogs: config.shards });
    try {
      for (const shard of local) {
        const s = manifest.shards[shard]!;
        const voters = [...map.replicasOf(shard)];
        const log = await LmdbLogStorage.open({
          path: join(dataDir, 'raft-log'),
          env,
          name: `shard-${shard}`,
          conf: { voters, learners: [] },
        });
        try {
          if (s.index > 0) {
            const conf = { voters, learners: [] };
            const data = encodeDescriptor({
              version: 1,
              shard,
              snapshotId: `restore-${shard}-${s.index}`,
              formatVersion: s.storeFormatVersion,
              index: s.index,
              term: s.term,
              // This node holds the image: where a new member would fetch it from first.
              source: config.nodeId,
            });
            await log.applySnapshot({ meta: { index: s.index, term: s.term, conf }, data });
            await log.save({ term: s.term, vote: '', commit: s.index }, []);
          }
        } finally {
          await log.close();
        }
        out.push({
          shard,
          index: s.index,
          term: s.term,
          voters,
          kafkaNextOffset: s.kafkaNextOffset,
          bytes: s.bytes,
        });
      }
    } finally {
      await env.close();
    }
    await fsyncDir(dataDir);
  } catch (err) {
    // The directory was empty (or absent) before: leave it so, a half-seeded node must not start.
    if (existed) {
      for (const e of readdirSync(dataDir)) await rm(join(dataDir, e), { recursive: true, force: true });
    } else await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  return { nodeId: config.nodeId, dataDir, manifest, shards: out };
}

/** Copies a shard's image into `<shardDir>/store/data.mdb`, checking size, checksum and recorded index. */
async function installImage(
  from: string,
  s: BackupShard,
  shardDir: string,
  chunkBytes: number,
): Promise<void> {
  const storeDir = join(shardDir, STORE_DIR);
  mkdirSync(storeDir, { recursive: true });
  const src = join(from, s.file);
  const out = await HashingFileWriter.create(join(storeDir, IMAGE_FILE));
  try {
    for await (const chunk of readImageFile(src, chunkBytes)) await out.write(chunk);
  } catch (err) {
    await out.abort();
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw dataCorruption(
        'backup_image_missing',
        `shard ${s.shard}: ${src} is missing: the backup is incomplete`,
      );
    }
    throw err;
  }
  checkImage(`shard ${s.shard} (${src})`, await out.finish(), s);
  // Only a verified file is opened by LMDB.
  const meta = await readImageMeta(storeDir);
  await rm(join(storeDir, 'lock.mdb'), { force: true });
  if (meta.formatVersion !== s.storeFormatVersion || meta.appliedIndex !== s.index) {
    throw dataCorruption(
      'backup_image_meta_mismatch',
      `shard ${s.shard}: ${src} records format ${meta.formatVersion} index ${meta.appliedIndex}, ` +
        `the manifest says ${s.storeFormatVersion} / ${s.index}`,
    );
  }
  await fsyncDir(storeDir);
}
