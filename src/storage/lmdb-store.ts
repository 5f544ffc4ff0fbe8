/**
 * The production shard store: one LMDB environment per shard replica (docs/format/store.md).
 *
 * Write path: every operation runs synchronously inside a write group — one LMDB write transaction
 * shared by the operations of one event-loop turn (group commit) — mutating the in-memory head and
 * writing the write-ahead record, sealed/rewritten chunks, new series, the applied index and meta;
 * its promise resolves once the group's durable commit is done. Because memory and database change
 * together on the JS thread, and reads go through the open transaction, a reader sees every operation
 * all-or-nothing.
 *
 * Recovery: load the checkpointed head (the `head` sub-database), then redo the write-ahead records
 * after the checkpoint in order. Every decision an operation makes depends only on state that the
 * checkpoint + redo reconstruct exactly (per-series watermark, sealed bound and head; the retention
 * cutoff), and every change to `chunks` is redone idempotently, so the result equals the state before
 * the crash.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { ABORT, type Database, open, type RootDatabase } from 'lmdb';
import { decodeChunk, Encoding, encodeChunk } from '../chunk/index.js';
import { closed, dataCorruption, invalidArgument, isTidemarkError, TidemarkError } from '../errors/index.js';
import {
  internedId,
  internedKey,
  MAX_TIMESTAMP_MS,
  MIN_TIMESTAMP_MS,
  parseCanonicalKey,
  SERIES_ID_BYTES,
  type Series,
  seriesIdHex,
  seriesIdOfKey,
} from '../model/index.js';
import {
  compactCopy,
  fileBytes,
  finishShrink,
  freeBytesEstimate,
  removeShrinkLeftover,
} from '../util/lmdb-shrink.js';
import { ChunkTable } from './chunk-table.js';
import { SeriesState } from './head.js';
import { HeadPool } from './head-pool.js';
import { lowerBound, SnapshotSeries, upperBound } from './iterator.js';
import {
  idKey,
  META_APPLIED,
  META_CHECKPOINT,
  META_FORMAT,
  parseWalKey,
  readU64,
  userMetaKey,
  walKey,
  writeU64,
} from './keys.js';
import { type CompiledSelect, compileSelect, matchesAll } from './matchers.js';
import { resolveStoreOptions, type StoreOptions } from './options.js';
import { PostingsIndex } from './postings.js';
import type {
  ApplyResult,
  DeleteRequest,
  DeleteResult,
  LastSample,
  RejectedSample,
  RejectReason,
  RetentionResult,
  SampleBatch,
  SelectRequest,
  SeriesData,
  ShardStore,
  StoreCapabilities,
  StoreStats,
} from './store.js';
import { canonicalKeyOrNull, checkBatch, checkIndex, checkMeta, checkNow } from './validate.js';
import {
  decodeWalRecord,
  SERIES_EXISTING,
  SERIES_NEW,
  SERIES_UNUSED,
  WAL_BATCH,
  WAL_DELETE,
  type WalBatch,
  type WalSeriesEntry,
  WalWriter,
} from './wal.js';

/** Version of the on-disk layout (docs/format/store.md). Bump on any incompatible change. */
export const STORE_FORMAT_VERSION = 1;

/**
 * Head checkpoint record version (the `head` sub-database values): 2 holds the head as segments, so that a
 * checkpoint encodes only the samples appended since the last one; version 1 records (one chunk) still load.
 */
const HEAD_RECORD_VERSION = 2;
/** A record with this many segments is re-encoded whole at the next checkpoint (bounds decode and size). */
const MAX_HEAD_SEGMENTS = 16;
/**
 * Head segments are Gorilla-coded, without the search for the smallest encoding that sealed chunks get:
 * a segment lives only until its series seals (then it is encoded for good), and the search (Decimal
 * orders and Rice parameters, then Gorilla to compare) costs about 3x Gorilla alone, paid by every replica
 * at every checkpoint (docs/format/store.md "Head checkpoint records").
 */
const HEAD_ENCODING = { encoding: Encoding.Gorilla };

export interface LmdbStoreOptions extends StoreOptions {
  /**
   * 0 (default): every write group is fsync'd before its operations resolve. > 0: deferred sync, for a
   * store under Raft whose log already holds every entry durably: commits skip fsync (they survive a
   * process crash through the page cache), the environment is fsync'd at least this often (ms) and on
   * checkpoint/close, and appliedIndex() reports only what the last fsync covered, so the log is never
   * compacted past what the store has on disk. An OS crash while unsynced commits exist can tear an
   * LMDB file written without fsync: the store then refuses to open (`store_unsynced_os_restart`).
   */
  syncIntervalMs: number;
  /**
   * Only with syncIntervalMs = 0, for a store under Raft (src/cluster/replica.ts): each write group commits
   * without fsync on the event loop and is then fsync'd on a worker thread (lmdb-js env.sync); the next group
   * commits only after that sync, so at most one commit is ever unsynced and LMDB's two meta pages always
   * include a synced snapshot. Operations resolve at commit (page cache: survives kill -9). appliedIndex()
   * reports the older of the two synced snapshots, which survives an OS crash: after an OS restart the
   * store opens that snapshot (LMDB's MDB_PREVSNAPSHOT) instead of refusing, and the Raft log, never
   * compacted past appliedIndex(), re-applies the rest. The event loop never waits for an fsync.
   * docs/format/store.md "Pipelined sync".
   */
  pipelinedSync: boolean;
  /**
   * For a store under Raft, whose log already holds every entry durably: the store writes no write-ahead
   * records of its own (the log is its write-ahead log, as etcd's backend relies on its Raft WAL).
   * appliedIndex() then reports the last *checkpoint* that is durable; after a crash the store opens at that
   * checkpoint and the caller re-applies the entries after appliedIndex() from its log (the Raft driver
   * does, and never compacts the log past it). Deletes and retention runs checkpoint at once (their outcome
   * depends on more than the head state), and user meta (Kafka offsets) is persisted with checkpoints, so a
   * reopened store is exactly the state as of its checkpoint. docs/format/store.md "External log".
   */
  externalLog: boolean;
}

/** Marker present while deferred-sync commits may be unsynced; holds the kernel boot id. */
const UNSYNCED_MARKER = 'UNSYNCED';
/** Second line of the marker of a pipelined-sync store: an OS restart rolls back one commit, never tears. */
const PIPELINED_TAG = 'pipelined';
/**
 * A clean close copies the file when at least this many bytes are free pages, and either the live bytes (what
 * the copy costs, paid while the node stops) are few or a quarter of the file is free; never above the max.
 */
const SHRINK_MIN_FREE_BYTES = 32 * 1024;
const SHRINK_CHEAP_COPY_BYTES = 64 * 1024 * 1024;
const SHRINK_MAX_COPY_BYTES = 256 * 1024 * 1024;

/** lmdb-js runs mdb_env_sync(force) on a worker thread; its typings omit sync(). */
function envSync(env: RootDatabase): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    (env as unknown as { sync(cb: (err: unknown) => void): void }).sync((err) =>
      err ? reject(err) : resolve(),
    );
  });
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

