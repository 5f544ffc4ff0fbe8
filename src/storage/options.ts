import { MAX_CHUNK_SAMPLES } from '../chunk/index.js';
import { invalidArgument } from '../errors/index.js';

/** Store options, validated once at the boundary (open / constructor). */
export interface StoreOptions {
  /** A head chunk seals when it holds this many samples. Larger compresses better. */
  sealSamples: number;
  /** A head chunk seals before accepting a sample this far (ms) past its first sample. */
  sealSpanMs: number;
  /** Samples up to this far (ms) behind the newest accepted sample of their series are accepted. */
  oooWindowMs: number;
  /** applyRetention(now) drops samples older than now - retentionMs; 0 keeps everything. */
  retentionMs: number;
  /** Checkpoint after this many write-ahead records... */
  checkpointRecords: number;
  /** ...or this many write-ahead bytes, whichever comes first. */
  checkpointBytes: number;
}

export const DEFAULT_STORE_OPTIONS: Readonly<StoreOptions> = Object.freeze({
  sealSamples: 1024,
  sealSpanMs: 2 * 3600_000,
  oooWindowMs: 3600_000,
  retentionMs: 0,
  checkpointRecords: 2000,
  checkpointBytes: 64 * 1024 * 1024,
});

const LIMITS: Record<keyof StoreOptions, [number, number]> = {
  sealSamples: [1, Math.floor(MAX_CHUNK_SAMPLES / 2)],
  sealSpanMs: [1, 366 * 86_400_000],
  oooWindowMs: [0, 366 * 86_400_000],
  retentionMs: [0, Number.MAX_SAFE_INTEGER],
  checkpointRecords: [1, 1_000_000_000],
  checkpointBytes: [1, Number.MAX_SAFE_INTEGER],
};

/** Fills defaults and validates; throws INVALID_ARGUMENT naming the field (`options.<name>`). */
export function resolveStoreOptions(input?: Partial<StoreOptions>): StoreOptions {
  if (input !== undefined && (input === null || typeof input !== 'object')) {
    throw invalidArgument('options_invalid', 'options', 'store options must be an object');
  }
  const out: StoreOptions = { ...DEFAULT_STORE_OPTIONS };
  for (const [name, value] of Object.entries(input ?? {})) {
    if (!Object.hasOwn(LIMITS, name)) {
      throw invalidArgument(
        'option_unknown',
        `options.${name}`,
        `unknown store option ${JSON.stringify(name)}`,
      );
    }
    if (value === undefined) continue;
    const [lo, hi] = LIMITS[name as keyof StoreOptions];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi) {
      throw invalidArgument(
        'option_invalid',
        `options.${name}`,
        `options.${name} must be an integer in [${lo}, ${hi}], got ${String(value)}`,
      );
    }
    out[name as keyof StoreOptions] = value;
  }
  return out;
}
