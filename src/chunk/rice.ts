/**
 * Block-adaptive Rice code for streams of non-negative integers (zigzagged residuals), shared by the
 * timestamp section and the Decimal value encoding.
 *
 * Residuals are grouped in blocks of RICE_BLOCK. Each block starts with a parameter code:
 * `0` = same code as the previous block (the first block's "previous" is 0), or `1` + 6-bit code.
 * Code 0..52 is the Rice parameter k; code 63 means every residual of the block is 0 (no more bits);
 * code 62 is a sparse block: a 6-bit count n (1..63) of non-zero residuals, then for each, in
 * increasing position order, its 6-bit position in the block, a 6-bit length L (1..53) and the
 * residual in L bits; all other residuals are 0. Codes 53..61 are invalid.
 * A residual z with k: q = floor(z / 2^k); if q < RICE_ESC: q one-bits, a zero bit, then the k low
 * bits of z; otherwise RICE_ESC one-bits, a 6-bit length L (<= 53), then z in L bits.
 * Per-block k adapts to bursts without the cost of a full adaptive scheme; the escape bounds the
 * worst case for outliers (e.g. the first delta, a counter reset); sparse blocks make rarely
 * changing counters and occasional timestamp jitter cheap.
 */
import { type BitReader, type BitWriter, bitLength } from './bits.js';
import { corrupt } from './errors.js';

export const RICE_BLOCK = 64;
export const RICE_ESC = 16;
export const RICE_MAX_K = 52;
export const RICE_ZERO_BLOCK = 63;
export const RICE_SPARSE_BLOCK = 62;
/** Sparse blocks are only priced when they have at most this many non-zero residuals. */
const SPARSE_MAX = 24;

const POW2 = new Float64Array(54);
const INV_POW2 = new Float64Array(54);
for (let k = 0; k < 54; k++) {
  POW2[k] = 2 ** k;
  INV_POW2[k] = 2 ** -k;
}

function bodyCost(z: Float64Array, from: number, to: number, k: number): number {
  const inv = INV_POW2[k];
  let bits = 0;
  for (let i = from; i < to; i++) {
    const v = z[i];
    const q = Math.floor(v * inv); // exact: scaling by a power of two
    bits += q < RICE_ESC ? q + 1 + k : RICE_ESC + 6 + bitLength(v);
  }
  return bits;
}

/** Chosen by chooseCode alongside its return value (avoids allocating a result object). */
let chosenBits = 0;

/** Picks the cheapest block code given the previous block's code; sets chosenBits to its total cost. */
function chooseCode(z: Float64Array, from: number, to: number, prevCode: number): number {
  let sum = 0;
  let max = 0;
  let nonZero = 0;
  for (let i = from; i < to; i++) {
    const v = z[i];
    sum += v;
    if (v > max) max = v;
    if (v !== 0) nonZero++;
  }
  if (sum === 0) {
    chosenBits = prevCode === RICE_ZERO_BLOCK ? 1 : 7;
    return RICE_ZERO_BLOCK;
  }
  // Near-optimal k for a geometric source is about log2(mean) - 0.5: price k-1, k, k+1 exactly in
  // one pass (q at k and k+1 follow from q at k-1 by halving), then the previous block's k if it is
  // outside that window (its header costs 1 bit instead of 7).
  // The mean leaves out the largest residual: one outlier (the first delta of a stream, a counter
  // reset) must not push k up for the whole block; it goes through the escape instead.
  const mean = to - from > 1 ? (sum - max) / (to - from - 1) : sum;
  let kb = mean < 2 ? 1 : bitLength(Math.floor(mean)) - 1;
  if (kb > RICE_MAX_K - 1) kb = RICE_MAX_K - 1;
  const ka = kb - 1;
  const kc = kb + 1;
  const invA = INV_POW2[ka];
  let qSum = 0; // sum of q at ka over non-outliers
  let qSumB = 0;
  let qSumC = 0;
  let fast = 0;
  let slowA = 0;
  let slowB = 0;
  let slowC = 0;
  for (let i = from; i < to; i++) {
    const v = z[i];
    const a = Math.floor(v * invA);
    if (a < RICE_ESC) {
      qSum += a;
      qSumB += a >>> 1;
      qSumC += a >>> 2;
      fast++;
    } else {
      const esc = RICE_ESC + 6 + bitLength(v);
      slowA += esc;
      const b = Math.floor(a / 2);
      slowB += b < RICE_ESC ? b + 1 + kb : esc;
      const c = Math.floor(a / 4);
      slowC += c < RICE_ESC ? c + 1 + kc : esc;
    }
  }
  let best = ka;
  let bestBits = qSum + fast * (ka + 1) + slowA + (ka === prevCode ? 1 : 7);
  const bitsB = qSumB + fast * (kb + 1) + slowB + (kb === prevCode ? 1 : 7);
  if (bitsB < bestBits) {
    best = kb;
    bestBits = bitsB;
  }
  const bitsC = qSumC + fast * (kc + 1) + slowC + (kc === prevCode ? 1 : 7);
  if (bitsC < bestBits) {
    best = kc;
    bestBits = bitsC;
  }
  if (prevCode <= RICE_MAX_K && (prevCode < ka || prevCode > kc)) {
    const bits = bodyCost(z, from, to, prevCode) + 1;
    if (bits < bestBits) {
      best = prevCode;
      bestBits = bits;
    }
  }
  if (nonZero <= SPARSE_MAX) {
    let bits = (prevCode === RICE_SPARSE_BLOCK ? 1 : 7) + 6 + nonZero * 12;
    for (let i = from; i < to; i++) if (z[i] !== 0) bits += bitLength(z[i]);
    if (bits < bestBits) {
      best = RICE_SPARSE_BLOCK;
      bestBits = bits;
    }
  }
  chosenBits = bestBits;
  return best;
}

