/**
 * In-memory log storage: the reference LogStorage (etcd's MemoryStorage). Synchronous underneath and
 * dependency-free so the pure core's tests and the deterministic simulation can use it: every mutation
 * takes effect before the returned promise is created, and the promise is already resolved.
 *
 * Layout: `ents[0]` is a dummy entry at the snapshot index carrying the snapshot term, so
 * firstIndex() = ents[0].index + 1 and lastIndex() = ents[0].index + ents.length - 1.
 */
import { TidemarkError } from '../errors/errors.js';
import { cloneConf, entrySize } from './codec.js';
import type { ConfState, Entry, HardState, LogStorage, Snapshot, SnapshotMeta } from './types.js';

/** A LogStorage whose compaction can also keep the state-machine image taken at the compaction index. */
export interface SnapshotLogStorage extends LogStorage {
  /**
   * Discards entries up to and including `index` (must be <= the applied index) and records the snapshot
   * metadata {index, term(index), conf}; `data`, when given, is the state-machine image at `index` that
   * `snapshot()` returns from then on (also after a restart).
   */
  compact(index: number, conf: ConfState, data?: Uint8Array): Promise<void>;
}

export interface LogStorageOptions {
  /** Membership of a brand-new (empty) log: what initialState().conf reports before any snapshot. */
  conf?: ConfState;
}

/** The requested index is at or below the compaction point. */
export function errCompacted(index: number, firstIndex: number): TidemarkError {
  return new TidemarkError(
    'FAILED_PRECONDITION',
    'compacted',
    `raft log index ${index} is compacted (first index ${firstIndex})`,
    { index, firstIndex },
  );
}

/** The requested index is past the end of the log. */
export function errUnavailable(index: number, lastIndex: number): TidemarkError {
  return new TidemarkError(
    'UNAVAILABLE',
    'unavailable',
    `raft log index ${index} is unavailable (last index ${lastIndex})`,
    { index, lastIndex },
  );
}

export function errSnapshotOutOfDate(index: number, current: number): TidemarkError {
  return new TidemarkError(
    'FAILED_PRECONDITION',
    'snapshot_out_of_date',
    `snapshot at index ${index} is not newer than the stored snapshot at ${current}`,
    { index, current },
  );
}

export function isCompacted(err: unknown): boolean {
  return err instanceof TidemarkError && err.reason === 'compacted';
}

export function isUnavailable(err: unknown): boolean {
  return err instanceof TidemarkError && err.reason === 'unavailable';
}

/** Checks that `entries` are contiguous; returns them unchanged. */
export function checkContiguous(entries: Entry[]): Entry[] {
  for (let i = 1; i < entries.length; i++) {
    if (entries[i].index !== entries[i - 1].index + 1) {
      throw new TidemarkError(
        'INTERNAL',
        'non_contiguous_entries',
        `entries to append are not contiguous: ${entries[i - 1].index} then ${entries[i].index}`,
      );
    }
  }
  return entries;
}

export function errGap(first: number, lastIndex: number): TidemarkError {
  return new TidemarkError(
    'INTERNAL',
    'log_gap',
    `appending entries from ${first} would leave a gap after last index ${lastIndex}`,
    { first, lastIndex },
  );
}

const EMPTY = new Uint8Array(0);

export class MemoryLogStorage implements SnapshotLogStorage {
  private hardState: HardState = { term: 0, vote: '', commit: 0 };
  private snap: Snapshot;
  /** ents[0] is the dummy entry at the snapshot index. */
  private ents: Entry[];
  private closed = false;

  constructor(options: LogStorageOptions = {}) {
    const conf = options.conf ? cloneConf(options.conf) : { voters: [], learners: [] };
    this.snap = { meta: { index: 0, term: 0, conf }, data: EMPTY };
    this.ents = [{ index: 0, term: 0, type: 0, data: EMPTY }];
  }

