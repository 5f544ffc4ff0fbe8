/**
 * Binary encodings of the Raft log records stored by the log storages (see docs/format/raft-log.md).
 * Format version 1. Integers are unsigned LEB128 varints (safe integers up to 2^53 - 1); strings are
 * a varint byte length followed by UTF-8 bytes. Every record starts with a one-byte format version so a
 * future layout can be told apart from this one.
 */
import { dataCorruption } from '../errors/errors.js';
import { varintSize, writeVarint } from '../util/varint.js';
import type { ConfState, Entry, EntryType, HardState, SnapshotMeta } from './types.js';

export const LOG_FORMAT_VERSION = 1;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** An 8-byte big-endian key for a log index: lexicographic byte order == numeric order. */
export function indexKey(index: number): Uint8Array {
  const key = new Uint8Array(8);
  const hi = Math.floor(index / 0x1_0000_0000);
  const lo = index >>> 0; // ToUint32: the low 32 bits of a safe integer
  key[0] = hi >>> 24;
  key[1] = (hi >>> 16) & 0xff;
  key[2] = (hi >>> 8) & 0xff;
  key[3] = hi & 0xff;
  key[4] = lo >>> 24;
  key[5] = (lo >>> 16) & 0xff;
  key[6] = (lo >>> 8) & 0xff;
  key[7] = lo & 0xff;
  return key;
}

export function decodeIndexKey(key: Uint8Array): number {
  if (key.length !== 8) throw dataCorruption('bad_index_key', `raft log key has ${key.length} bytes, want 8`);
  const v = new DataView(key.buffer, key.byteOffset, 8);
  return v.getUint32(0) * 0x1_0000_0000 + v.getUint32(4);
}

/** A cursor over an encoded record; throws DATA_CORRUPTION on truncated or malformed input. */
class Reader {
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly what: string,
  ) {}

  byte(): number {
    if (this.pos >= this.buf.length) throw this.truncated();
    return this.buf[this.pos++];
  }

  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (!Number.isSafeInteger(result)) break;
        return result;
      }
      mul *= 128;
    }
    throw dataCorruption('bad_varint', `${this.what}: malformed varint at offset ${this.pos}`);
  }

  string(): string {
    const len = this.varint();
    if (this.pos + len > this.buf.length) throw this.truncated();
    const s = textDecoder.decode(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }

  version(): void {
    const v = this.byte();
    if (v !== LOG_FORMAT_VERSION) {
      throw dataCorruption(
        'unknown_format_version',
        `${this.what}: format version ${v}, want ${LOG_FORMAT_VERSION}`,
      );
    }
  }

  end(): void {
    if (this.pos !== this.buf.length) {
      throw dataCorruption('trailing_bytes', `${this.what}: ${this.buf.length - this.pos} trailing bytes`);
    }
  }

  private truncated(): Error {
    return dataCorruption('truncated', `${this.what}: truncated record (${this.buf.length} bytes)`);
  }
}

/** Entry record: version u8 | type u8 | term varint | index varint | data (the rest of the record). */
export function encodeEntry(e: Entry): Uint8Array {
  const size = 2 + varintSize(e.term) + varintSize(e.index) + e.data.length;
  const buf = new Uint8Array(size);
  buf[0] = LOG_FORMAT_VERSION;
  buf[1] = e.type;
  let pos = writeVarint(buf, 2, e.term);
  pos = writeVarint(buf, pos, e.index);
  buf.set(e.data, pos);
  return buf;
}

/** Encodes several entries into one backing buffer (one allocation; the records are views into it). */
export function encodeEntries(entries: Entry[]): Uint8Array[] {
  let total = 0;
  for (const e of entries) total += 2 + varintSize(e.term) + varintSize(e.index) + e.data.length;
  const buf = new Uint8Array(total);
  const out: Uint8Array[] = [];
  let pos = 0;
  for (const e of entries) {
    const start = pos;
    buf[pos++] = LOG_FORMAT_VERSION;
    buf[pos++] = e.type;
    pos = writeVarint(buf, pos, e.term);
    pos = writeVarint(buf, pos, e.index);
    buf.set(e.data, pos);
    pos += e.data.length;
    out.push(buf.subarray(start, pos));
  }
  return out;
}