interface WriteGroup {
  aborted: boolean;
  /** this.applied when the group closed. */
  lastIndex: number;
  /** Resolves once the group's transaction is committed and flushed; rejects if it was aborted. */
  done: Promise<void>;
}

interface Loaded {
  key: Buffer;
  value: Buffer;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeU64(b, 0, n);
  return b;
}

/** The canonical key length of a head record (version 1 or 2), after checking the fixed part. */
function headKeyLength(value: Buffer): number {
  if (value.length < 22 || (value[0] !== 1 && value[0] !== HEAD_RECORD_VERSION)) {
    throw dataCorruption('head_record_invalid', 'head checkpoint record is malformed');
  }
  const keyLen = value.readUInt32BE(17);
  if (21 + keyLen + 1 > value.length) throw dataCorruption('head_record_invalid', 'head record truncated');
  return keyLen;
}

/** The encoded chunks of a head record: version 1 has one (or none), version 2 a counted list. */
function headSegments(value: Buffer, keyLen: number): Uint8Array[] {
  let at = 21 + keyLen;
  if (value[0] === 1) {
    if (at + 4 > value.length) throw dataCorruption('head_record_invalid', 'head record truncated');
    const len = value.readUInt32BE(at);
    if (at + 4 + len !== value.length) throw dataCorruption('head_record_invalid', 'head record length');
    return len === 0 ? [] : [value.subarray(at + 4)];
  }
  const n = value[at++]!;
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    if (at + 4 > value.length) throw dataCorruption('head_record_invalid', 'head record truncated');
    const len = value.readUInt32BE(at);
    if (len === 0 || at + 4 + len > value.length)
      throw dataCorruption('head_record_invalid', 'head record segment length');
    out.push(value.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  if (at !== value.length) throw dataCorruption('head_record_invalid', 'head record length');
  return out;
}

export class LmdbShardStore implements ShardStore {
  readonly capabilities: StoreCapabilities;

  /** Live series by hex id; also keeps each metric's series in memory for reads (SeriesMap, below). */
  private readonly byHex = new SeriesMap();
  private readonly byObj = new WeakMap<Series, SeriesState>();
  private readonly dirty: SeriesState[] = [];
  /** Series removed since the last checkpoint: their head records must go. */
  private readonly removed = new Map<string, Uint8Array>();
  private readonly wal = new WalWriter();

  /** Last applied entry (visible to reads; durable once its group commits). */
  private applied = 0;
  /** Last applied entry whose group is committed and flushed (deferred mode: and fsync'd). */
  private durableIndex = 0;
  /** Last applied entry whose group is committed (equals durableIndex unless sync is deferred). */
  private committedIndex = 0;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | null = null;
  /** The sync queued behind the running one, if any. */
  private syncNext: Promise<void> | null = null;
  private syncsStopped = false;
  /** Pipelined sync: the fsync of the last commit while it runs (the next group commits after it). */
  private pipeSync: Promise<void> | null = null;
  /** Pipelined sync: the applied index of the last commit (the newer meta page once synced). */
  private lastCommit = 0;
  private group: WriteGroup | null = null;
  /** externalLog: user meta set since the last checkpoint (persisted by the next checkpoint). */
  private readonly pendingMeta = new Map<string, Buffer>();
  /** Unindexed operations (retention) applied after `applied`; part of the wal key. */
  private walSeq = 0;
  private ckptIndex = 0;
  private ckptSeq = 0;
  private cutoff = MIN_TIMESTAMP_MS;
  private walRecordsSince = 0;
  private walBytesSince = 0;
  private epoch = 0;
  private failed: Error | null = null;
  private isClosed = false;

  // Batch scratch (reused): accepted samples and the deferred merges into sealed chunks.
  private accTs = new Float64Array(1024);
  private accVals = new Float64Array(1024);
  private accRefs = new Uint32Array(1024);
  /** Samples per series ref of the batch being applied (scratch). */
  private perRef = new Uint32Array(64);
  /** Head buffers of this store's series (head-pool.ts). */
  private readonly headPool = new HeadPool();
  private mergeSt: SeriesState[] = [];
  private mergeT: number[] = [];
  private mergeV: number[] = [];
  private readonly chunks: ChunkTable;
  private readonly index: PostingsIndex;
  /** Every sub-database (page counts for the free-space estimate at close). */
  private readonly dbs: Database<Buffer, Buffer>[];

  private constructor(
    private readonly dir: string,
    private readonly opts: StoreOptions,
    private readonly env: RootDatabase,
    private readonly metaDb: Database<Buffer, Buffer>,
    seriesDb: Database<Buffer, Buffer>,
    postingsDb: Database<Buffer, Buffer>,
    chunksDb: Database<Buffer, Buffer>,
    private readonly walDb: Database<Buffer, Buffer>,
    private readonly headDb: Database<Buffer, Buffer>,
    private readonly syncIntervalMs: number,
    private readonly pipelined: boolean,
    private readonly externalLog: boolean,
  ) {
    this.dbs = [metaDb, seriesDb, postingsDb, chunksDb, walDb, headDb];
    this.chunks = new ChunkTable(chunksDb, opts.sealSamples);
    this.index = new PostingsIndex(seriesDb, postingsDb);
    this.capabilities = { persistent: true, syncDeferred: syncIntervalMs > 0 || pipelined };
    if (syncIntervalMs > 0) {
      this.syncTimer = setInterval(() => {
        if (this.committedIndex > this.durableIndex) void this.syncNow().catch(() => {});
      }, syncIntervalMs);
      this.syncTimer.unref();
    }
  }

  /** Deferred mode: fsyncs the environment (off the JS thread); then what was committed is durable. */
  private syncNow(): Promise<void> {
    // Once close() has made its last sync, nothing may reach the environment (it is about to be closed).
    if (this.syncsStopped) return this.syncing ?? Promise.resolve();
    if (this.syncing !== null) {
      // A sync already running may have started before the latest commit: one more follows it (shared by
      // every caller meanwhile), tracked so that close() waits for it too.
      this.syncNext ??= this.syncing.then(() => {
        this.syncNext = null;
        return this.syncNow();
      });
      return this.syncNext;
    }
    const upTo = this.committedIndex;
    const run = envSync(this.env).then(() => {
      if (upTo > this.durableIndex) this.durableIndex = upTo;
    });
    this.syncing = run.finally(() => {
      this.syncing = null;
    });
    return this.syncing;
  }

  /** Opens (creating if needed) the store in `dir` and recovers it. */
  static async open(dir: string, options?: Partial<LmdbStoreOptions>): Promise<LmdbShardStore> {
    const { syncIntervalMs = 0, pipelinedSync = false, externalLog = false, ...storeOptions } = options ?? {};
    const opts = resolveStoreOptions(storeOptions);
    if (typeof externalLog !== 'boolean') {
      throw invalidArgument('option_invalid', 'options.externalLog', 'options.externalLog must be a boolean');
    }
    if (!Number.isInteger(syncIntervalMs) || syncIntervalMs < 0 || syncIntervalMs > 3_600_000) {
      throw invalidArgument(
        'option_invalid',
        'options.syncIntervalMs',
        `options.syncIntervalMs must be an integer in [0, 3600000], got ${String(syncIntervalMs)}`,
      );
    }
    if (typeof dir !== 'string' || dir.length === 0) {
      throw new TidemarkError('INVALID_ARGUMENT', 'dir_invalid', 'store directory must be a non-empty path', {
        field: 'dir',
      });
    }
    mkdirSync(dir, { recursive: true });
    removeShrinkLeftover(dir);
    const deferred = syncIntervalMs > 0;
    const pipelined = pipelinedSync === true && !deferred;
    const marker = join(dir, UNSYNCED_MARKER);
    let previousSnapshot = false;
    if (existsSync(marker)) {
      const [was, tag] = readFileSync(marker, 'utf8').trim().split('\n');
      // A pipelined store had at most one unsynced commit: its older meta page is a synced snapshot.
      if (was !== bootId() && pipelined && tag === PIPELINED_TAG) previousSnapshot = true;
      else if (was !== bootId()) {
        throw new TidemarkError(
          'FAILED_PRECONDITION',
          'store_unsynced_os_restart',
          `shard store in ${dir} had unsynced commits when the machine restarted; its file may be torn. ` +
            'A shard replica sets it aside and rebuilds it from its Raft log or a peer',
          { dir },
        );
      }
    }
    // Durability: with syncIntervalMs = 0 noSync stays off: writes use synchronous transactions, whose
    // commit is LMDB's durable commit (fsync before the meta page), and every write also awaits
    // env.flushed. Deferred mode writes the marker (fsync'd) before the first unsynced commit.
    if (deferred) writeDurably(marker, `${bootId()}\n`);
    if (pipelined) writeDurably(marker, `${bootId()}\n${PIPELINED_TAG}\n`);
    const env = open({
      path: dir,
      compression: false,
      maxDbs: 8,
      noSync: deferred || pipelined,
      // After an OS restart: the older of the two meta pages, the last snapshot known to be synced.
      ...(previousSnapshot ? { usePreviousSnapshot: true } : {}),
    });
    const db = (name: string) =>
      env.openDB<Buffer, Buffer>({ name, keyEncoding: 'binary', encoding: 'binary', compression: false });
    const store = new LmdbShardStore(
      dir,
      opts,
      env,
      db('meta'),
      db('series'),
      db('postings'),
      db('chunks'),
      db('wal'),
      db('head'),
      syncIntervalMs,
      pipelined,
      externalLog,
    );
    try {
      await store.recover();
    } catch (err) {
      await env.close();
      throw err;
    }
    return store;
  }

  // ---------------------------------------------------------------- lifecycle & recovery

  private async recover(): Promise<void> {
    // Pipelined sync: what a crashed process left in the page cache is synced before any commit, and so
    // is every commit of the recovery, so that no two unsynced commits ever exist.
    if (this.pipelined) await envSync(this.env);
    const fmt = this.metaDb.get(META_FORMAT);
    if (fmt === undefined) {
      this.env.transactionSync(() => this.metaDb.putSync(META_FORMAT, u32(STORE_FORMAT_VERSION)));
      if (this.pipelined) await envSync(this.env);
    } else if (fmt.length !== 4 || fmt.readUInt32BE(0) !== STORE_FORMAT_VERSION) {
      const v = fmt.length === 4 ? fmt.readUInt32BE(0) : -1;
      throw new TidemarkError(
        'FAILED_PRECONDITION',
        'store_format_unsupported',
        `shard store in ${this.dir} has format version ${v}; this build reads version ${STORE_FORMAT_VERSION}`,
        { version: v, supported: STORE_FORMAT_VERSION },
      );
    }
    const applied = this.metaDb.get(META_APPLIED);
    this.applied = applied === undefined ? 0 : readU64(applied, 0);
    const ckpt = this.metaDb.get(META_CHECKPOINT);
    if (ckpt !== undefined) {
      if (ckpt.length !== 20)
        throw dataCorruption('checkpoint_invalid', 'checkpoint record has the wrong length');
      this.ckptIndex = readU64(ckpt, 0);
      this.ckptSeq = ckpt.readUInt32BE(8);
      this.cutoff = ckpt.readDoubleBE(12);
    }
    // 1. The checkpointed head.
    for (const { key, value } of this.headDb.getRange({}) as Iterable<Loaded>)
      this.loadHeadRecord(key, value);
    // 2. Redo the write-ahead records after the checkpoint, in one transaction.
    const records: Loaded[] = [
      ...(this.walDb.getRange({ start: walKey(this.ckptIndex, this.ckptSeq + 1) }) as Iterable<Loaded>),
    ];
    let index = this.ckptIndex;
    let seq = this.ckptSeq;
    if (records.length > 0) {
      this.env.transactionSync(() => {
        for (const { key, value } of records) {
          ({ index, seq } = parseWalKey(key));
          this.redo(decodeWalRecord(value));
        }
      });
      if (this.pipelined) await envSync(this.env);
    }
    if (index > this.applied) {
      throw dataCorruption(
        'wal_ahead_of_index',
        `write-ahead record ${index} is past the applied index ${this.applied}`,
      );
    }
    this.walSeq = index === this.applied ? seq : 0;
    if (records.length > 0) {
      this.checkpointSync();
      await this.synced();
    }
    // External log: chunks and series may hold effects of entries after the checkpoint; the caller
    // re-applies those entries (idempotent per sample, docs/format/store.md "External log").
    if (this.externalLog) this.applied = this.ckptIndex;
    // Deferred mode: what recovery found came through the page cache, not necessarily the disk; it is
    // counted durable after the first sync (the log keeps those entries until then).
    this.committedIndex = this.mark();
    if (this.pipelined) {
      this.lastCommit = this.mark();
      await this.settle();
    } else if (this.syncIntervalMs === 0) this.durableIndex = this.mark();
    else await this.syncNow();
  }

  private loadHeadRecord(key: Buffer, value: Buffer): void {
    if (key.length !== SERIES_ID_BYTES) throw dataCorruption('head_record_invalid', 'head record key length');
    const keyLen = headKeyLength(value);
    const ckey = new Uint8Array(value.subarray(21, 21 + keyLen));
    const segments = headSegments(value, keyLen);
    const id = new Uint8Array(key);
    const st = new SeriesState(id, seriesIdHex(id), ckey, parseCanonicalKey(ckey), this.headPool);
    st.maxT = value.readDoubleBE(1);
    st.sealedMaxT = value.readDoubleBE(9);
    st.alive = true;
    if (segments.length === 1) {
      const d = decodeChunk(segments[0]!);
      st.head.load(d.ts, d.vals, d.count);
    } else if (segments.length > 1) {
      // Segments are consecutive runs of the sorted head: concatenated, they are the head.
      const parts = segments.map((c) => decodeChunk(c));
      let n = 0;
      for (const d of parts) n += d.count;
      const ts = new Float64Array(n);
      const vals = new Float64Array(n);
      let at = 0;
      for (const d of parts) {
        ts.set(d.ts.subarray(0, d.count), at);
        vals.set(d.vals.subarray(0, d.count), at);
        at += d.count;
      }
      for (let i = 1; i < n; i++) {
        if (!(ts[i]! > ts[i - 1]!)) throw dataCorruption('head_record_invalid', 'head segments out of order');
      }
      st.head.load(ts, vals, n);
    }
    st.head.persisted = st.head.count;
    this.byHex.set(st.hex, st);
  }

  /**
   * The series' head record. When the stored record (`old`) holds the head's first `persisted` samples exactly,
   * only the samples after them are encoded, as one more segment; otherwise the head is encoded whole.
   */
  private headRecord(st: SeriesState, old: Buffer | undefined): Buffer {
    const h = st.head;
    let segments: Uint8Array[] = [];
    const p = h.persisted;
    if (p > 0 && p <= h.count && old !== undefined) {
      const prev = headSegments(old, headKeyLength(old));
      if (prev.length < MAX_HEAD_SEGMENTS) {
        segments = prev;
        if (h.count > p)
          segments.push(encodeChunk(h.ts.subarray(p), h.vals.subarray(p), h.count - p, HEAD_ENCODING));
      }
    }
    if (segments.length === 0 && h.count > 0) segments = [encodeChunk(h.ts, h.vals, h.count, HEAD_ENCODING)];
    h.persisted = h.count;
    let size = 22 + st.key.length;
    for (const c of segments) size += 4 + c.length;
    const b = Buffer.allocUnsafe(size);
    b[0] = HEAD_RECORD_VERSION;
    b.writeDoubleBE(st.maxT, 1);
    b.writeDoubleBE(st.sealedMaxT, 9);
    b.writeUInt32BE(st.key.length, 17);
    b.set(st.key, 21);
    let at = 21 + st.key.length;
    b[at++] = segments.length;
    for (const c of segments) {
      b.writeUInt32BE(c.length, at);
      b.set(c, at + 4);
      at += 4 + c.length;
    }
    return b;
  }

  private redo(rec: ReturnType<typeof decodeWalRecord>): void {
    if (rec.type === WAL_BATCH) this.redoBatch(rec);
    else if (rec.type === WAL_DELETE) {
      for (let i = 0; i < rec.ids.length; i++) {
        const st = this.byHex.get(seriesIdHex(rec.ids[i]!));
        if (st === undefined)
          throw dataCorruption('wal_unknown_series', 'delete record names an unknown series');
        this.deleteRange(st, rec.minT, rec.maxT);
        if (rec.removed[i]) this.removeSeries(st);
      }
    } else {
      this.retain(rec.cutoff);
      for (const id of rec.removed) {
        const st = this.byHex.get(seriesIdHex(id));
        if (st !== undefined) this.removeSeries(st);
      }
    }
  }

  private redoBatch(rec: WalBatch): void {
    const states: (SeriesState | null)[] = rec.series.map((e) => this.redoSeries(e));
    for (let i = 0; i < rec.count; i++) this.insertSample(states[rec.refs[i]!]!, rec.ts[i]!, rec.vals[i]!);
    this.flushMerges();
  }

  private redoSeries(e: WalSeriesEntry): SeriesState | null {
    if (e.flag === SERIES_UNUSED) return null;
    const hex = seriesIdHex(e.id!);
    const st = this.byHex.get(hex);
    if (st !== undefined) return st;
    if (e.flag !== SERIES_NEW)
      throw dataCorruption('wal_unknown_series', 'batch record names an unknown series');
    const created = new SeriesState(e.id!, hex, e.key!, parseCanonicalKey(e.key!), this.headPool);
    this.register(created);
    return created;
  }

  private check(): void {
    if (this.isClosed) throw closed('shard store');
    if (this.failed !== null) throw this.failed;
  }

  /**
   * Runs fn inside the current write group, opening one if needed. A group is one LMDB write
   * transaction (transactionSync with a pending promise) that stays open until the end of the current
   * event-loop turn (setImmediate), so every operation issued in the same turn shares one commit and
   * one flush (group commit). Reads on this thread use the open transaction, so they always agree with
   * the in-memory head. If fn throws, the store is poisoned (memory may be ahead of the database) and
   * the whole group is aborted: the database stays at the previous commit, and reopening recovers.
   */
  private txn(fn: () => void): void {
    if (this.failed !== null) throw this.failed;
    if (this.group === null) this.openGroup();
    try {
      fn();
    } catch (err) {
      this.failed = isTidemarkError(err)
        ? err
        : new TidemarkError(
            'INTERNAL',
            'store_failed',
            `shard store failed; reopen to recover: ${String(err)}`,
            {},
            err,
          );
      this.group!.aborted = true;
      throw this.failed;
    }
  }

  private openGroup(): void {
    let end!: (v: unknown) => void;
    const pending = new Promise<unknown>((resolve) => {
      end = resolve;
    });
    const g: WriteGroup = { aborted: false, lastIndex: 0, done: Promise.resolve() };
    // Registered before lmdb-js's own continuation (which commits), so no operation can join the group
    // between "closed" and "committed".
    void pending.then(() => {
      if (this.group === g) this.group = null;
      g.lastIndex = this.mark();
    });
    const committed = this.env.transactionSync(() => pending) as unknown as Promise<unknown>;
    g.done = Promise.resolve(committed).then(async () => {
      if (g.aborted) throw this.failed;
      if (g.lastIndex > this.committedIndex) this.committedIndex = g.lastIndex;
      if (this.pipelined) return this.syncCommit(g.lastIndex);
      if (this.syncIntervalMs > 0) return;
      await this.env.flushed;
      if (g.lastIndex > this.durableIndex) this.durableIndex = g.lastIndex;
    });
    g.done.catch(() => {});
    this.group = g;
    setImmediate(() => {
      const close = () => end(g.aborted ? ABORT : true);
      // Pipelined sync: commit only once the previous commit is synced (operations keep joining meanwhile).
      if (this.pipeSync !== null) this.pipeSync.then(close, close);
      else close();
    });
  }

  /**
   * Pipelined sync, after each commit: fsync off the event loop. Once it is done the two meta pages are this
   * commit and the previous one, both synced; an OS restart opens the older, so that is the durable index.
   */
  private syncCommit(index: number): void {
    const older = this.lastCommit;
    this.lastCommit = index;
    const run = envSync(this.env).then(
      () => {
        if (older > this.durableIndex) this.durableIndex = older;
        // Idle now (no group waiting for this sync): one more, no-op, commit makes the older meta page
        // this commit, so the durable index catches up instead of lagging until the next write.
        if (this.group === null && !this.isClosed && this.failed === null && this.durableIndex < index) {
          this.txn(() => this.metaDb.putSync(META_FORMAT, u32(STORE_FORMAT_VERSION)));
        }
      },
      (err: unknown) => {
        this.failed ??= new TidemarkError(
          'INTERNAL',
          'store_failed',
          `shard store sync failed; reopen to recover: ${String(err)}`,
          {},
          err,
        );
      },
    );
    const tracked: Promise<void> = run.finally(() => {
      if (this.pipeSync === tracked) this.pipeSync = null;
    });
    this.pipeSync = tracked;
  }

  /**
   * Resolves when everything written so far is committed and flushed; in deferred mode, committed
   * (in the page cache, which survives a process crash) — fsync comes with the next sync.
   */
  private async durable(): Promise<void> {
    if (this.group !== null) await this.group.done;
    else if (this.syncIntervalMs === 0 && !this.pipelined) await this.env.flushed;
  }

  /** Resolves when everything written so far is on disk (fsync'd), in any mode. */
  private async synced(): Promise<void> {
    await this.durable();
    if (this.pipelined) await this.pipeSync;
    else if (this.syncIntervalMs > 0) await this.syncNow();
  }

  /**
   * The last entry applied, visible to reads (appliedIndex() is what is durable). Entries the caller never
   * hands to the store (Raft no-ops, conf changes) do not count: it can trail the caller's applied index.
   */
  lastApplied(): number {
    this.check();
    return this.applied;
  }

  /**
   * What a commit makes recoverable without the caller's log: the applied index, or with an external log the
   * checkpoint index (entries after it are re-applied from the log after a crash).
   */
  private mark(): number {
    return this.externalLog ? this.ckptIndex : this.applied;
  }

  /**
   * The last entry whose effects are durable (entries still in an open write group are not counted); with
   * an external log, the last durable checkpoint.
   */
  appliedIndex(): number {
    this.check();
    return this.durableIndex;
  }

  // ---------------------------------------------------------------- write path

  async applyBatch(
    index: number,
    batch: SampleBatch,
    meta?: Record<string, Uint8Array>,
  ): Promise<ApplyResult> {
    this.check();
    checkIndex(index);
    checkBatch(batch);
    checkMeta(meta);
    if (index <= this.applied) return { accepted: 0, rejected: [], duplicate: true };
    const result = this.applyBatchSync(index, batch, meta);
    this.maybeCheckpoint();
    // External log: the entry is durable in the log already, and reads see the open write group; waiting
    // for its commit (and, pipelined, for the previous fsync) would only delay the acknowledgement.
    if (!this.externalLog) await this.durable();
    return result;
  }

  async append(batch: SampleBatch, meta?: Record<string, Uint8Array>): Promise<ApplyResult> {
    this.check();
    return this.applyBatch(this.applied + 1, batch, meta);
  }

  /** Resolves batch.series[j] to a state (not yet registered when new), or null when invalid. */
  private resolveSeries(s: Series, pending: Map<string, SeriesState>): SeriesState | null {
    const cached = this.byObj.get(s);
    if (cached?.alive) return cached;
    // An interned series (src/model/intern.ts) was validated once and carries its key and id.
    const key = internedKey(s) ?? canonicalKeyOrNull(s);
    if (key === null) return null;
    const id = internedId(s) ?? seriesIdOfKey(key);
    const hex = seriesIdHex(id);
    const existing = this.byHex.get(hex);
    if (existing !== undefined) {
      this.byObj.set(s, existing);
      return existing;
    }
    let st = pending.get(hex);
    if (st === undefined) {
      st = new SeriesState(id, hex, key, { metric: s.metric, tags: { ...s.tags } }, this.headPool);
      pending.set(hex, st);
    }
    return st;
  }

  private applyBatchSync(index: number, batch: SampleBatch, meta?: Record<string, Uint8Array>): ApplyResult {
    const epoch = ++this.epoch;
    const nSeries = batch.series.length;
    const pending = new Map<string, SeriesState>();
    const states: (SeriesState | null)[] = new Array(nSeries);
    for (let j = 0; j < nSeries; j++) states[j] = this.resolveSeries(batch.series[j]!, pending);
    const n = batch.length;
    const limit = Math.min(n, batch.seriesRef.length, batch.timestamps.length, batch.values.length);
    if (this.accTs.length < limit) {
      this.accTs = new Float64Array(limit);
      this.accVals = new Float64Array(limit);
      this.accRefs = new Uint32Array(limit);
    }
    const { accTs, accVals, accRefs } = this;
    const refs = batch.seriesRef;
    // Heads grow once per batch to what the batch brings (bounded by the seal size), not by doubling.
    if (this.perRef.length < nSeries)
      this.perRef = new Uint32Array(Math.max(nSeries, 2 * this.perRef.length));
    const perRef = this.perRef;
    perRef.fill(0, 0, nSeries);
    for (let i = 0; i < limit; i++) {
      const r = refs[i]!;
      if (r < nSeries) perRef[r]!++;
    }
    for (let j = 0; j < nSeries; j++) {
      const st = states[j];
      if (st != null && perRef[j]! > 1)
        st.head.reserve(Math.min(st.head.count + perRef[j]!, this.opts.sealSamples));
    }
    const tss = batch.timestamps;
    const vals = batch.values;
    const ooo = this.opts.oooWindowMs;
    const cutoff = this.cutoff;
    const rejected: RejectedSample[] = [];
    const reject = (i: number, reason: RejectReason) => rejected.push({ index: i, reason });
    let k = 0;
    let minT = Number.POSITIVE_INFINITY;
    let maxT = Number.NEGATIVE_INFINITY;
    let walSeries: SeriesState[] = [];
    this.txn(() => {
      walSeries = [];
      for (let i = 0; i < limit; i++) {
        const ref = refs[i]!;
        const st = ref < nSeries ? states[ref]! : null;
        if (st === null) {
          reject(i, 'invalid_series');
          continue;
        }
        const t = tss[i]!;
        if (!(t >= MIN_TIMESTAMP_MS && t <= MAX_TIMESTAMP_MS && Number.isInteger(t))) {
          reject(i, 'invalid_timestamp');
          continue;
        }
        if (t < cutoff) {
          reject(i, 'out_of_retention');
          continue;
        }
        if (t < st.maxT - ooo) {
          reject(i, 'too_old');
          continue;
        }
        if (st.epoch !== epoch) {
          st.epoch = epoch;
          st.slot = walSeries.length;
          st.isNew = !st.alive;
          walSeries.push(st);
          if (!st.alive) this.register(st);
        }
        const v = vals[i]!;
        this.insertSample(st, t, v);
        accTs[k] = t;
        accVals[k] = v;
        accRefs[k] = st.slot;
        k++;
        if (t < minT) minT = t;
        if (t > maxT) maxT = t;
      }
      for (let i = limit; i < n; i++) reject(i, 'invalid_sample');
      this.flushMerges();
      if (this.externalLog) {
        // What the record would have held: the checkpoint interval bounds the log replay after a crash.
        this.walBytesSince += 24 + 16 * k + 8 * walSeries.length;
      } else {
        const entries: WalSeriesEntry[] = walSeries.map((st) =>
          st.isNew
            ? { flag: SERIES_NEW, id: st.id, key: st.key }
            : { flag: SERIES_EXISTING, id: st.id, key: null },
        );
        const rec = this.wal.batch(entries, k, accTs, accVals, accRefs, minT, maxT);
        this.walDb.putSync(walKey(index, 0), rec);
        this.walBytesSince += rec.length;
      }
      this.walRecordsSince++;
      this.setApplied(index, meta);
    });
    return { accepted: k, rejected, duplicate: false };
  }

  private setApplied(index: number, meta?: Record<string, Uint8Array>): void {
    if (this.externalLog) {
      // Persisted with the next checkpoint, so that a reopened store's meta matches its checkpoint (a Kafka
      // offset from after it would make the re-applied entries look like replays).
      if (meta !== undefined)
        for (const [key, v] of Object.entries(meta)) this.pendingMeta.set(key, Buffer.from(v));
    } else {
      this.metaDb.putSync(META_APPLIED, u64(index));
      if (meta !== undefined)
        for (const [key, v] of Object.entries(meta)) this.metaDb.putSync(userMetaKey(key), Buffer.from(v));
    }
    this.applied = index;
    this.walSeq = 0;
  }

  private markDirty(st: SeriesState): void {
    if (!st.dirty) {
      st.dirty = true;
      this.dirty.push(st);
    }
  }

  /** Adds a series to the index (series + postings) and to memory. Idempotent on disk. */
  private register(st: SeriesState): void {
    st.alive = true;
    this.byHex.set(st.hex, st);
    this.byObj.set(st.series, st);
    this.markDirty(st);
    this.index.add(st.id, st.key, st.series);
  }

  /** Drops a series entirely: chunks, index entries, memory. */
  private removeSeries(st: SeriesState): void {
    this.chunks.dropAll(st.id);
    this.index.remove(st.id, st.series);
    st.alive = false;
    st.head.release();
    this.byHex.delete(st.hex);
    this.removed.set(st.hex, st.id);
  }

  /** Stores one accepted sample (the decision to accept was made already). */
  private insertSample(st: SeriesState, t: number, v: number): void {
    if (t > st.maxT) st.maxT = t;
    if (!st.dirty) this.markDirty(st);
    if (t > st.sealedMaxT) {
      const h = st.head;
      if (h.count > 0 && t > h.ts[h.count - 1]! && t - h.ts[0]! >= this.opts.sealSpanMs) this.seal(st);
      h.insert(t, v);
      if (h.count >= this.opts.sealSamples) this.seal(st);
    } else {
      // Older than the head: merged into the sealed chunks at the end of the operation.
      this.mergeSt.push(st);
      this.mergeT.push(t);
      this.mergeV.push(v);
    }
  }

  private seal(st: SeriesState): void {
    const h = st.head;
    if (h.count === 0) return;
    this.chunks.seal(st.id, h.ts, h.vals, h.count);
    st.sealedMaxT = h.ts[h.count - 1]!;
    h.clear();
  }

  /** Applies the deferred merges into sealed chunks: per series, in timestamp order, later writes win. */
  private flushMerges(): void {
    const m = this.mergeSt.length;
    if (m === 0) return;
    const order = Array.from({ length: m }, (_, i) => i);
    const sts = this.mergeSt;
    const ts = this.mergeT;
    order.sort((a, b) => {
      const sa = sts[a]!.hex;
      const sb = sts[b]!.hex;
      if (sa !== sb) return sa < sb ? -1 : 1;
      return ts[a]! - ts[b]! || a - b;
    });
    let i = 0;
    while (i < m) {
      const st = sts[order[i]!]!;
      const mt: number[] = [];
      const mv: number[] = [];
      for (; i < m && sts[order[i]!] === st; i++) {
        const t = ts[order[i]!]!;
        const v = this.mergeV[order[i]!]!;
        if (mt.length > 0 && mt[mt.length - 1] === t) mv[mv.length - 1] = v;
        else {
          mt.push(t);
          mv.push(v);
        }
      }
      this.chunks.merge(st.id, mt, mv);
    }
    this.mergeSt = [];
    this.mergeT = [];
    this.mergeV = [];
  }

  // ---------------------------------------------------------------- delete & retention

  async applyDelete(
    index: number,
    request: DeleteRequest,
    meta?: Record<string, Uint8Array>,
  ): Promise<DeleteResult> {
    this.check();
    checkIndex(index);
    checkMeta(meta);
    const result: DeleteResult = { seriesAffected: 0, samplesDeleted: 0, seriesRemoved: 0, duplicate: false };
    if (index <= this.applied) return { ...result, duplicate: true };
    let sel: CompiledSelect | null = null;
    try {
      sel = compileSelect(request);
    } catch (err) {
      const e = err as TidemarkError;
      result.error = { reason: e.reason, field: e.field ?? '', message: e.message };
    }
    const targets = sel === null ? [] : this.matching(sel);
    this.txn(() => {
      if (sel !== null) {
        const removed: boolean[] = [];
        for (const st of targets) {
          const n = this.deleteRange(st, sel.minT, sel.maxT);
          if (n > 0) {
            result.seriesAffected++;
            result.samplesDeleted += n;
          }
          const gone = !this.live(st);
          removed.push(gone);
          if (gone) {
            result.seriesRemoved++;
            this.removeSeries(st);
          }
        }
        if (!this.externalLog) {
          const rec = this.wal.delete(
            sel.minT,
            sel.maxT,
            targets.map((st) => st.id),
            removed,
          );
          this.walDb.putSync(walKey(index, 0), rec);
          this.walBytesSince += rec.length;
          this.walRecordsSince++;
        }
      }
      this.setApplied(index, meta);
    });
    // External log: which series a delete removes depends on chunks that a crash does not roll back, so a
    // re-applied delete could decide differently: checkpoint now (same write group), deletes are rare.
    if (this.externalLog) this.checkpointSync();
    else this.maybeCheckpoint();
    await this.durable();
    return result;
  }

  async deleteSeries(request: DeleteRequest): Promise<DeleteResult> {
    this.check();
    compileSelect(request);
    return this.applyDelete(this.applied + 1, request);
  }

  /** Whether the series still has a sample at or above the retention cutoff. */
  private live(st: SeriesState): boolean {
    return st.head.count > 0 || this.chunks.maxT(st.id) >= this.cutoff;
  }

  /** Removes samples with lo <= t <= hi (head and chunks); returns how many live (>= cutoff) were removed. */
  private deleteRange(st: SeriesState, lo: number, hi: number): number {
    if (!st.dirty) this.markDirty(st);
    return st.head.removeRange(lo, hi) + this.chunks.deleteRange(st.id, lo, hi, this.cutoff);
  }

  async applyRetention(nowMs: number, retentionMs = this.opts.retentionMs): Promise<RetentionResult> {
    this.check();
    checkNow(nowMs);
    const result: RetentionResult = { cutoff: this.cutoff, chunksDropped: 0, seriesRemoved: 0 };
    if (!Number.isSafeInteger(retentionMs) || retentionMs < 0)
      throw invalidArgument('retention_invalid', 'retentionMs', 'retentionMs must be a non-negative integer');
    if (retentionMs === 0) return result;
    const cutoff = Math.min(nowMs - retentionMs, MAX_TIMESTAMP_MS + 1);
    if (cutoff <= this.cutoff) return result;
    this.txn(() => {
      result.chunksDropped = this.retain(cutoff);
      const removed: Uint8Array[] = [];
      for (const st of [...this.byHex.values()]) {
        if (!this.live(st)) {
          removed.push(st.id);
          this.removeSeries(st);
        }
      }
      result.seriesRemoved = removed.length;
      result.cutoff = cutoff;
      if (!this.externalLog) {
        const rec = this.wal.retention(cutoff, removed);
        this.walDb.putSync(walKey(this.applied, ++this.walSeq), rec);
        this.walBytesSince += rec.length;
        this.walRecordsSince++;
      }
    });
    // External log: retention is no log entry, so it is made durable by a checkpoint (same write group).
    if (this.externalLog) this.checkpointSync();
    else this.maybeCheckpoint();
    await this.durable();
    return result;
  }

  /** Raises the cutoff, trims heads and drops chunks wholly below it; returns chunks dropped. */
  private retain(cutoff: number): number {
    this.cutoff = cutoff;
    let dropped = 0;
    for (const st of this.byHex.values()) {
      if (st.head.count > 0 && st.head.ts[0]! < cutoff) {
        st.head.removeRange(Number.NEGATIVE_INFINITY, cutoff - 1);
        this.markDirty(st);
      }
      dropped += this.chunks.dropExpired(st.id, cutoff);
    }
    return dropped;
  }

  // ---------------------------------------------------------------- checkpoint

  private maybeCheckpoint(): void {
    if (
      this.walRecordsSince >= this.opts.checkpointRecords ||
      this.walBytesSince >= this.opts.checkpointBytes
    ) {
      this.checkpointSync();
    }
  }

  /** Persists the changed heads and the checkpoint position, and truncates the write-ahead records. */
  private checkpointSync(): void {
    this.txn(() => {
      for (const id of this.removed.values()) this.headDb.removeSync(idKey(id));
      for (const st of this.dirty) {
        st.dirty = false;
        if (!st.alive) continue;
        const key = idKey(st.id);
        // The stored record is read back (through the open write transaction) only to append to it.
        const old = st.head.persisted > 0 ? this.headDb.get(key) : undefined;
        this.headDb.putSync(key, this.headRecord(st, old));
      }
      const c = Buffer.allocUnsafe(20);
      writeU64(c, 0, this.applied);
      c.writeUInt32BE(this.walSeq, 8);
      c.writeDoubleBE(this.cutoff, 12);
      this.metaDb.putSync(META_CHECKPOINT, c);
      if (this.externalLog) {
        this.metaDb.putSync(META_APPLIED, u64(this.applied));
        for (const [key, v] of this.pendingMeta) this.metaDb.putSync(userMetaKey(key), v);
      }
      for (const key of [
        ...(this.walDb.getKeys({ end: walKey(this.applied, this.walSeq + 1) }) as Iterable<Buffer>),
      ]) {
        this.walDb.removeSync(key);
      }
    });
    this.removed.clear();
    this.pendingMeta.clear();
    this.dirty.length = 0;
    this.ckptIndex = this.applied;
    this.ckptSeq = this.walSeq;
    this.walRecordsSince = 0;
    this.walBytesSince = 0;
  }

  async checkpoint(): Promise<void> {
    this.check();
    this.checkpointSync();
    await this.synced();
    if (this.pipelined) await this.settle();
  }

  /**
   * Pipelined sync: one more (no-op) synced commit after everything so far is synced: then both meta pages
   * hold the current applied index, and so does the older one (what an OS restart opens).
   */
  private async settle(): Promise<void> {
    await this.synced();
    const at = this.mark();
    this.txn(() => this.metaDb.putSync(META_FORMAT, u32(STORE_FORMAT_VERSION)));
    await this.synced();
    if (at > this.durableIndex) this.durableIndex = at;
  }

  /**
   * Writes a consistent, compacted copy of the environment (LMDB's mdb_env_copy2 with MDB_CP_COMPACT, run
   * on a worker thread under one read transaction: writers are not blocked) as `data.mdb` in `dir`, which
   * must exist and hold no data.mdb. The copy reflects one committed write group: opening it as a store
   * recovers the state as of the applied index it records. Used for Raft snapshots (src/storage/snapshot.ts).
   */
  async backup(dir: string): Promise<void> {
    this.check();
    // External log: a checkpoint first, so the image opens at every apply made before the call (not at an
    // older checkpoint whose later entries only this replica's log holds).
    if (this.externalLog) this.checkpointSync();
    // The copy holds committed transactions only: commit what was applied so far first (with pipelined sync
    // the open group waits for the previous fsync), so the image covers every apply made before the call.
    await this.durable();
    await this.env.backup(dir, true);
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    let shrink: boolean | undefined; // whether a compacted copy replaces the file (undefined: none taken)
    try {
      if (this.group !== null) await this.group.done.catch(() => {});
      if (this.failed === null) {
        this.checkpointSync();
        await this.synced();
      }
    } finally {
      if (this.syncTimer) clearInterval(this.syncTimer);
      this.syncsStopped = true;
      while (this.syncing !== null || this.syncNext !== null) {
        await (this.syncNext ?? this.syncing)?.catch(() => {});
      }
      while (this.pipeSync !== null) await this.pipeSync;
      if (this.failed === null) shrink = await this.shrinkCopy();
      await this.env.close();
    }
    if (shrink !== undefined) finishShrink(this.dir, shrink);
    // Clean close: everything is fsync'd (a failed store keeps the marker: it was not synced).
    if ((this.syncIntervalMs > 0 || this.pipelined) && this.failed === null)
      rmSync(join(this.dir, UNSYNCED_MARKER), { force: true });
  }

  /**
   * On a clean close, after the last sync: a compacted copy of the file when it has free pages worth a copy
   * (SHRINK_*: head checkpoints and seals rewrite pages; LMDB reuses them but never returns them), so a
   * stopped store's file holds its data once. Best effort: any failure keeps the file as it is.
   */
  private async shrinkCopy(): Promise<boolean | undefined> {
    try {
      const size = fileBytes(this.dir);
      const free = freeBytesEstimate(this.env, this.dbs);
      const live = size - free;
      if (free < SHRINK_MIN_FREE_BYTES || live > SHRINK_MAX_COPY_BYTES) return undefined;
      if (live > SHRINK_CHEAP_COPY_BYTES && free * 4 < size) return undefined;
      return (await compactCopy(this.env, this.dir)) + SHRINK_MIN_FREE_BYTES / 2 <= size;
    } catch {
      return false;
    }
  }

  // ---------------------------------------------------------------- reads

  getMeta(key: string): Uint8Array | undefined {
    this.check();
    const v = this.pendingMeta.get(key) ?? this.metaDb.get(userMetaKey(key));
    return v === undefined ? undefined : new Uint8Array(v);
  }

  /** Matching live series, sorted by id: postings candidates, then the metric and every matcher. */
  private matching(sel: CompiledSelect): SeriesState[] {
    const out: SeriesState[] = [];
    // The metric's series are in memory: filter them, unless the metric has so many that a `=` matcher's
    // postings list (on disk) is likely cheaper (MEMORY_SCAN_SERIES).
    const all = this.byHex.ofMetric(sel.metric);
    if (all.length <= MEMORY_SCAN_SERIES || !sel.matchers.some((m) => m.op === '=' && m.value !== '')) {
      for (const st of all) if (matchesAll(sel.matchers, st.series)) out.push(st);
      return out;
    }
    for (const hex of this.index.candidates(sel)) {
      const st = this.byHex.get(hex);
      if (st !== undefined && st.series.metric === sel.metric && matchesAll(sel.matchers, st.series)) {
        out.push(st);
      }
    }
    return out;
  }

  select(request: SelectRequest): SeriesData[] {
    this.check();
    const sel = compileSelect(request);
    const lo = Math.max(sel.minT, this.cutoff);
    const hi = sel.maxT;
    const out: SeriesData[] = [];
    if (lo > hi) return out;
    for (const st of this.matching(sel)) {
      const { chunks, some } = this.chunks.collect(st.id, lo, hi);
      const head = st.head;
      const a = lowerBound(head.ts, 0, head.count, lo);
      const b = upperBound(head.ts, a, head.count, hi);
      if (!some && b === a) continue;
      out.push(
        new SnapshotSeries(st.id, st.series, chunks, head.ts.slice(a, b), head.vals.slice(a, b), lo, hi),
      );
    }
    return out;
  }

  // ---- selectLast (query read path; kept in its own region)

  selectLast(request: SelectRequest): LastSample[] {
    this.check();
    const sel = compileSelect(request);
    const lo = Math.max(sel.minT, this.cutoff);
    const hi = sel.maxT;
    const out: LastSample[] = [];
    if (lo > hi) return out;
    const cur = { t: 0, v: 0 };
    for (const st of this.matching(sel)) {
      // Head samples are newer than every sealed one (SeriesState.sealedMaxT): the head answers first; only
      // when it holds nothing at or below hi can an older sample be in the chunks.
      const head = st.head;
      const i = upperBound(head.ts, 0, head.count, hi) - 1;
      if (i >= 0 && head.ts[i]! >= lo) {
        out.push({ id: st.id, series: st.series, t: head.ts[i]!, v: head.vals[i]! });
      } else if (i < 0 && this.chunks.lastIn(st.id, lo, hi, cur)) {
        out.push({ id: st.id, series: st.series, t: cur.t, v: cur.v });
      }
    }
    return out;
  }

  // ---- end selectLast

  seriesCount(): number {
    this.check();
    return this.byHex.size;
  }

  metricNames(): string[] {
    this.check();
    return this.index.metricNames();
  }

  labelNames(): string[] {
    this.check();
    return this.index.labelNames();
  }

  labelValues(name: string): string[] {
    this.check();
    if (typeof name !== 'string' || name.length === 0) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'label_name_invalid',
        'label name must be a non-empty string',
        {
          field: 'name',
        },
      );
    }
    return this.index.labelValues(name);
  }

  stats(): StoreStats {
    this.check();
    const scan = this.chunks.scan();
    let headSamples = 0;
    for (const st of this.byHex.values()) headSamples += st.head.count;
    let diskBytes = 0;
    try {
      diskBytes = statSync(join(this.dir, 'data.mdb')).size;
    } catch {
      diskBytes = 0;
    }
    let walRecords = 0;
    for (const _ of this.walDb.getKeys({}) as Iterable<Buffer>) walRecords++;
    return {
      series: this.byHex.size,
      chunks: scan.chunks,
      chunkBytes: scan.bytes,
      chunkSamples: scan.samples,
      headSamples,
      diskBytes,
      walRecords,
      appliedIndex: this.applied,
      checkpointIndex: this.ckptIndex,
      retentionCutoff: this.cutoff,
    };
  }
}

