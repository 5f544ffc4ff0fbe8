/**
 * Chunk encoder. Validates input (INVALID_ARGUMENT), codes timestamps as delta-of-delta, and picks
 * the value encoding per chunk: Constant when every value has the same bit pattern, otherwise the
 * smaller of Gorilla and Decimal (when Decimal applies exactly). Sizes compared are exact, so a chunk
 * is never larger than its Gorilla encoding.
 *
 * Scratch buffers are module-level and reused: encoding allocates only the output array (and two
 * small typed-array views).
 */
import { BitWriter, HI, LO, u32View } from './bits.js';
import { CHUNK_HEADER_SIZE, ENCODINGS, Encoding, MAX_CHUNK_SAMPLES, MAX_TIMESTAMP } from './constants.js';
import {
  chosenDecimalBias,
  chosenDecimalOrder,
  decimalCost,
  decimalMantissas,
  writeDecimal,
} from './decimal.js';
import { badInput } from './errors.js';
import { writeGorilla } from './gorilla.js';
import { writeHeader } from './header.js';
import { writeTimestamps } from './timestamps.js';

export interface EncodeOptions {
  /**
   * Force a value encoding (e.g. Gorilla to measure the baseline). Throws INVALID_ARGUMENT when the
   * forced encoding cannot represent the values exactly (Decimal on non-decimals, Constant on
   * non-constant values). Default: smallest.
   */
  encoding?: Encoding;
}

const tsWriter = new BitWriter();
const valWriter = new BitWriter();
let zScratch = new Float64Array(1024);
let mScratch = new Float64Array(1024);
let vScratch = new Float64Array(1024);

function ensureScratch(n: number): void {
  if (zScratch.length < n) {
    const size = Math.max(n, zScratch.length * 2);
    zScratch = new Float64Array(size);
    mScratch = new Float64Array(size);
    vScratch = new Float64Array(size);
  }
}

function validate(ts: ArrayLike<number>, vals: ArrayLike<number>, count: number): void {
  if (!Number.isInteger(count) || count < 1 || count > MAX_CHUNK_SAMPLES) {
    throw badInput(
      'bad_count',
      'count',
      `count must be an integer in [1, ${MAX_CHUNK_SAMPLES}], got ${count}`,
    );
  }
  if (ts == null || typeof ts.length !== 'number' || ts.length < count) {
    throw badInput('count_mismatch', 'ts', `ts holds fewer than count (${count}) timestamps`);
  }
  if (vals == null || typeof vals.length !== 'number' || vals.length < count) {
    throw badInput('count_mismatch', 'vals', `vals holds fewer than count (${count}) values`);
  }
  let prev = 0;
  for (let i = 0; i < count; i++) {
    const t = ts[i];
    if (!Number.isInteger(t) || t < 0 || t > MAX_TIMESTAMP) {
      throw badInput('bad_timestamp', `ts[${i}]`, `timestamp ${t} is not an integer in [0, 2^48)`);
    }
    if (t < prev) throw badInput('decreasing_timestamp', `ts[${i}]`, `timestamp ${t} < previous ${prev}`);
    prev = t;
  }
}

function toFloat64(vals: ArrayLike<number>, count: number): Float64Array {
  if (vals instanceof Float64Array) return vals;
  const f = vScratch;
  for (let i = 0; i < count; i++) {
    const v = vals[i];
    if (typeof v !== 'number') throw badInput('bad_value', `vals[${i}]`, 'values must be numbers');
    f[i] = v;
  }
  return f;
}

function isConstant(bits: Uint32Array, count: number): boolean {
  const a = bits[0];
  const b = bits[1];
  for (let i = 1; i < count; i++) {
    if (bits[2 * i] !== a || bits[2 * i + 1] !== b) return false;
  }
  return true;
}

/**
 * Encodes samples [0, count) of ts/vals into a new chunk. ts: integer ms in [0, 2^48), non-decreasing
 * (equal timestamps allowed). vals: any float64, stored bit-exactly.
 */
export function encodeChunk(
  ts: ArrayLike<number>,
  vals: ArrayLike<number>,
  count: number,
  opts?: EncodeOptions,
): Uint8Array {
  validate(ts, vals, count);
  const forced = opts?.encoding;
  if (forced !== undefined && !ENCODINGS.includes(forced)) {
    throw badInput('bad_encoding', 'encoding', `unknown encoding ${forced}`);
  }
  ensureScratch(count);
  const f = toFloat64(vals, count);
  const bits = u32View(f, count);

  tsWriter.reset();
  writeTimestamps(tsWriter, ts, count, zScratch);
  const tsLength = tsWriter.finish();

  valWriter.reset();
  let encoding: Encoding;
  const constant = (forced === undefined || forced === Encoding.Constant) && isConstant(bits, count);
  if (forced === Encoding.Constant || (forced === undefined && constant)) {
    if (!constant) throw badInput('encoding_not_applicable', 'encoding', 'values are not constant');
    encoding = Encoding.Constant;
    valWriter.writeBits(bits[HI], 32); // 64 raw bits, high word first
    valWriter.writeBits(bits[LO], 32);
  } else if (forced === Encoding.Gorilla) {
    encoding = Encoding.Gorilla;
    writeGorilla(valWriter, bits, count);
  } else {
    const e = decimalMantissas(f, count, mScratch);
    if (e < 0) {
      if (forced === Encoding.Decimal) {
        throw badInput('encoding_not_applicable', 'encoding', 'values are not exact decimals in range');
      }
      encoding = Encoding.Gorilla;
      writeGorilla(valWriter, bits, count);
    } else {
      const decimalBytes = Math.ceil(decimalCost(mScratch, count, zScratch) / 8);
      const order = chosenDecimalOrder();
      const bias = chosenDecimalBias();
      let gorillaBytes = Number.POSITIVE_INFINITY;
      if (forced !== Encoding.Decimal) {
        writeGorilla(valWriter, bits, count);
        gorillaBytes = valWriter.finish();
      }
      encoding = Encoding.Gorilla;
      if (decimalBytes < gorillaBytes) {
        valWriter.reset();
        writeDecimal(valWriter, mScratch, count, e, order, bias, zScratch);
        encoding = Encoding.Decimal;
        // The cost model is exact, but the "never larger than Gorilla" guarantee should not rest on it.
        if (valWriter.finish() >= gorillaBytes) {
          valWriter.reset();
          writeGorilla(valWriter, bits, count);
          encoding = Encoding.Gorilla;
        }
      }
    }
  }
  const valuesLength = valWriter.finish();

  const out = new Uint8Array(CHUNK_HEADER_SIZE + tsLength + valuesLength);
  out.set(tsWriter.bytes(), CHUNK_HEADER_SIZE);
  out.set(valWriter.bytes(), CHUNK_HEADER_SIZE + tsLength);
  writeHeader(out, encoding, count, ts[0], ts[count - 1], tsLength, valuesLength);
  return out;
}
