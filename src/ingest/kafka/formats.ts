/**
 * Decoding one Kafka record (the value bytes) in the topic's format, atomically: a record is either
 * wholly good (all its samples go into the batch) or bad (none do, and it goes to the dead-letter topic
 * whole, so fixing and re-producing it cannot duplicate or lose part of it). Pure; reuses the HTTP
 * parsers, so a record means exactly what the same body means on /write or /api/put.
 */
import { isTidemarkError } from '../../errors/index.js';
import type { SampleBatch } from '../../storage/store.js';
import { type DecodedWrite, decodeWriteRequest } from '../../transport/write-codec.js';
import { BatchBuilder } from '../batch.js';
import { parseLineProtocol } from '../line-protocol.js';
import { parseOpenTsdbPut } from '../opentsdb.js';
import type { KafkaFormat } from './config.js';

export interface DecodeOptions {
  /**
   * The record's Kafka timestamp (ms): the default for line-protocol lines without one. Using the record's
   * own time (never the clock) keeps a re-read record identical to its first reading.
   */
  recordTimestampMs: number;
  precision?: 'ns' | 'us' | 'ms' | 's' | 'm' | 'h';
  separator?: string;
}

export type DecodeResult =
  | { ok: true; batch: SampleBatch }
  | {
      ok: false;
      /** Stable cause, e.g. `line_invalid`, `json_invalid`, `protobuf_invalid`. */
      reason: string;
      message: string;
    };

export type DecodeIntoResult = { ok: true; samples: number } | { ok: false; reason: string; message: string };

// Per-record builders start small: records are typically a few lines to a few thousand.
const RECORD_LIMITS = { initialCapacity: 64 };

function fail(reason: string, message: string): { ok: false; reason: string; message: string } {
  return { ok: false, reason, message };
}

/** Decodes one record's value into a batch of its own. Never throws for bad input (only for a bug). */
export function decodeRecord(
  format: KafkaFormat,
  value: Uint8Array | null | undefined,
  options: DecodeOptions,
): DecodeResult {
  const builder = new BatchBuilder(RECORD_LIMITS);
  const r = decodeRecordInto(format, value, builder, options);
  return r.ok ? { ok: true, batch: builder.build() } : r;
}

/**
 * Decodes one record's value straight into `builder` (the hot path: no per-record batch, series
 * deduplicated once). On failure the builder may hold part of the record: the caller removes the samples
 * past its length before the call (see truncateBatch). Never throws for bad input.
 */
export function decodeRecordInto(
  format: KafkaFormat,
  value: Uint8Array | null | undefined,
  builder: BatchBuilder,
  options: DecodeOptions,
): DecodeIntoResult {
  if (value === null || value === undefined || value.length === 0) {
    return fail('record_empty', 'the record has no value');
  }
  const f = format === 'auto' ? detectFormat(value) : format;
  try {
    switch (f) {
      case 'influx':
        return decodeInflux(value, builder, options);
      case 'opentsdb':
        return decodeOpenTsdb(value, builder);
      case 'protobuf':
        return decodeProtobuf(value, builder);
    }
  } catch (err) {
    if (isTidemarkError(err)) return fail(err.reason, err.message);
    throw err;
  }
}

/**
 * The `auto` format's choice for one record: JSON starts with `{` or `[` (after whitespace) → OpenTSDB;
 * a protobuf WriteRequest starts with 0x0a (field 1 `batch`, length-delimited) → protobuf; anything else
 * is line protocol. So in `auto` topics a line-protocol record must not start with a blank line.
 */
export function detectFormat(value: Uint8Array): 'influx' | 'opentsdb' | 'protobuf' {
  if (value[0] === 0x0a) return 'protobuf';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) continue;
    return c === 0x7b || c === 0x5b ? 'opentsdb' : 'influx';
  }
  return 'influx';
}

function decodeInflux(value: Uint8Array, builder: BatchBuilder, o: DecodeOptions): DecodeIntoResult {
  const now = Math.trunc(o.recordTimestampMs);
  const res = parseLineProtocol(value, {
    now: Math.max(now, 0),
    precision: o.precision ?? 'ns',
    separator: o.separator ?? '_',
    maxErrors: 1,
    builder,
  });
  if (res.rejected > 0) {
    const e = res.errors[0];
    const where = e === undefined ? '' : `line ${e.line}: `;
    return fail(
      e?.reason ?? 'line_invalid',
      `${res.rejected} of ${res.lines} lines rejected; ${where}${e?.message ?? ''}`,
    );
  }
  return { ok: true, samples: res.samples };
}

function decodeOpenTsdb(value: Uint8Array, builder: BatchBuilder): DecodeIntoResult {
  const before = builder.length;
  const res = parseOpenTsdbPut(value, { builder });
  if (res.failed > 0) {
    const e = res.errors[0];
    return fail(
      'datapoint_invalid',
      `${res.failed} of ${res.failed + res.success} datapoints rejected; first: ${e?.error ?? ''}`,
    );
  }
  return { ok: true, samples: builder.length - before };
}

function decodeProtobuf(value: Uint8Array, b: BatchBuilder): DecodeIntoResult {
  // The gRPC Write's decoder (src/transport/write-codec.ts): the same validation, no message objects.
  let decoded: DecodedWrite;
  try {
    decoded = decodeWriteRequest(value);
  } catch (err) {
    if (isTidemarkError(err) && err.reason === 'request_malformed')
      return fail('protobuf_invalid', err.message);
    throw err;
  }
  const { batch } = decoded;
  // A record that does not fit throws the builder's batch_too_many_* (the ingester retries it alone).
  appendBatch(b, batch);
  return { ok: true, samples: batch.length };
}

/**
 * A new builder holding the first `length` samples of `builder` (series no kept sample uses are dropped):
 * how a bad record's partial samples are taken back out. O(length), and bad records are rare.
 */
export function truncateBatch(builder: BatchBuilder, length: number): BatchBuilder {
  const out = new BatchBuilder({ maxSamples: builder.maxSamples, maxSeries: builder.maxSeries });
  const b = builder.build();
  appendBatch(out, { ...b, length: Math.min(length, b.length) });
  return out;
}

/** Appends every sample of `batch` to `into` (series deduplicated by the builder). */
export function appendBatch(into: BatchBuilder, batch: SampleBatch): void {
  const n = batch.length;
  if (n === 0) return;
  into.ensureRoom(n);
  const refs = new Int32Array(batch.series.length).fill(-1);
  const sr = batch.seriesRef;
  const ts = batch.timestamps;
  const vs = batch.values;
  for (let i = 0; i < n; i++) {
    const local = sr[i]!;
    let r = refs[local]!;
    if (r < 0) {
      r = into.ref(batch.series[local]!);
      refs[local] = r;
    }
    into.addRef(r, ts[i]!, vs[i]!);
  }
}
