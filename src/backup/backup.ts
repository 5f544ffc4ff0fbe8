/**
 * Taking a backup (docs/backup.md): for each shard, BackupService.Backup on a node holding a replica (the
 * leader first), streamed into `DIR/shard-<n>.img` (one chunk in memory at a time), checked (size, SHA-256,
 * then the format version and applied index the image itself records), fsynced; `DIR/manifest.json` last.
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TidemarkClient } from '../client/client.js';
import {
  type BearerToken,
  bearerInterceptor,
  channelCredentials,
  type TlsOptions,
  tlsChannelOptions,
} from '../client/credentials.js';
import { dataCorruption, isTidemarkError, TidemarkError } from '../errors/index.js';
import { BackupService } from '../gen/tidemark/v1/client_pb.js';
import { createClient, type ServiceClient } from '../transport/grpc-adapter.js';
import {
  BACKUP_FORMAT,
  BACKUP_VERSION,
  type BackupManifest,
  type BackupShard,
  checkImage,
  fsyncDir,
  HashingFileWriter,
  imageFileOf,
  MANIFEST_FILE,
  readImageRecords,
} from './format.js';

export interface BackupOptions {
  /** The backup directory: created if missing; must be empty. */
  dir: string;
  /** Client API addresses of one or more nodes (the rest are learned from the shard map). */
  endpoints: readonly string[];
  token?: BearerToken;
  tls?: TlsOptions;
  /**
   * How long each shard's barrier and image copy may take before the node starts streaming it (ms, default
   * 60,000); the shard-map lookup gets at most 30 s of it. The transfer itself has no deadline.
   */
  timeoutMs?: number;
  /** Shards fetched at once (default 2). */
  parallel?: number;
  /** Told after each shard's image is complete. */
  onShard?: (shard: BackupShard) => void;
  /** Clock (tests). */
  now?: () => Date;
}

type Conn = ServiceClient<typeof BackupService>;

function checkEmptyDir(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      mkdirSync(dir, { recursive: true });
      return;
    }
    throw err;
  }
  if (entries.length > 0) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'backup_dir_not_empty',
      `backup directory ${dir} is not empty (${entries.length} entries): give a new or empty directory`,
      { field: 'to' },
    );
  }
}

/** Errors after which another replica may succeed. */
function tryNext(err: unknown): boolean {
  return (
    !isTidemarkError(err) ||
    ['NOT_FOUND', 'NOT_LEADER', 'UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'CLOSED'].includes(
      err.code,
    )
  );
}

