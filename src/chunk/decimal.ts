/**
 * Decimal value encoding, for values that are exactly decimals with at most 15 fractional digits
 * (integers, 2-decimal gauges, counters): like VictoriaMetrics, scale by 10^E to integer mantissas m,
 * then code order-0 (m[i] - m[0]), order-1 (deltas) or order-2 (delta-of-delta, for steadily growing
 * counters) residuals, zigzagged, with the block-adaptive Rice code. The order is chosen per chunk by
 * exact size.
 *
 * Reconstruction is v = m / 10^E as one IEEE-754 division (E = 0: v = m). 10^E is exact for E <= 15
 * and division is correctly rounded, so any language reproduces it; the encoder only picks this
 * encoding after checking that every value reconstructs bit-exactly (-0, NaN, +-Inf never do).
 *
 * Bit layout: 4-bit E, 2-bit order (0..2), m[0] and a bias B as fields (6-bit length L, then
 * zigzag(x) in L bits; L <= 50 for m[0], <= 51 for B), then the Rice stream of count-1 residuals,
 * each zigzag(r[i] - B) where r is the order-0/1/2 difference.
 */
import { type BitReader, type BitWriter, bitLength, unzigzag, zigzag } from './bits.js';
import { corrupt } from './errors.js';
import { RiceDecoder, riceCost, writeRice } from './rice.js';

export const DECIMAL_MAX_EXPONENT = 15;
/** |m| must stay below 2^49 so that order-2 residuals (|dod| < 2^51) and their zigzag stay exact. */
const M_LIMIT = 2 ** 49;
const D_LIMIT = 2 ** 50;

const P10 = new Float64Array(DECIMAL_MAX_EXPONENT + 1);
for (let e = 0; e <= DECIMAL_MAX_EXPONENT; e++) P10[e] = 10 ** e;

/**
 * Finds the smallest common exponent E at which every value is an exact decimal and writes the
 * mantissas to m. Returns -1 when the encoding does not apply. Bails out on the first value that has
 * no exponent at all, so non-decimal data costs about one failed search.
 */
export function decimalMantissas(vals: Float64Array, count: number, m: Float64Array): number {
  let e = 0;
  let p = 1;
  for (let i = 0; i < count; i++) {
    const v = vals[i];
    if (v === 0) {
      if (1 / v < 0) return -1; // -0 would come back as +0
      continue;
    }
    let x = Math.round(v * p);
    while (!(x / p === v && Math.abs(x) < M_LIMIT)) {
      if (++e > DECIMAL_MAX_EXPONENT) return -1;
      p = P10[e];
      x = Math.round(v * p);
    }
  }
  // Values exact at a smaller exponent are exact at E too (same rational), but verify rather than trust.
  for (let i = 0; i < count; i++) {
    const v = vals[i];
    const x = Math.round(v * p);
    if (!((e === 0 ? x : x / p) === v && Math.abs(x) < M_LIMIT)) return -1;
    m[i] = x + 0; // + 0 turns -0 into +0 (only possible for v == 0)
  }
  return e;
}

/** Residuals of the given order, minus bias, zigzagged into z[0, count-1). */
export function decimalResiduals(
  m: Float64Array,
  count: number,
  order: number,
  bias: number,
  z: Float64Array,
): void {
  if (order === 0) {
    const m0 = m[0];
    for (let i = 1; i < count; i++) z[i - 1] = zigzag(m[i] - m0 - bias);
  } else if (order === 1) {
    for (let i = 1; i < count; i++) z[i - 1] = zigzag(m[i] - m[i - 1] - bias);
  } else {
    let prevD = 0;
    for (let i = 1; i < count; i++) {
      const d = m[i] - m[i - 1];
      z[i - 1] = zigzag(d - prevD - bias);
      prevD = d;
    }
  }
}

let chosenOrder = 1;
let chosenBias = 0;

function fieldBits(v: number): number {
  return 6 + bitLength(zigzag(v));
}

