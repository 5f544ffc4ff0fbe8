/**
 * Timestamp section: delta-of-delta. t[0] is the header's minT (not repeated here). With
 * delta[i] = t[i] - t[i-1], the section holds (when count >= 2) delta[1] as a 6-bit length L (<= 48)
 * plus L bits, then the block-adaptive Rice stream of the count-2 residuals
 * zigzag(delta[i] - delta[i-1]) for i >= 2. A regular series has dod = 0 everywhere, so each block of
 * 64 samples costs one bit. (delta[1] is kept out of the Rice stream so its size does not distort the
 * first block's parameter.) A one-sample chunk has an empty section.
 */
import { type BitReader, type BitWriter, bitLength, unzigzag, zigzag } from './bits.js';
import { corrupt } from './errors.js';
import { RiceDecoder, writeRice } from './rice.js';

/** Writes the section for validated timestamps ts[0, count); z is scratch. */
export function writeTimestamps(w: BitWriter, ts: ArrayLike<number>, count: number, z: Float64Array): void {
  if (count < 2) return;
  let prevT = ts[1];
  let prevDelta = prevT - ts[0];
  const len = bitLength(prevDelta);
  w.writeBits(len, 6);
  w.writeBitsN(prevDelta, len);
  for (let i = 2; i < count; i++) {
    const t = ts[i];
    const delta = t - prevT;
    z[i - 2] = zigzag(delta - prevDelta); // |dod| < 2^48, exact
    prevDelta = delta;
    prevT = t;
  }
  writeRice(w, z, count - 2);
}

const rice = new RiceDecoder();

/**
 * Decodes `count` timestamps into out[0, count). Every step is range-checked (deltas never negative,
 * no timestamp past maxT, the last equals maxT) so arithmetic stays exact and corrupt data is caught.
 */
export function readTimestamps(
  r: BitReader,
  count: number,
  minT: number,
  maxT: number,
  out: Float64Array,
): void {
  let t = minT;
  out[0] = t;
  if (count < 2) {
    if (t !== maxT) throw corrupt('chunk_bad_timestamp', 'one-sample chunk with minT != maxT');
    r.expectEnd('timestamp');
    return;
  }
  const len = r.readBits(6);
  if (len > 48) throw corrupt('chunk_bad_timestamp', 'first delta too long');
  let delta = r.readBitsN(len);
  t += delta;
  if (t > maxT) throw corrupt('chunk_bad_timestamp', 'timestamp past the header maxT');
  out[1] = t;
  rice.init(r, count - 2);
  // The residuals first, in bulk, into out[2, count); then each becomes its timestamp in place.
  rice.readInto(out, 2, count - 2);
  for (let i = 2; i < count; i++) {
    delta += unzigzag(out[i]!);
    if (delta < 0) throw corrupt('chunk_bad_timestamp', 'decreasing timestamp');
    t += delta;
    if (t > maxT) throw corrupt('chunk_bad_timestamp', 'timestamp past the header maxT');
    out[i] = t;
  }
  if (t !== maxT) throw corrupt('chunk_bad_timestamp', 'last timestamp differs from the header maxT');
  r.expectEnd('timestamp');
}
