/**
 * Durable Raft log storage on LMDB (lmdb-js). Layout (see docs/format/raft-log.md, format version 1):
 *
 *  - sub-database `raft-entries`: key = log index as 8-byte big-endian, value = encoded entry (codec.ts);
 *  - sub-database `raft-meta`: string keys `format`, `hardState`, `snapshotMeta`, `firstIndex`,
 *    `snapshotData` (the state-machine image at the snapshot index, raw bytes).
 *
 * Several logs may share one environment (LmdbLogEnv: one per node, every shard's log in it under its own
 * name prefix): lmdb-js commits the asynchronous transactions queued while a commit is running together,
 * so the shards of a node share fsyncs instead of each paying its own (multi-Raft's shared log engine).
 *
 * Every mutation is one LMDB write transaction; its promise resolves after the transaction has committed
 * and been synced to disk (the environment is opened with `overlappingSync: false` and without
 * `noSync`/`noMetaSync`, so an LMDB commit is an fsync'd commit). Reads are synchronous; the first/last
 * index, last term, hard state and snapshot metadata are cached in memory and updated only once the
 * write that changes them is durable, so readers never see state that a crash could take back.
 * Mutations are serialized in call order.
 */
import { rmSync } from 'node:fs';
import { type Database, open, type RootDatabase } from 'lmdb';
import { dataCorruption, TidemarkError } from '../errors/errors.js';
import { compactCopy, fileBytes, finishShrink, removeShrinkLeftover } from '../util/lmdb-shrink.js';
import {
  cloneConf,
  decodeEntry,
  decodeEntryTerm,
  decodeHardState,
  decodeIndexKey,
  decodeSnapshotMeta,
  decodeUint,
  encodeEntries,
  encodeHardState,
  encodeSnapshotMeta,
  encodeUint,
  entrySize,
  indexKey,
  LOG_FORMAT_VERSION,
} from './codec.js';
import {
  checkContiguous,
  errCompacted,
  errGap,
  errSnapshotOutOfDate,
  errUnavailable,
  type LogStorageOptions,
  type SnapshotLogStorage,
} from './storage-memory.js';
import type { ConfState, Entry, HardState, Snapshot, SnapshotMeta } from './types.js';

/**
 * An LMDB environment shared by the Raft logs of one node's shards. Opened once, handed to every
 * LmdbLogStorage.open({ env, name }); closed after the last log using it.
 */
export class LmdbLogEnv {
  private constructor(
    readonly path: string,
    /** @internal */ readonly root: RootDatabase,
  ) {}

  /** `maxLogs`: how many logs (each two sub-databases) may live in the environment. */
  static open(path: string, options: { maxLogs: number; mapSize?: number }): LmdbLogEnv {
    removeShrinkLeftover(path);
    const root = open({
      path,
      // Durable commits: the write promise resolves after fsync. Never noSync/noMetaSync.
      overlappingSync: false,
      noSync: false,
      noMetaSync: false,
      compression: false,
      cache: false,
      maxDbs: 2 * options.maxLogs + 2,
      ...(options.mapSize ? { mapSize: options.mapSize } : {}),
    });
    return new LmdbLogEnv(path, root);
  }

  /**
   * Closes the environment. When a compacted copy (taken once every log is closed) is at most half the file,
   * it replaces the file (src/util/lmdb-shrink.ts): a node stopped cleanly (logs compacted up to its stores'
   * checkpoints) keeps its samples on disk once.
   */
  async close(): Promise<void> {
    let swap = false;
    try {
      const size = fileBytes(this.path);
      if (size >= SHRINK_MIN_BYTES) swap = (await compactCopy(this.root, this.path)) * 2 <= size;
    } catch {
      swap = false; // best effort: the file stays as it is
    }
    await this.root.close();
    finishShrink(this.path, swap);
  }
}

/** Smaller log files are not worth a copy. */
const SHRINK_MIN_BYTES = 1 << 20;