/**
 * Exact encoded size in bits of the Decimal value section for the best (order, bias), which are left
 * in chosenDecimalOrder()/chosenDecimalBias(). Candidates: order 0, order 1, order 1 minus the mean
 * delta (counters growing at a steady rate with noise: cheaper than order 2, which doubles the noise),
 * order 2. z is scratch.
 */
export function decimalCost(m: Float64Array, count: number, z: Float64Array): number {
  const fixed = 4 + 2 + fieldBits(m[0]);
  let best = Number.POSITIVE_INFINITY;
  const meanDelta = count > 1 ? Math.round((m[count - 1] - m[0]) / (count - 1)) : 0;
  for (let c = 0; c < 4; c++) {
    const order = c < 2 ? c : c === 2 ? 1 : 2;
    const bias = c === 2 ? meanDelta : 0;
    if (c === 2 && bias === 0) continue;
    decimalResiduals(m, count, order, bias, z);
    const bits = riceCost(z, count - 1) + fieldBits(bias);
    if (bits < best) {
      best = bits;
      chosenOrder = order;
      chosenBias = bias;
    }
  }
  return fixed + best;
}

export function chosenDecimalOrder(): number {
  return chosenOrder;
}

export function chosenDecimalBias(): number {
  return chosenBias;
}

export function writeDecimal(
  w: BitWriter,
  m: Float64Array,
  count: number,
  exponent: number,
  order: number,
  bias: number,
  z: Float64Array,
): void {
  w.writeBits(exponent, 4);
  w.writeBits(order, 2);
  writeField(w, m[0]);
  writeField(w, bias);
  decimalResiduals(m, count, order, bias, z);
  writeRice(w, z, count - 1);
}

/** A signed integer as a 6-bit length L then zigzag(v) in L bits. */
function writeField(w: BitWriter, v: number): void {
  const z = zigzag(v);
  const len = bitLength(z);
  w.writeBits(len, 6);
  w.writeBitsN(z, len);
}

function readField(r: BitReader, maxLen: number, what: string): number {
  const len = r.readBits(6);
  if (len > maxLen) throw corrupt('chunk_bad_decimal', `${what} field too long`);
  return unzigzag(r.readBitsN(len));
}

const rice = new RiceDecoder();

function badMantissa(): Error {
  return corrupt('chunk_bad_decimal', 'decimal mantissa out of range');
}

export function readDecimal(r: BitReader, count: number, out: Float64Array): void {
  const e = r.readBits(4);
  const order = r.readBits(2);
  if (order === 3) throw corrupt('chunk_bad_decimal', 'invalid decimal order 3');
  let m = readField(r, 50, 'first mantissa');
  if (m >= M_LIMIT || m <= -M_LIMIT) throw badMantissa();
  const bias = readField(r, 51, 'bias'); // |bias| <= 2^50
  const p = P10[e];
  out[0] = e === 0 ? m : m / p;
  rice.init(r, count - 1);
  // The residuals first, in bulk, into out[1, count); then each is replaced by its value in place.
  rice.readInto(out, 1, count - 1);
  // All sums below combine values < 2^53 in magnitude and are range-checked, so they stay exact.
  // Residuals are undone in place by order; the scale (10^e) is applied in a separate pass when e > 0.
  if (order === 0) {
    const m0 = m + bias;
    for (let i = 1; i < count; i++) {
      const v = m0 + unzigzag(out[i]!);
      if (v >= M_LIMIT || v <= -M_LIMIT) throw badMantissa();
      out[i] = v;
    }
  } else if (order === 1) {
    for (let i = 1; i < count; i++) {
      m += unzigzag(out[i]!) + bias;
      if (m >= M_LIMIT || m <= -M_LIMIT) throw badMantissa();
      out[i] = m;
    }
  } else {
    let d = 0;
    for (let i = 1; i < count; i++) {
      d += unzigzag(out[i]!) + bias;
      if (d >= D_LIMIT || d <= -D_LIMIT) throw badMantissa();
      m += d;
      if (m >= M_LIMIT || m <= -M_LIMIT) throw badMantissa();
      out[i] = m;
    }
  }
  if (e !== 0) for (let i = 1; i < count; i++) out[i] = out[i]! / p;
  r.expectEnd('value');
}