/** Exact size in bits that writeRice would produce for z[0, n). */
export function riceCost(z: Float64Array, n: number): number {
  let bits = 0;
  let prev = 0;
  for (let from = 0; from < n; from += RICE_BLOCK) {
    const to = Math.min(n, from + RICE_BLOCK);
    prev = chooseCode(z, from, to, prev);
    bits += chosenBits;
  }
  return bits;
}

export function writeRice(w: BitWriter, z: Float64Array, n: number): void {
  let prev = 0;
  for (let from = 0; from < n; from += RICE_BLOCK) {
    const to = Math.min(n, from + RICE_BLOCK);
    const code = chooseCode(z, from, to, prev);
    if (code === prev) {
      w.writeBits(0, 1);
    } else {
      w.writeBits(1, 1);
      w.writeBits(code, 6);
    }
    prev = code;
    if (code === RICE_ZERO_BLOCK) continue;
    if (code === RICE_SPARSE_BLOCK) {
      let n = 0;
      for (let i = from; i < to; i++) if (z[i] !== 0) n++;
      w.writeBits(n, 6);
      for (let i = from; i < to; i++) {
        const v = z[i];
        if (v === 0) continue;
        const len = bitLength(v);
        w.writeBits(((i - from) << 6) | len, 12);
        w.writeBitsN(v, len);
      }
      continue;
    }
    const k = code;
    const p = POW2[k];
    for (let i = from; i < to; i++) {
      const v = z[i];
      const q = Math.floor(v / p);
      if (q < RICE_ESC) {
        // q ones then a zero: (2^(q+1) - 2) in q+1 bits; q+1 <= 16 so the shift is safe.
        w.writeBits((1 << (q + 1)) - 2, q + 1);
        w.writeBitsN(v - q * p, k);
      } else {
        w.writeBits(0xffff, RICE_ESC);
        const len = bitLength(v);
        w.writeBits(len, 6);
        w.writeBitsN(v, len);
      }
    }
  }
}

/** Streaming decoder for a Rice stream of a known number of residuals. */
export class RiceDecoder {
  private r!: BitReader;
  private remaining = 0;
  private left = 0;
  private code = 0;
  /** Residuals of the current sparse block, and the read index into it. */
  private readonly sparse = new Float64Array(RICE_BLOCK);
  private sparseIdx = 0;

  init(r: BitReader, n: number): void {
    this.r = r;
    this.remaining = n;
    this.left = 0;
    this.code = 0;
  }