export interface LmdbLogStorageOptions extends LogStorageOptions {
  /** Directory of the LMDB environment (created if missing); with `env`, only a label for messages. */
  path: string;
  /** Store the log in this shared environment (not closed by close()) under sub-databases `<name>/...`. */
  env?: LmdbLogEnv;
  /** The log's name in a shared environment (required with `env`), e.g. `shard-7`. */
  name?: string;
  /** Initial LMDB map size in bytes (lmdb-js grows it as needed). */
  mapSize?: number;
  /**
   * Bytes of recently saved entries kept in memory (default 32 MiB), so the leader's reads of entries it
   * has just persisted (to replicate them) do not go back to LMDB. 0 disables the cache.
   */
  cacheBytes?: number;
  /**
   * Compacted entries deleted per write transaction (default 1024). compact() only moves the first index;
   * the entries below it are deleted a batch at a time by the following saves (and by close()), so a large
   * compaction never stalls the write path.
   */
  gcBatch?: number;
}

const K_FORMAT = 'format';
const K_HARD_STATE = 'hardState';
const K_SNAPSHOT_META = 'snapshotMeta';
const K_FIRST_INDEX = 'firstIndex';
const K_SNAPSHOT_DATA = 'snapshotData';

const EMPTY = new Uint8Array(0);
const APPEND = { append: true };

type Bytes = Uint8Array;

export class LmdbLogStorage implements SnapshotLogStorage {
  private hardState: HardState = { term: 0, vote: '', commit: 0 };
  private meta: SnapshotMeta;
  private first: number;
  private last: number;
  private lastTerm: number;
  /** Cache of the durable log's tail: entries tail[0].index .. last (contiguous), at most cacheBytes. */
  private tail: Entry[] = [];
  private tailHead = 0; // tail[tailHead] is the oldest cached entry (a moving head avoids O(n) shifts)
  private tailBytes = 0;
  private readonly cacheBytes: number;
  /** Tail of the serialized mutation chain. */
  private writes: Promise<unknown> = Promise.resolve();
  private closing = false;
  /** Compacted entries [gcFrom, gcTo] still to delete, a bounded number per save (see compact()). */
  private gcFrom = 0;
  private gcTo = -1;
  private readonly gcBatch: number;

  private constructor(
    readonly path: string,
    private readonly env: RootDatabase,
    private readonly ents: Database<Bytes, Bytes>,
    private readonly metaDb: Database<Bytes, string>,
    conf: ConfState,
    cacheBytes: number,
    gcBatch: number,
    private readonly ownsEnv: boolean,
  ) {
    this.cacheBytes = cacheBytes;
    this.gcBatch = gcBatch;
    this.meta = { index: 0, term: 0, conf: cloneConf(conf) };
    this.first = 1;
    this.last = 0;
    this.lastTerm = 0;
  }

