/**
 * The shard store as a Raft state machine, and Raft snapshots that never hold the store in memory
 * (docs/snapshots.md).
 *
 * A Raft snapshot's `data` is a small **descriptor** (format version, applied index, term, source node,
 * snapshot id). The store image itself is produced on demand by the node that serves it (a consistent
 * compacted copy of its LMDB environment, src/storage/snapshot.ts) and streamed in bounded chunks
 * through `SnapshotSource` (sender) → `SnapshotSink` (receiver). `SnapshotPeers` finds a peer's source:
 * `MemorySnapshotNetwork` here; the gRPC `Snapshot` stream implements it later.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { dataCorruption, isTidemarkError, TidemarkError } from '../errors/index.js';
import type { Entry, NodeId, Snapshot, StateMachine } from '../raft/types.js';
import { LmdbShardStore, type LmdbStoreOptions, STORE_FORMAT_VERSION } from '../storage/lmdb-store.js';
import {
  createStoreImage,
  IMAGE_FILE,
  type InstallFaultHook,
  readImageFile,
  STORE_DIR,
  type StoreImageInfo,
  StoreImageWriter,
  swapInStore,
} from '../storage/snapshot.js';
import type { ApplyResult, DeleteResult, SampleBatch } from '../storage/store.js';
import {
  decodeNextOffset,
  type EntryCodec,
  encodeNextOffset,
  encodeU64,
  entryCodec,
  KAFKA_NEXT_OFFSET_KEY,
  RETENTION_MS_KEY,
} from './entry.js';

// ------------------------------------------------------------------ descriptor

/** The Raft snapshot's data: what the image must be, not the image. */
export interface SnapshotDescriptor {
  version: 1;
  shard: number;
  /** Unique per snapshot taken (for logs and tracing). */
  snapshotId: string;
  /** Store format version of the node that took it. */
  formatVersion: number;
  /** The store's durable applied index when the snapshot was taken. */
  index: number;
  /** Raft term of `index` (0 if unknown). */
  term: number;
  /** The node that took it: the first place to fetch the image from. */
  source: NodeId;
}

const DESC_MAGIC = 'TMSD';

export function encodeDescriptor(d: SnapshotDescriptor): Uint8Array {
  return new TextEncoder().encode(DESC_MAGIC + JSON.stringify(d));
}

export function decodeDescriptor(data: Uint8Array): SnapshotDescriptor {
  const s = new TextDecoder().decode(data);
  if (!s.startsWith(DESC_MAGIC))
    throw dataCorruption('snapshot_descriptor_invalid', 'not a snapshot descriptor');
  let d: SnapshotDescriptor;
  try {
    d = JSON.parse(s.slice(DESC_MAGIC.length)) as SnapshotDescriptor;
  } catch (err) {
    throw dataCorruption('snapshot_descriptor_invalid', 'snapshot descriptor is not valid JSON', {}, err);
  }
  if (d.version !== 1) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'snapshot_descriptor_version',
      `descriptor version ${d.version}`,
    );
  }
  return d;
}

// ------------------------------------------------------------------ streaming interfaces

export interface ImageRequest {
  shard: number;
  /** The image must hold at least this applied index (the Raft snapshot's index). */
  minIndex: number;
  /** The descriptor's id, informational. */
  snapshotId?: string;
}

/** Announced before the first chunk: what the receiver verifies against. */
export interface ImageManifest extends StoreImageInfo {
  shard: number;
  snapshotId: string;
  /** Upper bound of each chunk's length. */
  chunkBytes: number;
}

export interface ImageStream {
  manifest: ImageManifest;
  /** The image, in order, in chunks of at most manifest.chunkBytes. Iterate once. */
  chunks: AsyncIterable<Uint8Array>;
  /** Releases the sender's resources (the temporary image). Idempotent. */
  close(): Promise<void>;
}

/** Sender side: serves images of one node's shard stores. */
export interface SnapshotSource {
  open(request: ImageRequest): Promise<ImageStream>;
}

/** Receiver side: persists an image (StoreImageWriter implements it). */
export interface SnapshotSink {
  begin(manifest: ImageManifest): Promise<void>;
  write(chunk: Uint8Array): Promise<void>;
  /** Verifies (size, checksum, contents) and makes the image durable and installable. */
  finish(): Promise<StoreImageInfo>;
  abort(): Promise<void>;
}

/** How a receiver reaches a peer's SnapshotSource. */
export interface SnapshotPeers {
  sourceFor(peer: NodeId, shard: number): SnapshotSource | undefined;
}

