/**
 * Gorilla XOR value encoding (Pelkonen et al., VLDB 2015), on raw float64 bit patterns so every
 * value (NaN payloads, -0, infinities, subnormals) round-trips bit-exactly.
 *
 * First value: 64 raw bits (high word first). Then x = bits(v[i]) XOR bits(v[i-1]):
 *   x == 0                                   -> '0'
 *   x fits the previous (lead, trail) window  -> '10' + (64 - lead - trail) bits of x >> trail
 *   otherwise                                 -> '11' + 5-bit lead (capped at 31) + 6-bit significant
 *                                                length (64 encoded as 0) + that many bits of x >> trail
 * 64-bit quantities are handled as two uint32 halves.
 */
import { type BitReader, type BitWriter, HI, LO } from './bits.js';
import { corrupt } from './errors.js';

function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Writes values given as uint32 halves: bits[2i+LO], bits[2i+HI]. */
export function writeGorilla(w: BitWriter, bits: Uint32Array, count: number): void {
  let ph = bits[HI];
  let pl = bits[LO];
  w.writeBits(ph, 32);
  w.writeBits(pl, 32);
  let prevLead = -1;
  let prevTrail = 0;
  for (let i = 1; i < count; i++) {
    const h = bits[2 * i + HI];
    const l = bits[2 * i + LO];
    const xh = (h ^ ph) >>> 0;
    const xl = (l ^ pl) >>> 0;
    ph = h;
    pl = l;
    if (xh === 0 && xl === 0) {
      w.writeBits(0, 1);
      continue;
    }
    let lead = xh !== 0 ? Math.clz32(xh) : 32 + Math.clz32(xl);
    const trail = xl !== 0 ? ctz32(xl) : 32 + ctz32(xh);
    if (lead > 31) lead = 31;
    let sig: number;
    let t: number;
    if (prevLead >= 0 && lead >= prevLead && trail >= prevTrail) {
      w.writeBits(2, 2);
      t = prevTrail;
      sig = 64 - prevLead - prevTrail;
    } else {
      t = trail;
      sig = 64 - lead - trail;
      w.writeBits((3 << 11) | (lead << 6) | (sig & 63), 13); // '11', lead, length in one write
      prevLead = lead;
      prevTrail = trail;
    }
    // (xh:xl) >> t, then write its low `sig` bits.
    let sh: number;
    let sl: number;
    if (t === 0) {
      sh = xh;
      sl = xl;
    } else if (t >= 32) {
      sh = 0;
      sl = xh >>> (t - 32);
    } else {
      sh = xh >>> t;
      sl = ((xl >>> t) | (xh << (32 - t))) >>> 0;
    }
    if (sig > 32) {
      w.writeBits(sh, sig - 32);
      w.writeBits(sl, 32);
    } else {
      w.writeBits(sl, sig);
    }
  }
}

/** Decodes `count` values into out (a uint32 view of the destination float64s). */
export function readGorilla(r: BitReader, count: number, out: Uint32Array): void {
  let h = r.readBits(32);
  let l = r.readBits(32);
  out[HI] = h;
  out[LO] = l;
  let lead = -1;
  let sig = 0;
  for (let i = 1; i < count; i++) {
    // One peek decodes the whole control prefix ('0', '10', or '11' + lead + length = 13 bits).
    const w = r.peek32();
    if (w >>> 31 === 0) {
      r.skip(1);
    } else {
      let ctl: number;
      if ((w & 0x40000000) !== 0) {
        ctl = 13;
        lead = (w >>> 25) & 31;
        sig = (w >>> 19) & 63;
        if (sig === 0) sig = 64;
        if (lead + sig > 64) throw corrupt('chunk_bad_gorilla', 'Gorilla window exceeds 64 bits');
      } else {
        if (lead < 0) throw corrupt('chunk_bad_gorilla', 'Gorilla window reused before one was set');
        ctl = 2;
      }
      let xh: number;
      let xl: number;
      if (ctl + sig <= 32) {
        // Control bits and payload in the one peek.
        r.skip(ctl + sig);
        xh = 0;
        xl = (w << ctl) >>> (32 - sig);
      } else {
        r.skip(ctl);
        if (sig > 32) {
          xh = r.readBits(sig - 32);
          xl = r.readBits(32);
        } else {
          xh = 0;
          xl = r.readBits(sig);
        }
      }
      const t = 64 - lead - sig;
      if (t >= 32) {
        xh = xl << (t - 32);
        xl = 0;
      } else if (t > 0) {
        xh = (xh << t) | (xl >>> (32 - t));
        xl = xl << t;
      }
      h = (h ^ xh) >>> 0;
      l = (l ^ xl) >>> 0;
    }
    out[2 * i + HI] = h;
    out[2 * i + LO] = l;
  }
  r.expectEnd('value');
}
