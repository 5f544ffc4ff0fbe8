import xxhash from 'xxhash-wasm';

// Top-level await: the WASM module loads once at import, so hashing is synchronous everywhere else.
const hasher = await xxhash();

/** xxh64 of `bytes` with `seed`, as an unsigned 64-bit bigint. */
export function h64Raw(bytes: Uint8Array, seed: bigint): bigint {
  return hasher.h64Raw(bytes, seed);
}
