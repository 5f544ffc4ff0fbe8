/**
 * A tiny synchronous in-memory LogReader for the core's tests and the simulation (etcd MemoryStorage). It
 * stands for what a node has made durable: the harness writes to it only while handling a Ready.
 */
import { TidemarkError } from '../../../src/errors/errors.js';
import { bootstrapState } from '../../../src/raft/conf-change.js';
import {
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type LogReader,
  type Snapshot,
  type SnapshotMeta,
} from '../../../src/raft/types.js';

const EntryNormal = EntryType.Normal;

export class MemStorage implements LogReader {
  hardState: HardState = { term: 0, vote: '', commit: 0 };
  /** ents[0] is a dummy carrying the snapshot's index and term. */
  ents: Entry[];
  snap: Snapshot;

  constructor(conf: ConfState = { voters: [], learners: [] }) {
    this.snap = { meta: { index: 0, term: 0, conf: cloneConf(conf) }, data: new Uint8Array(0) };
    this.ents = [{ term: 0, index: 0, type: EntryNormal, data: new Uint8Array(0) }];
  }

  initialState(): { hardState: HardState; conf: ConfState } {
    return { hardState: { ...this.hardState }, conf: cloneConf(this.snap.meta.conf) };
  }

  firstIndex(): number {
    return this.ents[0].index + 1;
  }

  lastIndex(): number {
    return this.ents[0].index + this.ents.length - 1;
  }

  term(i: number): number {
    const off = this.ents[0].index;
    if (i < off) throw new TidemarkError('FAILED_PRECONDITION', 'compacted', `index ${i} compacted`);
    if (i - off >= this.ents.length)
      throw new TidemarkError('UNAVAILABLE', 'unavailable', `index ${i} unavailable`);
    return this.ents[i - off].term;
  }

  entries(lo: number, hi: number, maxBytes = Number.POSITIVE_INFINITY): Entry[] {
    const off = this.ents[0].index;
    if (lo <= off) throw new TidemarkError('FAILED_PRECONDITION', 'compacted', `index ${lo} compacted`);
    if (hi > this.lastIndex() + 1)
      throw new TidemarkError('UNAVAILABLE', 'unavailable', `index ${hi} unavailable`);
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - off];
      const s = e.data.byteLength + 16;
      if (out.length > 0 && size + s > maxBytes) break;
      size += s;
      out.push(e);
    }
    return out;
  }

  snapshotMeta(): SnapshotMeta {
    return this.snap.meta;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Appends, truncating any conflicting suffix (what LogStorage.save does). */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[entries.length - 1].index;
    if (last < first) return;
    if (first > entries[0].index) entries = entries.slice(first - entries[0].index);
    const offset = entries[0].index - this.ents[0].index;
    if (this.ents.length > offset) {
      this.ents = this.ents.slice(0, offset).concat(entries);
    } else if (this.ents.length === offset) {
      this.ents = this.ents.concat(entries);
    } else {
      throw new Error(`missing log entry: last ${this.lastIndex()}, append at ${entries[0].index}`);
    }
  }

  save(hs: HardState | undefined, entries: Entry[]): void {
    this.append(entries);
    if (hs) this.hardState = { ...hs };
  }

  applySnapshot(s: Snapshot): void {
    if (s.meta.index <= this.snap.meta.index) return;
    this.snap = { meta: { ...s.meta, conf: cloneConf(s.meta.conf) }, data: s.data };
    this.ents = [{ term: s.meta.term, index: s.meta.index, type: EntryNormal, data: new Uint8Array(0) }];
  }

  /** Takes a snapshot at `index` (<= applied) with the given state-machine image and drops entries <= index. */
  compact(index: number, conf: ConfState, data: Uint8Array): void {
    const off = this.ents[0].index;
    if (index <= off) return;
    if (index > this.lastIndex()) throw new Error(`compact ${index} beyond last ${this.lastIndex()}`);
    const term = this.ents[index - off].term;
    this.snap = { meta: { index, term, conf: cloneConf(conf) }, data };
    const head: Entry[] = [{ term, index, type: EntryNormal, data: new Uint8Array(0) }];
    this.ents = head.concat(this.ents.slice(index - off + 1));
  }
}

export function cloneConf(c: ConfState): ConfState {
  return { voters: [...c.voters], learners: [...c.learners] };
}

/** Entries with the given terms at indexes 1.. (for building logs such as the paper's figures). */
export function entriesWithTerms(terms: number[], startIndex = 1): Entry[] {
  return terms.map((term, i) => ({
    term,
    index: startIndex + i,
    type: EntryNormal,
    data: new Uint8Array(0),
  }));
}

/** Storage of a founding member of a cluster of `voters`, bootstrapped etcd-style (see bootstrapState). */
export function bootstrappedStorage(voters: string[]): MemStorage {
  const b = bootstrapState(voters);
  const s = new MemStorage(b.conf);
  s.append(b.entries);
  s.hardState = b.hardState;
  return s;
}
