/**
 * Protobuf wire primitives for the hand-written codecs of hot messages (./write-codec.ts, ./raft-frame.ts):
 * varints, length-delimited fields, skipping unknown fields as protobuf-es does. Readers throw
 * WireFormatError; each codec maps it to its own typed error.
 */

export const TWO_32 = 2 ** 32;
const TWO_28 = 2 ** 28;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export function varintSize(v: number): number {
  // v: a length (< 2^31).
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Bytes of an int64 varint of an integer in [-2^53, 2^53]; negative values take the full 10. */
export function int64Size(v: number): number {
  if (v < 0) return 10;
  if (v < TWO_28) return varintSize(v);
  // Four bytes carry the low 28 bits; the rest (< 2^25 for v <= 2^53) is a small varint.
  if (v <= MAX_SAFE) return 4 + varintSize(Math.floor(v / TWO_28));
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

export function fieldSize(payload: number): number {
  return 1 + varintSize(payload) + payload;
}

export function writeVarint(buf: Buffer, pos: number, v: number): number {
  while (v >= 0x80) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

export function writeInt64(buf: Buffer, pos: number, v: number): number {
  if (v < 0) {
    // Two's complement over 64 bits, as protobuf writes a negative int64 (always 10 bytes).
    let lo = v % TWO_32;
    let hi = Math.floor(v / TWO_32);
    if (lo < 0) lo += TWO_32;
    hi = (hi + TWO_32) % TWO_32;
    for (let i = 0; i < 9; i++) {
      buf[pos++] = (lo & 0x7f) | 0x80;
      lo = (lo >>> 7) | ((hi & 0x7f) << 25);
      hi >>>= 7;
    }
    buf[pos++] = lo & 0x01;
    return pos;
  }
  if (v < TWO_28) return writeVarint(buf, pos, v);
  if (v > MAX_SAFE) {
    while (v >= TWO_32) {
      buf[pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    return writeVarint(buf, pos, v);
  }
  // Millisecond timestamps land here: the low 28 bits as four continued bytes, then the rest, in int ops.
  const hi = Math.floor(v / TWO_28);
  let lo = v - hi * TWO_28;
  buf[pos++] = (lo & 0x7f) | 0x80;
  lo >>>= 7;
  buf[pos++] = (lo & 0x7f) | 0x80;
  lo >>>= 7;
  buf[pos++] = (lo & 0x7f) | 0x80;
  lo >>>= 7;
  buf[pos++] = lo | 0x80;
  return writeVarint(buf, pos, hi);
}

export const VARINT = 0;
export const I64 = 1;
export const LEN = 2;
export const I32 = 5;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes that are not valid protobuf; each codec turns it into its own typed error. */
export class WireFormatError extends Error {}

export function malformed(message: string): WireFormatError {
  return new WireFormatError(message);
}

/** Reads a varint below 2^32 (a length or a key); throws on overflow or EOF. */
export function readLen(b: Uint8Array, pos: number, end: number): [number, number] {
  let v = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (pos >= end) throw malformed('premature end of data');
    const byte = b[pos++]!;
    v += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) {
      if (v > 0x7fffffff) throw malformed('length too large');
      return [v, pos];
    }
  }
  throw malformed('invalid varint');
}

/** The end of the varint starting at pos. */
export function skipVarint(b: Uint8Array, pos: number, end: number): number {
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw malformed('premature end of data');
    if (b[pos++]! < 0x80) return pos;
  }
  throw malformed('invalid varint');
}

const START_GROUP = 3;
const END_GROUP = 4;

/** Skips an unknown field's value (groups too, as protobuf-es does); returns the position after it. */
export function skipField(
  b: Uint8Array,
  pos: number,
  end: number,
  wireType: number,
  field = 0,
  depth = 0,
): number {
  switch (wireType) {
    case START_GROUP:
      if (depth > 100) throw malformed('groups nested too deeply');
      for (;;) {
        const [key, p] = readKey(b, pos, end);
        if ((key & 7) === END_GROUP) {
          if (key >>> 3 !== field) throw malformed('invalid end group tag');
          return p;
        }
        pos = skipField(b, p, end, key & 7, key >>> 3, depth + 1);
      }
    case VARINT:
      return skipVarint(b, pos, end);
    case I64:
      pos += 8;
      break;
    case LEN: {
      const [len, p] = readLen(b, pos, end);
      pos = p + len;
      break;
    }
    case I32:
      pos += 4;
      break;
    default:
      throw malformed(`unsupported wire type ${wireType}`);
  }
  if (pos > end) throw malformed('premature end of data');
  return pos;
}

/**
 * Skips a field this message does not know. A known field number (1..known) with another wire type than its
 * own is refused: protobuf-es would misread it, so no two readers could agree on what it meant.
 */
export function skipUnknown(b: Uint8Array, pos: number, end: number, key: number, known: number): number {
  if (key >>> 3 <= known) throw malformed(`field ${key >>> 3} has wire type ${key & 7}`);
  return skipField(b, pos, end, key & 7, key >>> 3);
}

/** A field key (field number > 0). */
export function readKey(b: Uint8Array, pos: number, end: number): [number, number] {
  const r = readLen(b, pos, end);
  if (r[0] >>> 3 === 0) throw malformed('field number 0');
  return r;
}

/** A field's LEN payload: [start, end). */
export function lenField(b: Uint8Array, pos: number, end: number): [number, number] {
  const [len, p] = readLen(b, pos, end);
  if (p + len > end) throw malformed('premature end of data');
  return [p, p + len];
}

/** An int64 varint at pos as a number (rounded like Number(bigint) beyond 2^53); [value, next]. */
export function readInt64(b: Uint8Array, pos: number, end: number): [number, number] {
  let lo = 0;
  let hi = 0;
  let byte = 0;
  let i = 0;
  for (; i < 4; i++) {
    if (pos >= end) throw malformed('premature end of data');
    byte = b[pos++]!;
    lo |= (byte & 0x7f) << (7 * i);
    if (byte < 0x80) return [lo >>> 0, pos];
  }
  // Byte 5 holds bits 28..34: four low bits finish lo, three start hi.
  if (pos >= end) throw malformed('premature end of data');
  byte = b[pos++]!;
  lo |= (byte & 0x0f) << 28;
  hi = (byte & 0x7f) >> 4;
  if (byte >= 0x80) {
    for (i = 0; i < 5; i++) {
      if (pos >= end) throw malformed('premature end of data');
      byte = b[pos++]!;
      hi |= (byte & 0x7f) << (7 * i + 3);
      if (byte < 0x80) break;
    }
    if (byte >= 0x80) throw malformed('invalid varint');
  }
  lo >>>= 0;
  hi >>>= 0;
  // int64: the top bit is the sign (two's complement).
  return [hi >= 0x80000000 ? (hi - TWO_32) * TWO_32 + lo : hi * TWO_32 + lo, pos];
}

/**
 * Decodes the packed int64 varints of b[start, end) into out[j...] and returns the next j: readInt64's values
 * without a result tuple per varint (the timestamps of every write go through here). The range must have
 * passed countVarints, which bounds every varint to 10 bytes and ends the last one at `end`.
 */
export function readPackedInt64s(
  b: Uint8Array,
  start: number,
  end: number,
  out: Float64Array,
  j: number,
): number {
  let pos = start;
  while (pos < end) {
    let byte = b[pos++]!;
    if (byte < 0x80) {
      out[j++] = byte;
      continue;
    }
    let lo = byte & 0x7f;
    let shift = 7;
    for (; shift < 28; shift += 7) {
      byte = b[pos++]!;
      lo |= (byte & 0x7f) << shift;
      if (byte < 0x80) break;
    }
    if (byte < 0x80) {
      out[j++] = lo >>> 0;
      continue;
    }
    // Byte 5 holds bits 28..34: four low bits finish lo, three start hi.
    byte = b[pos++]!;
    lo |= (byte & 0x0f) << 28;
    let hi = (byte & 0x7f) >> 4;
    for (let i = 0; byte >= 0x80 && i < 5; i++) {
      byte = b[pos++]!;
      hi |= (byte & 0x7f) << (7 * i + 3);
    }
    lo >>>= 0;
    hi >>>= 0;
    out[j++] = hi >= 0x80000000 ? (hi - TWO_32) * TWO_32 + lo : hi * TWO_32 + lo;
  }
  return j;
}

export function countVarints(b: Uint8Array, start: number, end: number): number {
  let n = 0;
  let run = 0;
  for (let i = start; i < end; i++) {
    if (b[i]! < 0x80) {
      n++;
      run = 0;
    } else if (++run >= 10) {
      throw malformed('invalid varint');
    }
  }
  if (run > 0) throw malformed('premature end of data');
  return n;
}

export function readString(b: Uint8Array, start: number, end: number): string {
  try {
    return utf8.decode(b.subarray(start, end));
  } catch {
    throw malformed('a string is not valid UTF-8');
  }
}

export function writeString(
  buf: Buffer,
  pos: number,
  key: number,
  s: string,
  bytes = Buffer.byteLength(s),
): number {
  buf[pos++] = key;
  pos = writeVarint(buf, pos, bytes);
  return pos + buf.write(s, pos, bytes, 'utf8');
}
