/**
 * Raft entry payloads of a shard's log: a write batch (with optional replicated meta, e.g. a Kafka
 * partition offset) or a delete.
 *
 * INTERIM: the ingest layer's batch codec (src/ingest/batch-codec.ts, encodeBatch/decodeBatch) is the
 * long-term wire format for batches. Until it lands, the replica uses this minimal local codec behind the
 * `EntryCodec` interface, so swapping it is a one-line change (`ShardReplicaOptions.codec`). The two
 * formats must not be mixed within one log: the first byte is a version that the decoder checks.
 *
 * Layout (version 1; numbers little-endian, strings u32 length + UTF-8):
 *   u8 version = 1, u8 kind (1 = batch, 2 = delete), u32 nMeta, nMeta × (str key, u32 len, bytes)
 *   batch:  u32 nSeries, nSeries × (str metric, u32 nTags, nTags × (str name, str value)),
 *           u32 n, n × u32 seriesRef, n × f64 timestamp, n × f64 value
 *   delete: str metric, u32 nMatchers, nMatchers × (str name, str op, str value), f64 minT, f64 maxT
 *           (NaN = not given)
 * Series are encoded as given (not canonicalized), so an invalid series reaches the store, which
 * rejects it deterministically on every replica.
 */
import { dataCorruption, TidemarkError } from '../errors/index.js';
import type { Series } from '../model/index.js';
import type { DeleteRequest, Matcher, MatchOp, SampleBatch } from '../storage/index.js';

export type ShardCommand =
  | { kind: 'batch'; batch: SampleBatch; meta?: Record<string, Uint8Array> }
  | { kind: 'delete'; request: DeleteRequest; meta?: Record<string, Uint8Array> };

export interface EntryCodec {
  encode(cmd: ShardCommand): Uint8Array;
  /** Throws DATA_CORRUPTION for a malformed payload, FAILED_PRECONDITION for an unknown version. */
  decode(data: Uint8Array): ShardCommand;
}

const VERSION = 1;
const KIND_BATCH = 1;
const KIND_DELETE = 2;

/** Meta key under which a batch records the Kafka offset of its partition (value: u64 BE offset). */
export function kafkaOffsetKey(partition: number): string {
  return `kafka/${partition}`;
}

/** Meta entry {kafka/<partition>: offset as u64 BE}. */
export function kafkaMeta(partition: number, offset: number): Record<string, Uint8Array> {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(offset), 0);
  return { [kafkaOffsetKey(partition)]: new Uint8Array(b) };
}

/** Reads a kafkaMeta value back. */
export function decodeKafkaOffset(v: Uint8Array | undefined): number | undefined {
  if (v === undefined || v.length !== 8) return undefined;
  return Number(Buffer.from(v.buffer, v.byteOffset, 8).readBigUInt64BE(0));
}

const utf8 = new TextEncoder();
const utf8d = new TextDecoder('utf-8', { fatal: true });

class Writer {
  private buf = Buffer.allocUnsafe(256);
  private pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
  }

  f64(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  str(s: string): void {
    const b = utf8.encode(String(s));
    this.u32(b.length);
    this.bytes(b);
  }

  finish(): Uint8Array {
    return new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.pos).slice();
  }
}

class Reader {
  private pos = 0;
  private readonly view: DataView;

