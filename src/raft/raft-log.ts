/**
 * The Raft log as the core sees it (etcd-io/raft log.go + log_unstable.go): a stable prefix read through a
 * `LogReader` (what the driver has made durable) followed by an unstable suffix (entries, and possibly a
 * snapshot, that the core has accepted but the driver has not yet persisted).
 *
 * Invariants: every entry in the reader below `unstable.offset` matches this log; the reader may still hold
 * stale entries at or above `unstable.offset` (they will be overwritten when the unstable suffix is saved,
 * `LogStorage.save` truncates conflicting suffixes), so they are never read.
 */
import { TidemarkError } from '../errors/errors.js';
import type { Entry, LogReader, Snapshot } from './types.js';

export function entrySize(e: Entry): number {
  return e.data.byteLength + 16;
}

export function raftInternal(message: string): TidemarkError {
  return new TidemarkError('INTERNAL', 'raft_invariant', message);
}

/** Entries (and a snapshot) not yet durable. */
export class Unstable {
  snapshot: Snapshot | undefined;
  /** Index of entries[0]. */
  offset: number;
  entries: Entry[] = [];
  /** Entries below this index (from `offset`) were handed to the driver in a Ready and await `advance`. */
  offsetInProgress: number;
  snapshotInProgress = false;

  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.meta.index + 1 : undefined;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.meta.index : undefined;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot && this.snapshot.meta.index === i) return this.snapshot.meta.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset].term;
  }

  /** Entries not yet handed out for persistence. */
  nextEntries(): Entry[] {
    const start = this.offsetInProgress - this.offset;
    return start >= this.entries.length ? [] : this.entries.slice(start);
  }

  nextSnapshot(): Snapshot | undefined {
    return this.snapshot && !this.snapshotInProgress ? this.snapshot : undefined;
  }

  acceptInProgress(): void {
    if (this.entries.length > 0) this.offsetInProgress = this.offset + this.entries.length;
    if (this.snapshot) this.snapshotInProgress = true;
  }

  /** Entries up to (i, t) are durable. Ignored if the entry at i has since been replaced. */
  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    if (gt === undefined || gt !== t || i < this.offset) return;
    const n = i + 1 - this.offset;
    this.entries = this.entries.slice(n);
    this.offset = i + 1;
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset);
  }

  stableSnapTo(i: number): void {
    if (this.snapshot && this.snapshot.meta.index === i) {
      this.snapshot = undefined;
      this.snapshotInProgress = false;
    }
  }

  restore(s: Snapshot): void {
    this.offset = s.meta.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = s;
    this.snapshotInProgress = false;
  }

  truncateAndAppend(ents: Entry[]): void {
    const from = ents[0].index;
    if (from === this.offset + this.entries.length) {
      this.entries = this.entries.concat(ents);
    } else if (from <= this.offset) {
      // Replaces everything unstable, and the stable suffix from `from` on.
      this.entries = ents.slice();
      this.offset = from;
      this.offsetInProgress = this.offset;
    } else {
      this.entries = this.entries.slice(0, from - this.offset).concat(ents);
      this.offsetInProgress = Math.min(this.offsetInProgress, from);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

export class RaftLog {
  readonly unstable: Unstable;
  /** Highest index known to be committed. */
  committed: number;
  /** Highest index handed to the driver for application (>= applied). */
  applying: number;
  /** Highest index the driver has applied (acknowledged by advance). */
  applied: number;

  constructor(
    readonly storage: LogReader,
    readonly maxApplyingEntsSize: number,
  ) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applying = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    if (t === undefined) throw raftInternal('term of last index unavailable');
    return t;
  }

  /** Term of entry i, or undefined when i is compacted away or beyond the log. */
  term(i: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return undefined;
    const ut = this.unstable.maybeTerm(i);
    if (ut !== undefined) return ut;
    if (i < this.storage.firstIndex() - 1) return undefined;
    return this.storage.term(i);
  }

  /** Term of entry i, 0 where unknown. */
  zeroTermOnOutOfBounds(i: number): number {
    return this.term(i) ?? 0;
  }

  matchTerm(i: number, t: number): boolean {
    const lt = this.term(i);
    return lt !== undefined && lt === t;
  }

  isUpToDate(lastIndex: number, term: number): boolean {
    const lt = this.lastTerm();
    return term > lt || (term === lt && lastIndex >= this.lastIndex());
  }

  /**
   * The last index that is durable and part of this log (0 while a snapshot restore is pending). The leader
   * counts only this much of its own log toward commitment.
   */
  persistedLastIndex(): number {
    if (this.unstable.snapshot) return 0;
    return this.unstable.offset - 1;
  }

  /**
   * Follower append (etcd maybeAppend). Returns the last index of the new entries, or undefined when the
   * entry at (index, logTerm) does not match.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) {
        throw raftInternal(`entry ${ci} conflicts with committed entry (committed ${this.committed})`);
      }
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0].index - 1;
    if (after < this.committed)
      throw raftInternal(`append after ${after} is below committed ${this.committed}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** First index whose entry conflicts with (or is missing from) this log; 0 if all match. */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Fast backtracking (etcd findConflictByTerm): the largest index <= `index` whose term is <= `term`,
   * with that term (0 if unknown, e.g. compacted).
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    for (; index > 0; index--) {
      const t = this.term(index);
      if (t === undefined) return [index, 0];
      if (t <= term) return [index, t];
    }
    return [0, 0];
  }

  commitTo(c: number): void {
    if (c > this.committed) {
      if (c > this.lastIndex()) throw raftInternal(`commit ${c} beyond last index ${this.lastIndex()}`);
      this.committed = c;
    }
  }

  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.zeroTermOnOutOfBounds(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  appliedTo(i: number): void {
    if (i > this.applied) this.applied = i;
    if (i > this.applying) this.applying = i;
  }

  hasNextCommittedEnts(): boolean {
    if (this.unstable.snapshot) return false;
    return this.committed > this.applying;
  }

  /** Committed entries not yet handed out for application (limited by maxApplyingEntsSize). */
  nextCommittedEnts(): Entry[] {
    if (!this.hasNextCommittedEnts()) return [];
    return this.slice(this.applying + 1, this.committed + 1, this.maxApplyingEntsSize) ?? [];
  }

  /** Entries from `lo` to the end (size-limited), or undefined if `lo` is compacted. */
  entries(lo: number, maxBytes: number): Entry[] | undefined {
    if (lo > this.lastIndex()) return [];
    return this.slice(lo, this.lastIndex() + 1, maxBytes);
  }

  /**
   * Entries in [lo, hi), at most maxBytes (but at least one), or undefined if `lo` is compacted.
   */
  slice(lo: number, hi: number, maxBytes = Number.POSITIVE_INFINITY): Entry[] | undefined {
    if (lo >= hi) return [];
    if (lo < this.firstIndex()) return undefined;
    if (hi > this.lastIndex() + 1)
      throw raftInternal(`slice [${lo}, ${hi}) beyond last index ${this.lastIndex()}`);
    let out: Entry[] = [];
    let size = 0;
    const off = this.unstable.offset;
    if (lo < off) {
      if (lo < this.storage.firstIndex()) return undefined;
      const storedHi = Math.min(hi, off);
      const stored = this.storage.entries(lo, storedHi, maxBytes);
      for (const e of stored) size += entrySize(e);
      out = stored.slice();
      if (stored.length < storedHi - lo) return out; // size limit reached
    }
    if (hi > off) {
      const u = this.unstable.slice(Math.max(lo, off), hi);
      for (const e of u) {
        const s = entrySize(e);
        if (out.length > 0 && size + s > maxBytes) break;
        size += s;
        out.push(e);
      }
    }
    return out;
  }

  /** The snapshot to send to a follower behind compaction, if the reader can provide one. */
  snapshot(): Snapshot | undefined {
    if (this.unstable.snapshot) return this.unstable.snapshot;
    return this.storage.snapshot?.();
  }

  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.unstable.restore(s);
  }
}