/** Copies one stream into a sink, chunk by chunk. */
export async function pipeImage(stream: ImageStream, sink: SnapshotSink): Promise<StoreImageInfo> {
  try {
    await sink.begin(stream.manifest);
    for await (const c of stream.chunks) {
      if (c.length > stream.manifest.chunkBytes)
        throw dataCorruption('snapshot_chunk_too_large', 'snapshot chunk exceeds its announced bound');
      await sink.write(c);
    }
    return await sink.finish();
  } catch (err) {
    await sink.abort();
    throw err;
  } finally {
    await stream.close();
  }
}

export interface MemorySnapshotNetworkStats {
  images: number;
  chunks: number;
  bytes: number;
}

/**
 * In-process SnapshotPeers for tests: node → its SnapshotSource. Counts what flows and can cut a stream
 * after `failAfterChunks` chunks (fault injection), or make a node unreachable.
 */
export class MemorySnapshotNetwork implements SnapshotPeers {
  private readonly sources = new Map<string, SnapshotSource>();
  readonly stats: MemorySnapshotNetworkStats = { images: 0, chunks: 0, bytes: 0 };
  /** When set, the next streams fail after this many chunks (then it is cleared). */
  failAfterChunks: number | undefined;
  /** Nodes whose sources are unreachable. */
  readonly down = new Set<NodeId>();

  register(node: NodeId, shard: number, source: SnapshotSource): void {
    this.sources.set(`${node}/${shard}`, source);
  }

  unregister(node: NodeId, shard: number, source?: SnapshotSource): void {
    const key = `${node}/${shard}`;
    if (source === undefined || this.sources.get(key) === source) this.sources.delete(key);
  }

  sourceFor(peer: NodeId, shard: number): SnapshotSource | undefined {
    if (this.down.has(peer)) return undefined;
    const src = this.sources.get(`${peer}/${shard}`);
    if (src === undefined) return undefined;
    return {
      open: async (req) => {
        const s = await src.open(req);
        this.stats.images++;
        const failAfter = this.failAfterChunks;
        this.failAfterChunks = undefined;
        const stats = this.stats;
        async function* counted(): AsyncGenerator<Uint8Array> {
          let n = 0;
          for await (const c of s.chunks) {
            if (failAfter !== undefined && n >= failAfter) {
              throw new TidemarkError(
                'UNAVAILABLE',
                'snapshot_stream_broken',
                'snapshot stream broken (injected)',
              );
            }
            n++;
            stats.chunks++;
            stats.bytes += c.length;
            yield c;
          }
        }
        return { manifest: s.manifest, chunks: counted(), close: () => s.close() };
      },
    };
  }
}

// ------------------------------------------------------------------ the state machine

export interface ShardStateMachineOptions {
  shard: number;
  nodeId: NodeId;
  /** `<dataDir>/shard-<id>`: holds store/, store-incoming/, store-old/, images/. */
  shardDir: string;
  store: LmdbShardStore;
  storeOptions?: Partial<LmdbStoreOptions>;
  codec?: EntryCodec;
  peers: SnapshotPeers;
  /** Other members to try when the descriptor's source cannot serve the image. */
  members: () => NodeId[];
  /** Raft term of a log index (0 if unknown). */
  termOf?: (index: number) => number;
  /** Chunk bound of images this node serves (default 1 MiB). */
  chunkBytes?: number;
  /** Images served concurrently (default 2); beyond it open() fails RESOURCE_EXHAUSTED. */
  maxConcurrentImages?: number;
  /** How long restore() keeps trying peers before failing (default 60 s). */
  restoreTimeoutMs?: number;
  /** Crash injection for the install (tests). */
  installFaults?: InstallFaultHook;
}

/** Outcome of applying one entry: what the store returned. */
/**
 * What applying an entry did. A batch tagged with Kafka records also says whether its records were the next
 * ones (`apply`), already applied (`replay`: an earlier proposal of them committed after all) or past a
 * gap (`gap`); only `apply` stores samples — the other two apply nothing but the index.
 */
export type ShardApplyResult = (ApplyResult & { kafka?: 'apply' | 'replay' | 'gap' }) | DeleteResult;

const NO_SAMPLES: SampleBatch = {
  series: [],
  seriesRef: new Uint32Array(0),
  timestamps: new Float64Array(0),
  values: new Float64Array(0),
  length: 0,
};