  /** Opens (creating if needed) the log at `options.path` and loads its cached state. */
  static async open(options: LmdbLogStorageOptions): Promise<LmdbLogStorage> {
    if (options.env !== undefined && (options.name === undefined || options.name === '')) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'log_name_missing',
        'a log in a shared environment needs a name',
        {
          field: 'name',
        },
      );
    }
    const owns = options.env === undefined;
    const env =
      options.env?.root ??
      open({
        path: options.path,
        // Durable commits: the write promise resolves after fsync. Never noSync/noMetaSync.
        overlappingSync: false,
        noSync: false,
        noMetaSync: false,
        compression: false,
        cache: false,
        ...(options.mapSize ? { mapSize: options.mapSize } : {}),
      });
    const prefix = owns ? '' : `${options.name}/`;
    try {
      const ents = env.openDB<Bytes, Bytes>({
        name: `${prefix}raft-entries`,
        keyEncoding: 'binary',
        encoding: 'binary',
      });
      const metaDb = env.openDB<Bytes, string>({ name: `${prefix}raft-meta`, encoding: 'binary' });
      const s = new LmdbLogStorage(
        owns ? options.path : `${options.env!.path} (${options.name})`,
        env,
        ents,
        metaDb,
        options.conf ?? { voters: [], learners: [] },
        options.cacheBytes ?? 32 * 1024 * 1024,
        options.gcBatch ?? 1024,
        owns,
      );
      await s.load();
      return s;
    } catch (err) {
      if (owns) await env.close();
      throw err;
    }
  }

  /** Deletes an environment directory (tests, benchmarks). */
  static destroy(path: string): void {
    rmSync(path, { recursive: true, force: true });
  }

  private async load(): Promise<void> {
    const format = this.metaDb.getBinary(K_FORMAT);
    if (format === undefined) {
      // A new log: record the format version and the initial membership.
      const records: Array<[string, Uint8Array]> = [
        [K_SNAPSHOT_META, encodeSnapshotMeta(this.meta)],
        [K_FIRST_INDEX, encodeUint(1)],
        [K_HARD_STATE, encodeHardState(this.hardState)],
        // Written last: its presence marks a complete initialization.
        [K_FORMAT, encodeUint(LOG_FORMAT_VERSION)],
      ];
      await this.env.transaction(() => {
        for (const [k, v] of records) this.metaDb.putSync(k, v);
      });
      return;
    }
    const version = decodeUint(format, 'raft log format');
    if (version !== LOG_FORMAT_VERSION) {
      throw dataCorruption(
        'unknown_format_version',
        `raft log at ${this.path} has format ${version}, want ${LOG_FORMAT_VERSION}`,
      );
    }
    const hs = this.metaDb.getBinary(K_HARD_STATE);
    if (hs) this.hardState = decodeHardState(hs);
    const sm = this.metaDb.getBinary(K_SNAPSHOT_META);
    if (sm) this.meta = decodeSnapshotMeta(sm);
    const fi = this.metaDb.getBinary(K_FIRST_INDEX);
    this.first = fi ? decodeUint(fi, 'raft first index') : this.meta.index + 1;
    if (this.first !== this.meta.index + 1) {
      throw dataCorruption(
        'first_index_mismatch',
        `raft log at ${this.path}: first index ${this.first} but snapshot index ${this.meta.index}`,
      );
    }
    this.last = this.meta.index;
    this.lastTerm = this.meta.term;
    for (const { key, value } of this.ents.getRange({ reverse: true, limit: 1 })) {
      const e = decodeEntry(value);
      const idx = decodeIndexKey(key);
      if (e.index !== idx)
        throw dataCorruption('entry_index_mismatch', `raft entry key ${idx} holds ${e.index}`);
      if (idx >= this.first) {
        this.last = idx;
        this.lastTerm = e.term;
      }
    }
    // Entries below the first index are compacted garbage not yet deleted: resume deleting them.
    for (const key of this.ents.getKeys({ limit: 1 })) {
      const idx = decodeIndexKey(key as Bytes);
      if (idx < this.first) {
        this.gcFrom = idx;
        this.gcTo = this.first - 1;
      }
    }
    // Entries must be contiguous from the first index to the last.
    if (this.last >= this.first && this.ents.getBinaryFast(indexKey(this.first)) === undefined) {
      throw dataCorruption('log_hole', `raft log at ${this.path}: first entry ${this.first} is missing`);
    }
  }

  initialState(): { hardState: HardState; conf: ConfState } {
    return { hardState: { ...this.hardState }, conf: cloneConf(this.meta.conf) };
  }

  entries(lo: number, hi: number, maxBytes = Number.POSITIVE_INFINITY): Entry[] {
    if (lo < this.first) throw errCompacted(lo, this.first);
    if (hi > this.last + 1) throw errUnavailable(hi - 1, this.last);
    if (lo >= hi) return [];
    const cached = this.tail.length - this.tailHead;
    if (cached > 0 && lo >= this.tail[this.tailHead].index) {
      const base = this.tail[this.tailHead].index - this.tailHead;
      const out: Entry[] = [];
      let size = 0;
      for (let i = lo; i < hi; i++) {
        const e = this.tail[i - base];
        size += entrySize(e);
        if (out.length > 0 && size > maxBytes) break;
        out.push(e);
      }
      return out;
    }
    const out: Entry[] = [];
    let size = 0;
    let expect = lo;
    for (const { value } of this.ents.getRange({ start: indexKey(lo), end: indexKey(hi) })) {
      const e = decodeEntry(value);
      if (e.index !== expect) {
        throw dataCorruption('log_hole', `raft log at ${this.path}: read entry ${e.index}, want ${expect}`);
      }
      expect++;
      size += entrySize(e);
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    if (out.length === 0) {
      throw dataCorruption('log_hole', `raft log at ${this.path}: entry ${lo} is missing`);
    }
    return out;
  }

  term(i: number): number {
    if (i === this.last) return this.lastTerm;
    if (i === this.meta.index) return this.meta.term;
    if (i < this.meta.index) throw errCompacted(i, this.first);
    if (i > this.last) throw errUnavailable(i, this.last);
    if (this.tail.length > this.tailHead && i >= this.tail[this.tailHead].index) {
      return this.tail[i - this.tail[this.tailHead].index + this.tailHead].term;
    }
    const buf = this.ents.getBinaryFast(indexKey(i));
    if (buf === undefined)
      throw dataCorruption('log_hole', `raft log at ${this.path}: entry ${i} is missing`);
    return decodeEntryTerm(buf);
  }

  firstIndex(): number {
    return this.first;
  }

  lastIndex(): number {
    return this.last;
  }

  snapshotMeta(): SnapshotMeta {
    return { index: this.meta.index, term: this.meta.term, conf: cloneConf(this.meta.conf) };
  }

  snapshot(): Snapshot {
    const data = this.metaDb.getBinary(K_SNAPSHOT_DATA);
    return { meta: this.snapshotMeta(), data: data ? new Uint8Array(data) : EMPTY };
  }

  save(hardState: HardState | undefined, entries: Entry[]): Promise<void> {
    return this.serialize(async () => {
      checkContiguous(entries);
      if (entries.length > 0 && entries[entries.length - 1].index < this.first) entries = [];
      if (entries.length > 0 && entries[0].index < this.first)
        entries = entries.slice(this.first - entries[0].index);
      if (entries.length > 0 && entries[0].index > this.last + 1) throw errGap(entries[0].index, this.last);
      if (entries.length === 0 && hardState === undefined) return;
      const encoded = encodeEntries(entries);
      const hs = hardState
        ? { term: hardState.term, vote: hardState.vote, commit: hardState.commit }
        : undefined;
      const hsBytes = hs ? encodeHardState(hs) : undefined;
      const oldLast = this.last;
      // Everything that can throw is done before the transaction: lmdb-js commits an async transaction
      // even when its callback throws, so the callback only does the writes.
      await this.env.transaction(() => {
        if (entries.length > 0) {
          const firstNew = entries[0].index;
          // Truncate the conflicting suffix [firstNew, oldLast].
          for (let i = firstNew; i <= oldLast; i++) this.ents.removeSync(indexKey(i));
          // After the truncation every new key sorts after all stored keys: LMDB's append fast path
          // (MDB_APPEND). Should it ever refuse (it reports false, it does not throw), a plain put is
          // still correct.
          for (let j = 0; j < entries.length; j++) {
            const key = indexKey(entries[j].index);
            // (lmdb-js's typings say void; at run time putSync returns whether the put happened.)
            const appended = this.ents.putSync(key, encoded[j], APPEND) as unknown as boolean;
            if (!appended) this.ents.putSync(key, encoded[j]);
          }
        }
        if (hsBytes) this.metaDb.putSync(K_HARD_STATE, hsBytes);
        this.collectGarbage(this.gcBatch);
      });
      if (entries.length > 0) {
        const lastE = entries[entries.length - 1];
        this.last = lastE.index;
        this.lastTerm = lastE.term;
        this.cacheAppend(entries);
      }
      if (hs) this.hardState = hs;
    });
  }

  applySnapshot(snapshot: Snapshot): Promise<void> {
    return this.serialize(async () => {
      const { meta } = snapshot;
      if (meta.index <= this.meta.index) throw errSnapshotOutOfDate(meta.index, this.meta.index);
      const newMeta: SnapshotMeta = { index: meta.index, term: meta.term, conf: cloneConf(meta.conf) };
      const first = this.gcTo >= this.gcFrom ? this.gcFrom : this.first;
      const last = this.last;
      const data = snapshot.data;
      const metaBytes = encodeSnapshotMeta(newMeta);
      const firstBytes = encodeUint(newMeta.index + 1);
      await this.env.transaction(() => {
        // As in etcd: the whole log is replaced; it restarts right after the snapshot.
        for (let i = first; i <= last; i++) this.ents.removeSync(indexKey(i));
        this.metaDb.putSync(K_SNAPSHOT_META, metaBytes);
        this.metaDb.putSync(K_FIRST_INDEX, firstBytes);
        this.metaDb.putSync(K_SNAPSHOT_DATA, data);
      });
      this.meta = newMeta;
      this.first = newMeta.index + 1;
      this.last = newMeta.index;
      this.lastTerm = newMeta.term;
      this.gcFrom = 0;
      this.gcTo = -1;
      this.cacheClear();
    });
  }

  compact(index: number, conf: ConfState, data?: Uint8Array): Promise<void> {
    return this.serialize(async () => {
      if (index <= this.meta.index) throw errCompacted(index, this.first);
      if (index > this.last) throw errUnavailable(index, this.last);
      const newMeta: SnapshotMeta = { index, term: this.term(index), conf: cloneConf(conf) };
      const metaBytes = encodeSnapshotMeta(newMeta);
      const firstBytes = encodeUint(index + 1);
      await this.env.transaction(() => {
        // Entries <= index become garbage: unreachable now (reads check the first index), deleted later.
        this.metaDb.putSync(K_SNAPSHOT_META, metaBytes);
        this.metaDb.putSync(K_FIRST_INDEX, firstBytes);
        this.metaDb.putSync(K_SNAPSHOT_DATA, data ?? EMPTY);
      });
      if (this.gcTo < this.gcFrom) this.gcFrom = this.first;
      this.gcTo = index;
      this.meta = newMeta;
      this.first = index + 1;
      if (index === this.last) this.lastTerm = newMeta.term;
      this.cacheDropThrough(index);
    });
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.writes.catch(() => {});
    if (this.ownsEnv) await this.env.close();
  }

  /** Inside a write transaction: deletes up to `max` compacted entries. */
  private collectGarbage(max: number): void {
    const to = Math.min(this.gcTo, this.gcFrom + max - 1);
    for (let i = this.gcFrom; i <= to; i++) this.ents.removeSync(indexKey(i));
    // Only advanced here, inside the callback: if the transaction fails the driver stops anyway, and a
    // reopen rediscovers the garbage from the keys.
    this.gcFrom = to + 1;
  }

  /** Entries physically stored, garbage included (tests, diagnostics). */
  storedEntryCount(): number {
    return this.ents.getKeysCount();
  }

  /** Deletes all compacted entries still present (a few transactions). */
  async collectAllGarbage(): Promise<void> {
    while (this.gcTo >= this.gcFrom) {
      await this.serialize(() => this.env.transaction(() => this.collectGarbage(16 * this.gcBatch)));
    }
  }

  private cacheClear(): void {
    this.tail = [];
    this.tailHead = 0;
    this.tailBytes = 0;
  }

  /** Adds just-saved entries (contiguous, ending at `last`) to the cache, truncating what they replace. */
  private cacheAppend(entries: Entry[]): void {
    if (this.cacheBytes <= 0) return;
    const firstNew = entries[0].index;
    const cached = this.tail.length - this.tailHead;
    if (cached > 0) {
      const head = this.tail[this.tailHead].index;
      const end = head + cached; // one past the last cached index
      if (firstNew < head || firstNew > end) {
        this.cacheClear();
      } else if (firstNew < end) {
        for (let i = firstNew; i < end; i++) this.tailBytes -= entrySize(this.tail[i - head + this.tailHead]);
        this.tail.length = firstNew - head + this.tailHead;
      }
    }
    for (const e of entries) {
      this.tail.push(e);
      this.tailBytes += entrySize(e);
    }
    while (this.tailBytes > this.cacheBytes && this.tail.length - this.tailHead > 1) {
      this.tailBytes -= entrySize(this.tail[this.tailHead++]);
    }
    if (this.tailHead > 4096 && this.tailHead * 2 > this.tail.length) {
      this.tail = this.tail.slice(this.tailHead);
      this.tailHead = 0;
    }
  }

  /** Drops cached entries with index <= `index` (compaction). */
  private cacheDropThrough(index: number): void {
    while (this.tail.length > this.tailHead && this.tail[this.tailHead].index <= index) {
      this.tailBytes -= entrySize(this.tail[this.tailHead++]);
    }
    if (this.tail.length === this.tailHead) this.cacheClear();
  }

  private serialize(op: () => Promise<void>): Promise<void> {
    if (this.closing)
      return Promise.reject(new TidemarkError('CLOSED', 'closed', 'raft log storage is closed'));
    const p = this.writes.then(op);
    this.writes = p.catch(() => {});
    return p;
  }
}
