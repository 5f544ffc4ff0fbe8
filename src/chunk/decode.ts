/**
 * Bulk decoder: the hot path. Writes timestamps and values straight into caller-provided typed
 * arrays (reused across calls), with no per-sample allocation. Every read is bounds-checked and every
 * declared length/count must agree with the data; any inconsistency throws DATA_CORRUPTION.
 */
import { BitReader, HI, LO, u32View } from './bits.js';
import { CHUNK_HEADER_SIZE, Encoding } from './constants.js';
import { readDecimal } from './decimal.js';
import { corrupt } from './errors.js';
import { readGorilla } from './gorilla.js';
import { type ChunkHeader, type ReadOptions, readChunkHeader } from './header.js';
import { readTimestamps } from './timestamps.js';

export interface DecodedChunk {
  count: number;
  /** Timestamps in [0, count); the caller's outTs when it was large enough. */
  ts: Float64Array;
  /** Values in [0, count); the caller's outVals when it was large enough. */
  vals: Float64Array;
}

const reader = new BitReader();

/** Decodes the body of a chunk whose header was already validated (exposed for the iterator). */
export function decodeBody(bytes: Uint8Array, h: ChunkHeader, ts: Float64Array, vals: Float64Array): void {
  const count = h.count;
  const tsEnd = CHUNK_HEADER_SIZE + h.tsLength;
  readTimestamps(reader.init(bytes, CHUNK_HEADER_SIZE, tsEnd), count, h.minT, h.maxT, ts);
  const r = reader.init(bytes, tsEnd, h.byteLength);
  switch (h.encoding) {
    case Encoding.Gorilla:
      readGorilla(r, count, u32View(vals, count));
      break;
    case Encoding.Decimal:
      readDecimal(r, count, vals);
      break;
    case Encoding.Constant: {
      const hi = r.readBits(32);
      const lo = r.readBits(32);
      r.expectEnd('value');
      const u = u32View(vals, count);
      for (let i = 0; i < count; i++) {
        u[2 * i + HI] = hi;
        u[2 * i + LO] = lo;
      }
      break;
    }
    default:
      throw corrupt('chunk_unsupported_encoding', `unsupported value encoding ${h.encoding}`);
  }
}

/**
 * Decodes a whole chunk. outTs/outVals are used when they hold at least `count` elements, otherwise
 * new arrays are allocated (keep the returned ones to reuse them). On error the output arrays may
 * have been partly overwritten.
 */
export function decodeChunk(
  bytes: Uint8Array,
  outTs?: Float64Array,
  outVals?: Float64Array,
  opts?: ReadOptions,
): DecodedChunk {
  const h = readChunkHeader(bytes, opts);
  const count = h.count; // <= MAX_CHUNK_SAMPLES, checked before allocating
  const ts = outTs !== undefined && outTs.length >= count ? outTs : new Float64Array(count);
  const vals = outVals !== undefined && outVals.length >= count ? outVals : new Float64Array(count);
  decodeBody(bytes, h, ts, vals);
  return { count, ts, vals };
}