/**
 * Decodes an entry record. The returned `data` aliases `buf` unless `copy` is set (pass `copy` when the
 * source buffer is reused, e.g. lmdb-js getBinaryFast).
 */
export function decodeEntry(buf: Uint8Array, copy = false): Entry {
  const r = new Reader(buf, 'raft entry');
  r.version();
  const type = r.byte();
  if (type !== 0 && type !== 1)
    throw dataCorruption('bad_entry_type', `raft entry: unknown entry type ${type}`);
  const term = r.varint();
  const index = r.varint();
  return { term, index, type: type as EntryType, data: copy ? buf.slice(r.pos) : buf.subarray(r.pos) };
}

/**
 * Size an entry is charged for in `entries(lo, hi, maxBytes)`: its data plus 16 bytes of overhead
 * (the same measure as the core's raft-log.ts, so both sides of the limit agree).
 */
export function entrySize(e: Entry): number {
  return e.data.byteLength + 16;
}

/** Reads only the term of an encoded entry (no copy of the data). */
export function decodeEntryTerm(buf: Uint8Array): number {
  const r = new Reader(buf, 'raft entry');
  r.version();
  r.byte();
  return r.varint();
}

function stringsSize(list: string[]): number {
  let n = varintSize(list.length);
  for (const s of list) {
    const len = textEncoder.encode(s).length;
    n += varintSize(len) + len;
  }
  return n;
}

function writeStrings(buf: Uint8Array, pos: number, list: string[]): number {
  pos = writeVarint(buf, pos, list.length);
  for (const s of list) {
    const bytes = textEncoder.encode(s);
    pos = writeVarint(buf, pos, bytes.length);
    buf.set(bytes, pos);
    pos += bytes.length;
  }
  return pos;
}

function readStrings(r: Reader): string[] {
  const n = r.varint();
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(r.string());
  return out;
}

/** HardState record: version u8 | term varint | commit varint | vote string. */
export function encodeHardState(hs: HardState): Uint8Array {
  const vote = textEncoder.encode(hs.vote);
  const buf = new Uint8Array(
    1 + varintSize(hs.term) + varintSize(hs.commit) + varintSize(vote.length) + vote.length,
  );
  buf[0] = LOG_FORMAT_VERSION;
  let pos = writeVarint(buf, 1, hs.term);
  pos = writeVarint(buf, pos, hs.commit);
  pos = writeVarint(buf, pos, vote.length);
  buf.set(vote, pos);
  return buf;
}

export function decodeHardState(buf: Uint8Array): HardState {
  const r = new Reader(buf, 'raft hard state');
  r.version();
  const term = r.varint();
  const commit = r.varint();
  const vote = r.string();
  r.end();
  return { term, vote, commit };
}

/** SnapshotMeta record: version u8 | index varint | term varint | voters string list | learners string list. */
export function encodeSnapshotMeta(meta: SnapshotMeta): Uint8Array {
  const size =
    1 +
    varintSize(meta.index) +
    varintSize(meta.term) +
    stringsSize(meta.conf.voters) +
    stringsSize(meta.conf.learners);
  const buf = new Uint8Array(size);
  buf[0] = LOG_FORMAT_VERSION;
  let pos = writeVarint(buf, 1, meta.index);
  pos = writeVarint(buf, pos, meta.term);
  pos = writeStrings(buf, pos, meta.conf.voters);
  writeStrings(buf, pos, meta.conf.learners);
  return buf;
}

export function decodeSnapshotMeta(buf: Uint8Array): SnapshotMeta {
  const r = new Reader(buf, 'raft snapshot meta');
  r.version();
  const index = r.varint();
  const term = r.varint();
  const voters = readStrings(r);
  const learners = readStrings(r);
  r.end();
  return { index, term, conf: { voters, learners } };
}

/** A single varint record (version u8 | value varint), used for the first index. */
export function encodeUint(n: number): Uint8Array {
  const buf = new Uint8Array(1 + varintSize(n));
  buf[0] = LOG_FORMAT_VERSION;
  writeVarint(buf, 1, n);
  return buf;
}

export function decodeUint(buf: Uint8Array, what: string): number {
  const r = new Reader(buf, what);
  r.version();
  const n = r.varint();
  r.end();
  return n;
}

export function cloneConf(conf: ConfState): ConfState {
  return { voters: [...conf.voters], learners: [...conf.learners] };
}