// ---- SeriesMap (query read path; kept in its own region)

/**
 * Up to this many series of the metric, matching() filters them in memory rather than look up a `=`
 * matcher's postings on disk: a lookup (an LMDB cursor, ~3-7 us) costs about as much as checking ~100
 * series in memory.
 */
const MEMORY_SCAN_SERIES = 64;
const NO_SERIES: readonly SeriesState[] = [];

/**
 * The store's live series by hex id, plus each metric's series, so that reads resolve a metric without
 * an LMDB postings scan. Every change of the live set goes through set/delete (register, removeSeries,
 * recovery), which keep the per-metric sets in step; the sorted list per metric is rebuilt on the first
 * read after a change of that metric. Costs one set entry per series.
 */
class SeriesMap extends Map<string, SeriesState> {
  private readonly metrics = new Map<string, Set<SeriesState>>();
  /** Sorted by hex id; dropped when the metric's set changes. */
  private readonly sorted = new Map<string, readonly SeriesState[]>();

  override set(hex: string, st: SeriesState): this {
    const prev = super.get(hex);
    if (prev !== st) {
      if (prev !== undefined) this.unlink(prev);
      const m = st.series.metric;
      let set = this.metrics.get(m);
      if (set === undefined) {
        set = new Set();
        this.metrics.set(m, set);
      }
      set.add(st);
      this.sorted.delete(m);
    }
    return super.set(hex, st);
  }

