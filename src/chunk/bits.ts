/**
 * Bit-level I/O for the chunk format. Bits are written MSB-first into a byte stream.
 *
 * JS bitwise operators work on 32 bits, so every field wider than 32 bits goes through two 32-bit
 * halves (or exact Math arithmetic for values < 2^53); nothing here ever applies `|`, `<<`, `>>` to a
 * value that may exceed 2^32.
 */
import { LITTLE_ENDIAN } from '../util/endian.js';
import { corrupt } from './errors.js';

const TWO_32 = 4294967296;

/** A growable MSB-first bit writer. Reused across chunks (call reset()) so encoding does not allocate. */
export class BitWriter {
  buf: Uint8Array;
  /** Bytes already flushed to buf. */
  pos = 0;
  /** Pending bits, right-aligned in the low `accBits` bits. */
  private acc = 0;
  private accBits = 0;

  constructor(initialBytes = 4096) {
    this.buf = new Uint8Array(initialBytes);
  }

  reset(): void {
    this.pos = 0;
    this.acc = 0;
    this.accBits = 0;
  }

  /** Total bits written so far. */
  get bitLength(): number {
    return this.pos * 8 + this.accBits;
  }

  private out32(w: number): void {
    if (this.pos + 4 > this.buf.length) this.grow(4);
    const b = this.buf;
    const p = this.pos;
    b[p] = w >>> 24;
    b[p + 1] = (w >>> 16) & 0xff;
    b[p + 2] = (w >>> 8) & 0xff;
    b[p + 3] = w & 0xff;
    this.pos = p + 4;
  }

  private grow(need: number): void {
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + need + 64));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** Writes the low `n` bits of `v` (0 <= n <= 32; v must be < 2^n, as an unsigned 32-bit value). */
  writeBits(v: number, n: number): void {
    if (n === 0) return;
    const free = 32 - this.accBits;
    if (n < free) {
      this.acc = (this.acc << n) | v;
      this.accBits += n;
      return;
    }
    // n >= free: fill the accumulator to 32 bits, flush, keep the remainder.
    const rest = n - free;
    // free === 32 only when accBits === 0 (and then n === 32): `acc << 32` would be a no-op in JS.
    const word = free === 32 ? v : (this.acc << free) | (v >>> rest);
    this.out32(word >>> 0);
    this.acc = rest === 0 ? 0 : v & (0xffffffff >>> (32 - rest));
    this.accBits = rest;
  }

  writeBit(b: number): void {
    this.writeBits(b, 1);
  }

  /** Writes an unsigned integer v < 2^n, 0 <= n <= 53 (exact for any safe integer). */
  writeBitsN(v: number, n: number): void {
    if (n <= 32) {
      this.writeBits(v >>> 0, n);
    } else {
      this.writeBits(Math.floor(v / TWO_32), n - 32);
      this.writeBits(v >>> 0, 32); // ToUint32 is `v mod 2^32`, exact for safe integers
    }
  }

  /** Pads with zero bits to a byte boundary, flushes, and returns the number of bytes written. */
  finish(): number {
    let bits = this.accBits;
    const acc = this.acc;
    if (this.pos + 4 > this.buf.length) this.grow(4);
    while (bits >= 8) {
      bits -= 8;
      this.buf[this.pos++] = (acc >>> bits) & 0xff;
    }
    if (bits > 0) {
      this.buf[this.pos++] = (acc << (8 - bits)) & 0xff;
    }
    this.acc = 0;
    this.accBits = 0;
    return this.pos;
  }

  /** The bytes written (valid after finish()). A view, not a copy. */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

/**
 * A bounds-checked MSB-first bit reader over `buf[startByte, endByte)`. Consuming a bit past the end
 * throws DATA_CORRUPTION; it never silently returns zeros.
 */
export class BitReader {
  buf: Uint8Array = new Uint8Array(0);
  /** Absolute bit position in buf. */
  pos = 0;
  /** Absolute bit limit (exclusive). */
  end = 0;

  init(buf: Uint8Array, startByte: number, endByte: number): this {
    this.buf = buf;
    this.pos = startByte * 8;
    this.end = endByte * 8;
    return this;
  }

  /** The next 32 bits without consuming them; bits beyond the buffer read as 0 (and cannot be consumed). */
  peek32(): number {
    const b = this.buf;
    const p = this.pos >>> 3;
    const o = this.pos & 7;
    if (p + 4 < b.length) {
      const w = (b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
      return o === 0 ? w >>> 0 : ((w << o) | (b[p + 4] >>> (8 - o))) >>> 0;
    }
    const len = b.length;
    const b0 = p < len ? b[p] : 0;
    const b1 = p + 1 < len ? b[p + 1] : 0;
    const b2 = p + 2 < len ? b[p + 2] : 0;
    const b3 = p + 3 < len ? b[p + 3] : 0;
    const b4 = p + 4 < len ? b[p + 4] : 0;
    const w = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3;
    return o === 0 ? w >>> 0 : ((w << o) | (b4 >>> (8 - o))) >>> 0;
  }

  /** Reads n bits (0 <= n <= 32) as an unsigned number. */
  readBits(n: number): number {
    if (n === 0) return 0;
    if (this.pos + n > this.end)
      throw corrupt('chunk_truncated', 'bit stream ends before the data it declares');
    const w = this.peek32();
    this.pos += n;
    return n === 32 ? w : w >>> (32 - n);
  }

  /** Consumes n bits already inspected with peek32(). */
  skip(n: number): void {
    if (this.pos + n > this.end)
      throw corrupt('chunk_truncated', 'bit stream ends before the data it declares');
    this.pos += n;
  }

  readBit(): number {
    return this.readBits(1);
  }

  /** Reads an unsigned integer of n bits, 0 <= n <= 53. */
  readBitsN(n: number): number {
    if (n <= 32) return this.readBits(n);
    const hi = this.readBits(n - 32);
    return hi * TWO_32 + this.readBits(32);
  }

  /**
   * Checks that the stream is fully consumed: fewer than 8 bits remain and they are zero padding.
   * Catches length/count fields that disagree with the data.
   */
  expectEnd(what: string): void {
    const rem = this.end - this.pos;
    if (rem >= 8 || rem < 0) throw corrupt('chunk_trailing_data', `${what} section has trailing data`);
    if (rem > 0 && this.readBits(rem) !== 0)
      throw corrupt('chunk_bad_padding', `${what} padding bits not zero`);
  }
}

/** Zigzag for safe integers (|v| < 2^52): 0,-1,1,-2,... -> 0,1,2,3,... Plain arithmetic, no 32-bit ops. */
export function zigzag(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}

export function unzigzag(z: number): number {
  // 32-bit integer operations below 2^32 (the usual residual); exact float arithmetic above.
  if (z < TWO_32) return (z >>> 1) ^ -(z & 1);
  return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
}

/** Number of significant bits of a non-negative integer < 2^53 (0 for 0). */
export function bitLength(v: number): number {
  if (v < TWO_32) return 32 - Math.clz32(v);
  return 64 - Math.clz32(Math.floor(v / TWO_32));
}

/** Float64 <-> two uint32 halves. Index of the low/high half in a Uint32Array view of a Float64Array. */
export { LITTLE_ENDIAN };
export const LO = LITTLE_ENDIAN ? 0 : 1;
export const HI = LITTLE_ENDIAN ? 1 : 0;

/** A Uint32Array over the same memory as `f` (its first `count` doubles), for bit-exact access. */
export function u32View(f: Float64Array, count: number): Uint32Array {
  return new Uint32Array(f.buffer, f.byteOffset, count * 2);
}