  initialState(): { hardState: HardState; conf: ConfState } {
    return { hardState: { ...this.hardState }, conf: cloneConf(this.snap.meta.conf) };
  }

  entries(lo: number, hi: number, maxBytes = Number.POSITIVE_INFINITY): Entry[] {
    const offset = this.ents[0].index;
    if (lo <= offset) throw errCompacted(lo, offset + 1);
    if (hi > this.lastIndex() + 1) throw errUnavailable(hi - 1, this.lastIndex());
    if (lo >= hi) return [];
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - offset];
      size += entrySize(e);
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  term(i: number): number {
    const offset = this.ents[0].index;
    if (i < offset) throw errCompacted(i, offset + 1);
    if (i > this.lastIndex()) throw errUnavailable(i, this.lastIndex());
    return this.ents[i - offset].term;
  }

  firstIndex(): number {
    return this.ents[0].index + 1;
  }

  lastIndex(): number {
    return this.ents[0].index + this.ents.length - 1;
  }

  snapshotMeta(): SnapshotMeta {
    const m = this.snap.meta;
    return { index: m.index, term: m.term, conf: cloneConf(m.conf) };
  }

  snapshot(): Snapshot {
    return { meta: this.snapshotMeta(), data: this.snap.data };
  }

  /** Synchronous `save` (for the simulation and core tests). */
  saveSync(hardState: HardState | undefined, entries: Entry[]): void {
    this.checkOpen();
    this.appendSync(entries);
    if (hardState) this.setHardState(hardState);
  }

  setHardState(hs: HardState): void {
    this.checkOpen();
    this.hardState = { term: hs.term, vote: hs.vote, commit: hs.commit };
  }

  /** Appends entries, truncating any conflicting suffix (entries with index >= the first new index). */
  appendSync(entries: Entry[]): void {
    this.checkOpen();
    if (entries.length === 0) return;
    checkContiguous(entries);
    const first = this.firstIndex();
    const lastNew = entries[entries.length - 1].index;
    if (lastNew < first) return; // all already compacted
    if (entries[0].index < first) entries = entries.slice(first - entries[0].index);
    const offset = this.ents[0].index;
    const at = entries[0].index - offset;
    if (at > this.ents.length) throw errGap(entries[0].index, this.lastIndex());
    if (at < this.ents.length) this.ents.length = at;
    for (const e of entries) this.ents.push(e);
  }

  save(hardState: HardState | undefined, entries: Entry[]): Promise<void> {
    try {
      this.saveSync(hardState, entries);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  applySnapshotSync(snapshot: Snapshot): void {
    this.checkOpen();
    const { meta } = snapshot;
    if (meta.index <= this.snap.meta.index) throw errSnapshotOutOfDate(meta.index, this.snap.meta.index);
    this.snap = {
      meta: { index: meta.index, term: meta.term, conf: cloneConf(meta.conf) },
      data: snapshot.data,
    };
    // As in etcd: the whole log is replaced; it restarts right after the snapshot.
    this.ents = [{ index: meta.index, term: meta.term, type: 0, data: EMPTY }];
  }

  applySnapshot(snapshot: Snapshot): Promise<void> {
    try {
      this.applySnapshotSync(snapshot);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  compactSync(index: number, conf: ConfState, data?: Uint8Array): void {
    this.checkOpen();
    const offset = this.ents[0].index;
    if (index <= offset) throw errCompacted(index, offset + 1);
    if (index > this.lastIndex()) throw errUnavailable(index, this.lastIndex());
    const term = this.ents[index - offset].term;
    this.ents = [{ index, term, type: 0, data: EMPTY }, ...this.ents.slice(index - offset + 1)];
    this.snap = { meta: { index, term, conf: cloneConf(conf) }, data: data ?? EMPTY };
  }

  compact(index: number, conf: ConfState, data?: Uint8Array): Promise<void> {
    try {
      this.compactSync(index, conf, data);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  private checkOpen(): void {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'raft log storage is closed');
  }
}
