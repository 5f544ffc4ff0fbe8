/**
 * Chunk header: 36 bytes, little-endian.
 *
 *   off size field
 *    0   1   version        (CHUNK_FORMAT_VERSION = 1)
 *    1   1   encoding       (value encoding, see Encoding)
 *    2   2   reserved       (must be 0)
 *    4   4   count          (1..MAX_CHUNK_SAMPLES)
 *    8   8   minT           (first timestamp, < 2^48)
 *   16   8   maxT           (last timestamp, >= minT)
 *   24   4   tsLength       (bytes of the timestamp section)
 *   28   4   valuesLength   (bytes of the value section)
 *   32   4   checksum       (CRC-32 of bytes [0, 32) followed by the body)
 *   36   ... body: timestamp section, then value section; the chunk ends exactly after it.
 */
import { crc32 } from 'node:zlib';
import {
  CHUNK_FORMAT_VERSION,
  CHUNK_HEADER_SIZE,
  ENCODINGS,
  type Encoding,
  MAX_BODY_BYTES,
  MAX_CHUNK_SAMPLES,
} from './constants.js';
import { badInput, corrupt } from './errors.js';

export interface ChunkHeader {
  version: number;
  encoding: Encoding;
  count: number;
  minT: number;
  maxT: number;
  /** Byte length of the timestamp section (starts at CHUNK_HEADER_SIZE). */
  tsLength: number;
  /** Byte length of the value section (follows the timestamp section). */
  valuesLength: number;
  checksum: number;
  /** Total chunk size: CHUNK_HEADER_SIZE + tsLength + valuesLength. */
  byteLength: number;
}

export interface ReadOptions {
  /** Verify the CRC-32 (default true). Skip only for bytes already verified, e.g. a cached chunk. */
  verifyChecksum?: boolean;
}

function u32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

function setU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = v >>> 24;
}

/** Reads a u64 that must be below 2^48 (timestamps); returns -1 when the high 16 bits are set. */
function u48(b: Uint8Array, o: number): number {
  const hi = u32(b, o + 4);
  if (hi > 0xffff) return -1;
  return hi * 4294967296 + u32(b, o);
}

function setU64(b: Uint8Array, o: number, v: number): void {
  setU32(b, o, v >>> 0);
  setU32(b, o + 4, Math.floor(v / 4294967296));
}

export function computeChecksum(bytes: Uint8Array, bodyEnd: number): number {
  const c = crc32(bytes.subarray(0, 32));
  return crc32(bytes.subarray(CHUNK_HEADER_SIZE, bodyEnd), c);
}

/** Writes the header into out[0, 36) (the body must already be in place) including the checksum. */
export function writeHeader(
  out: Uint8Array,
  encoding: Encoding,
  count: number,
  minT: number,
  maxT: number,
  tsLength: number,
  valuesLength: number,
): void {
  out[0] = CHUNK_FORMAT_VERSION;
  out[1] = encoding;
  out[2] = 0;
  out[3] = 0;
  setU32(out, 4, count);
  setU64(out, 8, minT);
  setU64(out, 16, maxT);
  setU32(out, 24, tsLength);
  setU32(out, 28, valuesLength);
  setU32(out, 32, computeChecksum(out, CHUNK_HEADER_SIZE + tsLength + valuesLength));
}

/**
 * Parses and validates a chunk header: size, version, lengths, checksum (unless skipped), reserved
 * bits, encoding, count and timestamp range. Throws DATA_CORRUPTION on any inconsistency. The order
 * is deliberate: the version decides the layout, the checksum is checked before any other field is
 * trusted, so an unknown encoding with a valid checksum really means "written by a newer version".
 */
export function readChunkHeader(bytes: Uint8Array, opts?: ReadOptions): ChunkHeader {
  if (!(bytes instanceof Uint8Array)) throw badInput('not_bytes', 'bytes', 'chunk must be a Uint8Array');
  if (bytes.length < CHUNK_HEADER_SIZE) {
    throw corrupt('chunk_truncated', `chunk of ${bytes.length} bytes is shorter than its header`);
  }
  const version = bytes[0];
  if (version !== CHUNK_FORMAT_VERSION) {
    throw corrupt('chunk_unsupported_version', `unsupported chunk format version ${version}`, { version });
  }
  const tsLength = u32(bytes, 24);
  const valuesLength = u32(bytes, 28);
  const bodyLength = tsLength + valuesLength;
  if (bodyLength > MAX_BODY_BYTES) throw corrupt('chunk_bad_length', `body length ${bodyLength} too large`);
  const byteLength = CHUNK_HEADER_SIZE + bodyLength;
  if (bytes.length !== byteLength) {
    throw corrupt(
      bytes.length < byteLength ? 'chunk_truncated' : 'chunk_trailing_data',
      `chunk is ${bytes.length} bytes but its header declares ${byteLength}`,
    );
  }
  const checksum = u32(bytes, 32);
  if (opts?.verifyChecksum !== false && computeChecksum(bytes, byteLength) !== checksum) {
    throw corrupt('chunk_checksum_mismatch', 'checksum mismatch');
  }
  if (bytes[2] !== 0 || bytes[3] !== 0) throw corrupt('chunk_bad_header', 'reserved header bits set');
  const encoding = bytes[1] as Encoding;
  if (!ENCODINGS.includes(encoding)) {
    throw corrupt('chunk_unsupported_encoding', `unsupported value encoding ${encoding}`, { encoding });
  }
  const count = u32(bytes, 4);
  if (count < 1 || count > MAX_CHUNK_SAMPLES)
    throw corrupt('chunk_bad_count', `invalid sample count ${count}`);
  const minT = u48(bytes, 8);
  const maxT = u48(bytes, 16);
  if (minT < 0 || maxT < 0 || maxT < minT || (count === 1 && maxT !== minT)) {
    throw corrupt('chunk_bad_header', 'invalid timestamp range in header');
  }
  if (count === 1 ? tsLength !== 0 : tsLength * 8 < 6 + Math.ceil((count - 2) / 64)) {
    // Every timestamp after the second costs at least 1/64 bit: reject counts the data cannot hold
    // before anyone allocates output arrays for them.
    throw corrupt('chunk_bad_length', `timestamp section too short for ${count} samples`);
  }
  return { version, encoding, count, minT, maxT, tsLength, valuesLength, checksum, byteLength };
}
