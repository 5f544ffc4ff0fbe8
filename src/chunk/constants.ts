/** Format constants shared by the encoder, decoder and docs/format/chunk.md. */

export const CHUNK_FORMAT_VERSION = 1;

/** Value encodings (header byte 1). Timestamps always use the same delta-of-delta code. */
export enum Encoding {
  /** Gorilla XOR of consecutive float64 bit patterns; works for every value, the baseline. */
  Gorilla = 1,
  /** Values scaled by 10^E to integers, then order-0/1/2 differences coded with block-adaptive Rice. */
  Decimal = 2,
  /** Every value has the same 64-bit pattern; stored once. */
  Constant = 3,
}

export const ENCODINGS: readonly Encoding[] = [Encoding.Gorilla, Encoding.Decimal, Encoding.Constant];

/** Fixed header size in bytes. */
export const CHUNK_HEADER_SIZE = 36;

/** Most samples in one chunk; the decoder refuses larger counts before allocating anything. */
export const MAX_CHUNK_SAMPLES = 65535;

/** Largest timestamp the format accepts (2^48 - 1 ms, about year 10889). */
export const MAX_TIMESTAMP = 2 ** 48 - 1;

/**
 * Upper bound on body bytes for a valid chunk (generous: about 21 bytes per sample at the maximum
 * count); anything larger is corrupt, so a tampered length can never make a reader walk a huge buffer.
 */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;