/**
 * The StateMachine over an LmdbShardStore, and this node's SnapshotSource for the shard.
 *
 * apply() calls the store synchronously (no await before it), so the applies the driver issues in one
 * turn (pipelineApply) share one group commit. appliedIndex() is the store's *durable* applied index, so
 * after a crash the driver re-applies from there (idempotent by index) and compaction never passes it.
 */
export class ShardStateMachine implements StateMachine, SnapshotSource {
  private current: LmdbShardStore;
  private readonly codec: EntryCodec;
  private installing = false;
  private imagesOpen = 0;
  private imageSeq = 0;
  /** While set, appliedIndex() reports at most this (see ShardReplica.open: a store ahead of the log). */
  ceiling = Number.POSITIVE_INFINITY;
  /** Counters. */
  readonly stats = { applied: 0, duplicates: 0, restores: 0, imagesServed: 0 };

  constructor(private readonly opts: ShardStateMachineOptions) {
    this.current = opts.store;
    this.codec = opts.codec ?? entryCodec;
  }

  /** The live store (replaced by restore()). Throws UNAVAILABLE while an image is being installed. */
  get store(): LmdbShardStore {
    if (this.installing) {
      throw new TidemarkError('UNAVAILABLE', 'snapshot_installing', 'replica is installing a snapshot', {
        retryAfterMs: 100,
      });
    }
    return this.current;
  }

  isInstalling(): boolean {
    return this.installing;
  }

