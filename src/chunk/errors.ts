import { dataCorruption, invalidArgument, type TidemarkError } from '../errors/index.js';

/** A DATA_CORRUPTION error for a chunk that fails validation. `reason` is stable; the message is not. */
export function corrupt(
  reason: string,
  message: string,
  details: Record<string, unknown> = {},
): TidemarkError {
  return dataCorruption(reason, `corrupt chunk: ${message}`, details);
}

/** An INVALID_ARGUMENT error for bad encoder input. */
export function badInput(reason: string, field: string, message: string): TidemarkError {
  return invalidArgument(reason, field, message);
}
