/**
 * Typed errors with stable codes. `code` is the category a client acts on (and the only thing the
 * status mapping in ./status.ts looks at); `reason` is a stable, more specific machine-readable cause;
 * the message is for humans and may change.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'NOT_LEADER'
  | 'UNAVAILABLE'
  | 'RESOURCE_EXHAUSTED'
  | 'DEADLINE_EXCEEDED'
  | 'FAILED_PRECONDITION'
  | 'DATA_CORRUPTION'
  | 'CLOSED'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'INTERNAL';

export interface ErrorDetails {
  /** The request field (dotted path) that is wrong, for INVALID_ARGUMENT. */
  field?: string;
  /** When a retry may succeed, in ms (RESOURCE_EXHAUSTED, UNAVAILABLE). */
  retryAfterMs?: number;
  /** Node id of the current leader, for NOT_LEADER. */
  leaderHint?: string;
  [key: string]: unknown;
}

export class TidemarkError extends Error {
  readonly code: ErrorCode;
  readonly reason: string;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, reason: string, message: string, details: ErrorDetails = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'TidemarkError';
    this.code = code;
    this.reason = reason;
    this.details = details;
  }

  get field(): string | undefined {
    return this.details.field;
  }

  get retryAfterMs(): number | undefined {
    return this.details.retryAfterMs;
  }

  toJSON(): { code: ErrorCode; reason: string; message: string; details: ErrorDetails } {
    return { code: this.code, reason: this.reason, message: this.message, details: this.details };
  }
}

export function invalidArgument(reason: string, field: string, message: string): TidemarkError {
  return new TidemarkError('INVALID_ARGUMENT', reason, message, { field });
}

export function dataCorruption(
  reason: string,
  message: string,
  details: ErrorDetails = {},
  cause?: unknown,
): TidemarkError {
  return new TidemarkError('DATA_CORRUPTION', reason, message, details, cause);
}

export function resourceExhausted(reason: string, message: string, retryAfterMs: number): TidemarkError {
  return new TidemarkError('RESOURCE_EXHAUSTED', reason, message, { retryAfterMs });
}

export function notLeader(
  leaderHint: string | undefined,
  message = 'this replica is not the leader',
): TidemarkError {
  return new TidemarkError(
    'NOT_LEADER',
    'not_leader',
    message,
    leaderHint === undefined ? {} : { leaderHint },
  );
}

/**
 * The request may or may not have taken effect (e.g. a proposal was in the log when its leader lost
 * leadership). Writes are idempotent (last write wins per series and timestamp), so a retry is safe;
 * checkers must treat the operation as indeterminate, not failed.
 */
export function outcomeUnknown(message: string, details: ErrorDetails = {}): TidemarkError {
  return new TidemarkError('UNAVAILABLE', 'outcome_unknown', message, details);
}

/** No valid credentials (missing, malformed, expired or badly signed token). The reason says which. */
export function unauthenticated(reason: string, message: string): TidemarkError {
  return new TidemarkError('UNAUTHENTICATED', reason, message);
}

/** Valid credentials without the role the operation needs. */
export function permissionDenied(required: string, message: string): TidemarkError {
  return new TidemarkError('PERMISSION_DENIED', 'permission_denied', message, { requiredRole: required });
}

export function closed(what: string): TidemarkError {
  return new TidemarkError('CLOSED', 'closed', `${what} is closed`);
}

export function isTidemarkError(err: unknown, code?: ErrorCode): err is TidemarkError {
  return err instanceof TidemarkError && (code === undefined || err.code === code);
}