  private startBlock(): void {
    const r = this.r;
    if (this.remaining <= 0) throw corrupt('chunk_internal', 'read past the declared residual count');
    if (r.readBits(1) === 1) {
      const code = r.readBits(6);
      if (code > RICE_MAX_K && code !== RICE_ZERO_BLOCK && code !== RICE_SPARSE_BLOCK) {
        throw corrupt('chunk_bad_rice_code', `invalid Rice block code ${code}`);
      }
      this.code = code;
    }
    const len = Math.min(this.remaining, RICE_BLOCK);
    this.left = len;
    this.remaining -= len;
    if (this.code === RICE_SPARSE_BLOCK) {
      const sp = this.sparse;
      sp.fill(0);
      this.sparseIdx = 0;
      const n = r.readBits(6);
      if (n === 0 || n > len) throw corrupt('chunk_bad_rice_code', 'bad sparse block count');
      let last = -1;
      for (let j = 0; j < n; j++) {
        const pos = r.readBits(6);
        const bits = r.readBits(6);
        if (pos <= last || pos >= len) throw corrupt('chunk_bad_rice_code', 'bad sparse block position');
        if (bits === 0 || bits > 53) throw corrupt('chunk_bad_rice_code', 'bad sparse residual length');
        sp[pos] = r.readBitsN(bits);
        last = pos;
      }
    }
  }

  /**
   * Decodes the next n residuals into out[off, off + n): the same as n calls of next(), with the common
   * case (a Rice residual whose unary prefix and remainder fit one 32-bit window, away from the end of
   * the buffer) in a tight loop over local state; anything else (escapes, long codes, the last bytes,
   * corrupt data) goes through next(), which checks and throws exactly as before.
   */
  readInto(out: Float64Array, off: number, n: number): void {
    const r = this.r;
    let i = off;
    const stop = off + n;
    while (i < stop) {
      if (this.left === 0) this.startBlock();
      const k = this.code;
      const m = Math.min(this.left, stop - i);
      if (k > RICE_MAX_K) {
        if (k === RICE_ZERO_BLOCK) out.fill(0, i, i + m);
        else for (let j = 0; j < m; j++) out[i + j] = this.sparse[this.sparseIdx++];
        this.left -= m;
        i += m;
        continue;
      }
      const buf = r.buf;
      const end = r.end;
      const lastSafe = buf.length - 5; // byte p with p + 4 < buf.length: a 40-bit window in bounds
      const pk = POW2[k];
      const sh = 32 - k;
      let pos = r.pos;
      let j = 0;
      // w holds the next `valid` bits at pos, left-aligned, zeros below: short codes are cut from one
      // 32-bit load several at a time. Bits below `valid` are 0, so the unary run (leading ones) stops at
      // `valid` at most and a code that does not fit shows as len > valid, which reloads at pos.
      let w = 0;
      let valid = 0;
      for (; j < m; j++) {
        let q = Math.clz32(~w);
        let len = q + 1 + k;
        if (len > valid) {
          const p = pos >>> 3;
          if (p > lastSafe) break;
          const o = pos & 7;
          w = (buf[p] << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3];
          if (o !== 0) w = (w << o) | (buf[p + 4] >>> (8 - o));
          valid = 32;
          q = Math.clz32(~w);
          len = q + 1 + k;
          if (len > 32) break;
        }
        if (q >= RICE_ESC || pos + len > end) break;
        out[i + j] = k === 0 ? q : q * pk + ((w << (q + 1)) >>> sh);
        pos += len;
        valid -= len;
        w = len === 32 ? 0 : w << len;
      }
      r.pos = pos;
      this.left -= j;
      i += j;
      if (j < m) out[i++] = this.next(); // this.left > 0: next() stays in this block
    }
  }

  next(): number {
    if (this.left === 0) this.startBlock();
    this.left--;
    const k = this.code;
    if (k > RICE_MAX_K) return k === RICE_ZERO_BLOCK ? 0 : this.sparse[this.sparseIdx++];
    const r = this.r;
    // Fast path: unary prefix and remainder in one 32-bit peek.
    const w = r.peek32();
    const q = Math.clz32(~w);
    let z: number;
    if (q < RICE_ESC) {
      const n = q + 1 + k;
      if (n <= 32) {
        r.skip(n);
        return k === 0 ? q : q * POW2[k] + ((w << (q + 1)) >>> (32 - k));
      }
      r.skip(q + 1);
      z = q * POW2[k] + r.readBitsN(k);
    } else {
      r.skip(RICE_ESC);
      const len = r.readBits(6);
      if (len > 53) throw corrupt('chunk_bad_rice_escape', `escaped residual of ${len} bits`);
      z = r.readBitsN(len);
    }
    if (z > Number.MAX_SAFE_INTEGER) throw corrupt('chunk_bad_residual', 'residual exceeds 2^53');
    return z;
  }
}
