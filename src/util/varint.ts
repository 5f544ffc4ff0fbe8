/** Unsigned LEB128 varints over JS numbers (exact up to 2^53 - 1: no 32-bit bitwise ops). */

export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Writes `n` at `pos` and returns the position after it. `buf` must have varintSize(n) bytes free. */
export function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`cannot encode ${n} as an unsigned varint`);
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}
