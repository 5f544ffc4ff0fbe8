/**
 * Compressed chunk format (version 1) for the samples of one series over a time span.
 * Byte-level spec: docs/format/chunk.md.
 *
 * Public API:
 *   CHUNK_FORMAT_VERSION, CHUNK_HEADER_SIZE, MAX_CHUNK_SAMPLES, MAX_TIMESTAMP
 *   enum Encoding { Gorilla = 1, Decimal = 2, Constant = 3 }
 *   encodeChunk(ts: ArrayLike<number>, vals: ArrayLike<number>, count: number,
 *               opts?: { encoding?: Encoding }): Uint8Array
 *       Validates input (INVALID_ARGUMENT); picks the smallest value encoding unless one is forced.
 *   readChunkHeader(bytes: Uint8Array, opts?: { verifyChecksum?: boolean }): ChunkHeader
 *       Validates the header, lengths and (by default) the checksum; DATA_CORRUPTION otherwise.
 *   decodeChunk(bytes, outTs?: Float64Array, outVals?: Float64Array, opts?: { verifyChecksum?: boolean })
 *       : { count, ts, vals }   Bulk decode into reusable typed arrays (hot path).
 *   new ChunkIterator(bytes?, opts?) with reset(bytes, opts?), next(), seek(t), at(), t, v, count, err()
 *       Never throws on bad bytes: err() returns the DATA_CORRUPTION error and next()/seek() return false.
 *
 * Errors are TidemarkError: INVALID_ARGUMENT for bad encoder input, DATA_CORRUPTION (with a stable
 * `reason` such as chunk_checksum_mismatch, chunk_truncated, chunk_unsupported_version) for bad bytes.
 * Values round-trip bit-exactly (NaN payloads, -0, infinities, subnormals) through decodeChunk;
 * timestamps are integer milliseconds in [0, 2^48), non-decreasing.
 */
export {
  CHUNK_FORMAT_VERSION,
  CHUNK_HEADER_SIZE,
  Encoding,
  MAX_CHUNK_SAMPLES,
  MAX_TIMESTAMP,
} from './constants.js';
export { type DecodedChunk, decodeChunk } from './decode.js';
export { type EncodeOptions, encodeChunk } from './encode.js';
export { type ChunkHeader, type ReadOptions, readChunkHeader } from './header.js';
export { ChunkIterator, type Sample } from './iterator.js';