  override delete(hex: string): boolean {
    const prev = super.get(hex);
    if (prev !== undefined) this.unlink(prev);
    return super.delete(hex);
  }

  override clear(): void {
    this.metrics.clear();
    this.sorted.clear();
    super.clear();
  }

  private unlink(st: SeriesState): void {
    const m = st.series.metric;
    const set = this.metrics.get(m);
    if (set === undefined) return;
    set.delete(st);
    if (set.size === 0) this.metrics.delete(m);
    this.sorted.delete(m);
  }

  /** The metric's live series, sorted by hex id (do not modify). */
  ofMetric(metric: string): readonly SeriesState[] {
    let list = this.sorted.get(metric);
    if (list === undefined) {
      const set = this.metrics.get(metric);
      if (set === undefined) return NO_SERIES;
      list = [...set].sort((a, b) => (a.hex < b.hex ? -1 : a.hex > b.hex ? 1 : 0));
      this.sorted.set(metric, list);
    }
    return list;
  }
}

// ---- end SeriesMap

/** Opens (creating if needed) the LMDB shard store in `dir`: LmdbShardStore.open. */
export function openShardStore(dir: string, options?: Partial<LmdbStoreOptions>): Promise<LmdbShardStore> {
  return LmdbShardStore.open(dir, options);
}

/** Writes a small file and fsyncs it and its directory entry. */
function writeDurably(path: string, text: string): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const dfd = openSync(join(path, '..'), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