  apply(entry: Entry): Promise<ShardApplyResult> {
    let p: Promise<ShardApplyResult>;
    try {
      const cmd = this.codec.decode(entry.data);
      const store = this.current;
      if (cmd.kind === 'delete') p = store.applyDelete(entry.index, cmd.request);
      else if (cmd.kind === 'policy') {
        p = store.applyBatch(entry.index, NO_SAMPLES, {
          [RETENTION_MS_KEY]: encodeU64(cmd.policy.retentionMs),
        });
      } else if (cmd.kafka === undefined) p = store.applyBatch(entry.index, cmd.batch);
      else {
        // The exactly-once rule (docs/kafka.md): samples and the next offset in one transaction, and only
        // for the records that come next. getMeta reads through the open write group, so entries applied
        // earlier in the same Ready count.
        const next = decodeNextOffset(store.getMeta(KAFKA_NEXT_OFFSET_KEY));
        const { firstOffset, lastOffset } = cmd.kafka;
        const decision = firstOffset === next ? 'apply' : firstOffset < next ? 'replay' : 'gap';
        p = (
          decision === 'apply'
            ? store.applyBatch(entry.index, cmd.batch, {
                [KAFKA_NEXT_OFFSET_KEY]: encodeNextOffset(lastOffset + 1),
              })
            : store.applyBatch(entry.index, NO_SAMPLES)
        ).then((r) => ({ ...r, kafka: decision }));
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return p.then((r) => {
      if (r.duplicate) this.stats.duplicates++;
      else this.stats.applied++;
      return r;
    });
  }

  appliedIndex(): number {
    return Math.min(this.current.appliedIndex(), this.ceiling);
  }

  /** The store's applies are durable at its checkpoints (externalLog): the driver asks for one to compact. */
  async persist(): Promise<void> {
    if (this.installing) return;
    await this.current.checkpoint();
  }

  /** Descriptor only: the store is durable up to its applied index, the log is compacted up to there. */
  async snapshot(): Promise<Uint8Array> {
    const index = this.current.appliedIndex();
    let term = 0;
    try {
      term = this.opts.termOf?.(index) ?? 0;
    } catch {
      term = 0;
    }
    return encodeDescriptor({
      version: 1,
      shard: this.opts.shard,
      snapshotId: randomUUID(),
      formatVersion: STORE_FORMAT_VERSION,
      index,
      term,
      source: this.opts.nodeId,
    });
  }

  /**
   * Fetches an image at least as new as the snapshot from its source (then any other member), verifies
   * it, swaps it in for the store and reopens. Keeps trying until restoreTimeoutMs.
   */
  async restore(snapshot: Snapshot): Promise<void> {
    const need = snapshot.meta.index;
    if (this.current.appliedIndex() >= need) return;
    const desc = snapshot.data.length > 0 ? decodeDescriptor(snapshot.data) : undefined;
    const deadline = Date.now() + (this.opts.restoreTimeoutMs ?? 60_000);
    let last: unknown;
    let delay = 20;
    for (;;) {
      const candidates = [desc?.source, ...this.opts.members()].filter(
        (n, i, a): n is NodeId => n !== undefined && n !== '' && n !== this.opts.nodeId && a.indexOf(n) === i,
      );
      for (const peer of candidates) {
        const src = this.opts.peers.sourceFor(peer, this.opts.shard);
        if (src === undefined) continue;
        try {
          await this.fetchAndInstall(src, need, desc?.snapshotId);
          this.stats.restores++;
          return;
        } catch (err) {
          if (isTidemarkError(err, 'INTERNAL') && err.reason === 'snapshot_install_failed') throw err;
          last = err;
        }
      }
      if (Date.now() >= deadline) {
        throw new TidemarkError(
          'UNAVAILABLE',
          'snapshot_fetch_failed',
          `could not fetch a store image at index >= ${need} for shard ${this.opts.shard}`,
          {},
          last,
        );
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
    }
  }

  private async fetchAndInstall(src: SnapshotSource, minIndex: number, snapshotId?: string): Promise<void> {
    const req: ImageRequest = { shard: this.opts.shard, minIndex };
    if (snapshotId !== undefined) req.snapshotId = snapshotId;
    const stream = await src.open(req);
    if (stream.manifest.appliedIndex < minIndex) {
      await stream.close();
      throw new TidemarkError('UNAVAILABLE', 'snapshot_image_stale', 'peer image is older than the snapshot');
    }
    if (stream.manifest.formatVersion !== STORE_FORMAT_VERSION) {
      await stream.close();
      throw new TidemarkError(
        'FAILED_PRECONDITION',
        'store_format_unsupported',
        'peer image has another format',
      );
    }
    await pipeImage(stream, new StoreImageWriter(this.opts.shardDir, this.opts.installFaults));
    // The image is complete, verified and durable (marker written): swap it in.
    this.installing = true;
    try {
      await this.current.close();
      await swapInStore(this.opts.shardDir, this.opts.installFaults);
      this.current = await LmdbShardStore.open(join(this.opts.shardDir, STORE_DIR), this.opts.storeOptions);
    } catch (err) {
      // The store is closed and the directory may be mid-swap: only a reopen (recoverStoreSwap) repairs it.
      throw new TidemarkError(
        'INTERNAL',
        'snapshot_install_failed',
        `installing the snapshot image failed; reopen the replica: ${String(err)}`,
        {},
        err,
      );
    }
    this.installing = false;
  }

  /** SnapshotSource: a fresh consistent image of this node's store, streamed from a temporary copy. */
  async open(request: ImageRequest): Promise<ImageStream> {
    if (request.shard !== this.opts.shard)
      throw new TidemarkError('NOT_FOUND', 'shard_not_here', `shard ${request.shard} is not on this node`);
    // The store's durable index lags its applies until a checkpoint (externalLog): one may be all it takes.
    if (this.store.appliedIndex() < request.minIndex) await this.store.checkpoint();
    const max = this.opts.maxConcurrentImages ?? 2;
    if (this.imagesOpen >= max) {
      throw new TidemarkError(
        'RESOURCE_EXHAUSTED',
        'snapshot_images_busy',
        'too many snapshot images in progress',
        {
          retryAfterMs: 500,
        },
      );
    }
    const store = this.store;
    if (store.appliedIndex() < request.minIndex) {
      throw new TidemarkError(
        'UNAVAILABLE',
        'snapshot_image_stale',
        'this replica is behind the requested snapshot',
      );
    }
    this.imagesOpen++;
    const dir = join(this.opts.shardDir, 'images', `${process.pid}-${++this.imageSeq}`);
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      this.imagesOpen--;
      await rm(dir, { recursive: true, force: true });
    };
    try {
      mkdirSync(join(this.opts.shardDir, 'images'), { recursive: true });
      const info = await createStoreImage(store, dir);
      this.stats.imagesServed++;
      const chunkBytes = this.opts.chunkBytes ?? 1 << 20;
      const manifest: ImageManifest = {
        ...info,
        shard: this.opts.shard,
        snapshotId: request.snapshotId ?? randomUUID(),
        chunkBytes,
      };
      const file = join(dir, IMAGE_FILE);
      async function* chunks(): AsyncGenerator<Uint8Array> {
        try {
          yield* readImageFile(file, chunkBytes);
        } finally {
          await close();
        }
      }
      return { manifest, chunks: chunks(), close };
    } catch (err) {
      await close();
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.current.close();
  }
}