/** Takes a backup of the whole cluster into `options.dir`; resolves with the manifest written there. */
export async function takeBackup(options: BackupOptions): Promise<BackupManifest> {
  const now = options.now ?? (() => new Date());
  const timeoutMs = options.timeoutMs ?? 60_000;
  const dir = options.dir;
  checkEmptyDir(dir);
  const startedAt = now().toISOString();
  const client = await TidemarkClient.connect({
    endpoints: options.endpoints,
    // The shard map answers at once or not at all; only the images may take long to start.
    deadlineMs: Math.min(timeoutMs, 30_000),
    shardMapRefreshMs: 0,
    ...(options.token === undefined ? {} : { token: options.token }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
  });
  const conns = new Map<string, Conn>();
  const conn = (address: string): Conn => {
    let c = conns.get(address);
    if (c === undefined) {
      c = createClient(BackupService, address, {
        credentials: channelCredentials(options.tls),
        grpcOptions: tlsChannelOptions(options.tls),
        ...(options.token === undefined ? {} : { interceptors: [bearerInterceptor(options.token)] }),
      });
      conns.set(address, c);
    }
    return c;
  };
  const created: string[] = [];
  try {
    const map = await client.shardMap({ refresh: true });
    if (map === undefined) {
      throw new TidemarkError(
        'UNAVAILABLE',
        'shard_map_unknown',
        'the cluster did not answer with its shard map',
      );
    }
    const shards: BackupShard[] = new Array(map.shardCount);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const shard = next++;
        if (shard >= map.shardCount) return;
        const info = map.shards[shard]!;
        // The leader first (its image is the freshest and its barrier needs no extra hop), then the other
        // replicas, then whatever endpoints were given (a node without a known address may still hold one).
        const ids = [info.leader, ...info.replicas].filter((id, i, a) => id !== '' && a.indexOf(id) === i);
        const addresses = [
          ...ids.map((id) => map.nodes[id]).filter((a): a is string => a !== undefined),
          ...options.endpoints,
        ].filter((a, i, all) => all.indexOf(a) === i);
        const file = join(dir, imageFileOf(shard));
        let last: unknown;
        for (const address of addresses) {
          try {
            created.push(`${file}.partial`, file);
            shards[shard] = await fetchShard(conn(address), shard, file, timeoutMs, now);
            options.onShard?.(shards[shard]!);
            last = undefined;
            break;
          } catch (err) {
            last = err;
            if (!tryNext(err)) throw err;
          }
        }
        if (last !== undefined) {
          const e = last instanceof Error ? last.message : String(last);
          throw new TidemarkError(
            'UNAVAILABLE',
            'backup_shard_failed',
            `shard ${shard}: no node could serve its image (tried ${addresses.join(', ')}): ${e}`,
            {},
            last,
          );
        }
      }
    };
    const parallel = Math.max(1, Math.min(options.parallel ?? 2, map.shardCount));
    await Promise.all(Array.from({ length: parallel }, worker));
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      version: BACKUP_VERSION,
      startedAt,
      completedAt: now().toISOString(),
      shardCount: map.shardCount,
      shards,
    };
    const tmp = join(dir, `${MANIFEST_FILE}.tmp`);
    created.push(tmp);
    await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`, { flush: true });
    await rename(tmp, join(dir, MANIFEST_FILE));
    await fsyncDir(dir);
    return manifest;
  } catch (err) {
    // No manifest: what was written is no backup; remove it (the directory was empty when we started).
    await Promise.all(created.map((f) => rm(f, { force: true })));
    throw err;
  } finally {
    for (const c of conns.values()) c.close();
    await client.close();
  }
}

/** Streams one shard's image from one node into `file` (via `file.partial`) and checks it. */
async function fetchShard(
  c: Conn,
  shard: number,
  file: string,
  timeoutMs: number,
  now: () => Date,
): Promise<BackupShard> {
  const abort = new AbortController();
  // The barrier and the image copy must start within timeoutMs; the transfer itself may take longer.
  let timedOut = false;
  const startTimer = setTimeout(() => {
    timedOut = true;
    abort.abort();
  }, timeoutMs);
  const partial = `${file}.partial`;
  let out: HashingFileWriter | undefined;
  try {
    const it = c.backup({ shard }, { signal: abort.signal })[Symbol.asyncIterator]();
    const first = await it.next();
    clearTimeout(startTimer);
    if (first.done || first.value.part.case !== 'manifest')
      throw dataCorruption('backup_stream_invalid', `shard ${shard}: the backup stream has no manifest`);
    const m = first.value.part.value;
    if (m.shard !== shard)
      throw dataCorruption('backup_stream_invalid', `shard ${shard}: the node sent shard ${m.shard}`);
    const want = { bytes: Number(m.bytes), sha256: m.sha256 };
    out = await HashingFileWriter.create(partial);
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      if (r.value.part.case !== 'chunk')
        throw dataCorruption('backup_stream_invalid', `shard ${shard}: unexpected message in the stream`);
      const chunk = r.value.part.value;
      if (chunk.length > m.chunkBytes || out.bytes + chunk.length > want.bytes)
        throw dataCorruption(
          'backup_stream_invalid',
          `shard ${shard}: the stream runs past its announced size`,
        );
      await out.write(chunk);
    }
    const got = await out.finish();
    out = undefined;
    checkImage(`shard ${shard} image from ${m.nodeId}`, got, want);
    const rec = await readImageRecords(partial);
    if (rec.formatVersion !== m.formatVersion || rec.appliedIndex !== Number(m.index)) {
      throw dataCorruption(
        'backup_image_meta_mismatch',
        `shard ${shard}: the image records format ${rec.formatVersion} index ${rec.appliedIndex}, ` +
          `the node announced ${m.formatVersion} / ${m.index}`,
      );
    }
    await rename(partial, file);
    return {
      shard,
      file: imageFileOf(shard),
      index: Number(m.index),
      readIndex: Number(m.readIndex),
      term: Number(m.term),
      storeFormatVersion: m.formatVersion,
      kafkaNextOffset: rec.kafkaNextOffset,
      bytes: got.bytes,
      sha256: got.sha256,
      sourceNode: m.nodeId,
      sourceVoters: [...m.voters],
      takenAt: now().toISOString(),
    };
  } catch (err) {
    clearTimeout(startTimer);
    abort.abort();
    await out?.abort();
    await rm(partial, { force: true });
    if (timedOut) {
      throw new TidemarkError(
        'DEADLINE_EXCEEDED',
        'deadline_exceeded',
        `shard ${shard}: the node did not start sending its image within ${timeoutMs} ms`,
      );
    }
    throw err;
  }
}