  constructor(private readonly b: Uint8Array) {
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  private need(n: number): void {
    if (this.pos + n > this.b.length)
      throw dataCorruption('entry_truncated', 'raft entry payload is truncated');
  }

  u8(): number {
    this.need(1);
    return this.b[this.pos++]!;
  }

  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  f64(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  bytes(n: number): Uint8Array {
    this.need(n);
    const v = this.b.slice(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  str(): string {
    const n = this.u32();
    this.need(n);
    try {
      return utf8d.decode(this.b.subarray(this.pos, this.pos + n));
    } catch (err) {
      throw dataCorruption('entry_invalid_utf8', 'raft entry payload has invalid UTF-8', {}, err);
    } finally {
      this.pos += n;
    }
  }

  /** n elements of `width` bytes, copied to an aligned buffer. */
  column(n: number, width: number): ArrayBuffer {
    this.need(n * width);
    const out = new ArrayBuffer(n * width);
    new Uint8Array(out).set(this.b.subarray(this.pos, this.pos + n * width));
    this.pos += n * width;
    return out;
  }

  end(): void {
    if (this.pos !== this.b.length)
      throw dataCorruption('entry_trailing_bytes', 'raft entry payload has trailing bytes');
  }
}

const OPS: readonly MatchOp[] = ['=', '!=', '=~', '!~'];
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function encode(cmd: ShardCommand): Uint8Array {
  const w = new Writer();
  w.u8(VERSION);
  w.u8(cmd.kind === 'batch' ? KIND_BATCH : KIND_DELETE);
  const meta = cmd.meta ? Object.entries(cmd.meta) : [];
  w.u32(meta.length);
  for (const [k, v] of meta) {
    w.str(k);
    w.u32(v.length);
    w.bytes(v);
  }
  if (cmd.kind === 'batch') {
    const b = cmd.batch;
    w.u32(b.series.length);
    for (const s of b.series) {
      w.str(s.metric);
      const tags = Object.entries(s.tags ?? {});
      w.u32(tags.length);
      for (const [k, v] of tags) {
        w.str(k);
        w.str(v);
      }
    }
    const n = b.length;
    w.u32(n);
    if (LITTLE_ENDIAN) {
      w.bytes(new Uint8Array(b.seriesRef.buffer, b.seriesRef.byteOffset, n * 4));
      w.bytes(new Uint8Array(b.timestamps.buffer, b.timestamps.byteOffset, n * 8));
      w.bytes(new Uint8Array(b.values.buffer, b.values.byteOffset, n * 8));
    } else {
      for (let i = 0; i < n; i++) w.u32(b.seriesRef[i]!);
      for (let i = 0; i < n; i++) w.f64(b.timestamps[i]!);
      for (let i = 0; i < n; i++) w.f64(b.values[i]!);
    }
  } else {
    const r = cmd.request;
    w.str(r.metric);
    const ms = r.matchers ?? [];
    w.u32(ms.length);
    for (const m of ms) {
      w.str(m.name);
      w.str(m.op);
      w.str(m.value);
    }
    w.f64(r.minT ?? Number.NaN);
    w.f64(r.maxT ?? Number.NaN);
  }
  return w.finish();
}

function decode(data: Uint8Array): ShardCommand {
  const r = new Reader(data);
  const version = r.u8();
  if (version !== VERSION) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'entry_version_unsupported',
      `raft entry payload has version ${version}; this build reads version ${VERSION}`,
      { version },
    );
  }
  const kind = r.u8();
  const nMeta = r.u32();
  let meta: Record<string, Uint8Array> | undefined;
  for (let i = 0; i < nMeta; i++) {
    const k = r.str();
    const v = r.bytes(r.u32());
    meta ??= {};
    meta[k] = v;
  }
  if (kind === KIND_BATCH) {
    const nSeries = r.u32();
    const series: Series[] = [];
    for (let i = 0; i < nSeries; i++) {
      const metric = r.str();
      const nTags = r.u32();
      const tags: Record<string, string> = {};
      for (let j = 0; j < nTags; j++) {
        const k = r.str();
        tags[k] = r.str();
      }
      series.push({ metric, tags });
    }
    const n = r.u32();
    let seriesRef: Uint32Array;
    let timestamps: Float64Array;
    let values: Float64Array;
    if (LITTLE_ENDIAN) {
      seriesRef = new Uint32Array(r.column(n, 4));
      timestamps = new Float64Array(r.column(n, 8));
      values = new Float64Array(r.column(n, 8));
    } else {
      seriesRef = new Uint32Array(n);
      timestamps = new Float64Array(n);
      values = new Float64Array(n);
      for (let i = 0; i < n; i++) seriesRef[i] = r.u32();
      for (let i = 0; i < n; i++) timestamps[i] = r.f64();
      for (let i = 0; i < n; i++) values[i] = r.f64();
    }
    r.end();
    const batch: SampleBatch = { series, seriesRef, timestamps, values, length: n };
    return meta ? { kind: 'batch', batch, meta } : { kind: 'batch', batch };
  }
  if (kind === KIND_DELETE) {
    const metric = r.str();
    const nm = r.u32();
    const matchers: Matcher[] = [];
    for (let i = 0; i < nm; i++) {
      const name = r.str();
      const op = r.str() as MatchOp;
      if (!OPS.includes(op)) throw dataCorruption('entry_invalid_op', `unknown matcher op ${op}`);
      matchers.push({ name, op, value: r.str() });
    }
    const minT = r.f64();
    const maxT = r.f64();
    r.end();
    const request: DeleteRequest = { metric, matchers };
    if (!Number.isNaN(minT)) request.minT = minT;
    if (!Number.isNaN(maxT)) request.maxT = maxT;
    return meta ? { kind: 'delete', request, meta } : { kind: 'delete', request };
  }
  throw dataCorruption('entry_unknown_kind', `unknown raft entry kind ${kind}`);
}

/** The interim local codec (see the file comment). */
export const localEntryCodec: EntryCodec = { encode, decode };
