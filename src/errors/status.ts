import { type ErrorCode, TidemarkError } from './errors.js';

/** gRPC status codes (numeric values from the gRPC spec; kept here so this module has no grpc-js import). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
  PERMISSION_DENIED: 7,
} as const;

/** The one place an error code becomes a transport status. */
const table: Record<ErrorCode, { grpc: number; http: number }> = {
  INVALID_ARGUMENT: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400 },
  NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404 },
  // A client that gets NOT_LEADER retries against details.leaderHint; 421 "Misdirected Request" says the same in HTTP.
  NOT_LEADER: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 421 },
  UNAVAILABLE: { grpc: GrpcStatus.UNAVAILABLE, http: 503 },
  RESOURCE_EXHAUSTED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 429 },
  DEADLINE_EXCEEDED: { grpc: GrpcStatus.DEADLINE_EXCEEDED, http: 504 },
  FAILED_PRECONDITION: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409 },
  DATA_CORRUPTION: { grpc: GrpcStatus.DATA_LOSS, http: 500 },
  CLOSED: { grpc: GrpcStatus.UNAVAILABLE, http: 503 },
  UNAUTHENTICATED: { grpc: GrpcStatus.UNAUTHENTICATED, http: 401 },
  PERMISSION_DENIED: { grpc: GrpcStatus.PERMISSION_DENIED, http: 403 },
  INTERNAL: { grpc: GrpcStatus.INTERNAL, http: 500 },
};

export function toGrpcStatus(err: unknown): number {
  return err instanceof TidemarkError ? table[err.code].grpc : GrpcStatus.INTERNAL;
}

export function toHttpStatus(err: unknown): number {
  return err instanceof TidemarkError ? table[err.code].http : 500;
}

/** HTTP headers that carry the retry hint (Retry-After is whole seconds by RFC 9110). */
export function retryHeaders(err: unknown): Record<string, string> {
  if (!(err instanceof TidemarkError) || err.details.retryAfterMs === undefined) return {};
  return { 'retry-after': String(Math.max(1, Math.ceil(err.details.retryAfterMs / 1000))) };
}

/**
 * One item's error inside a batch answer (ShardQueryService.ExecuteBatch, PeerService.ForwardBatch), where
 * each item fails or succeeds on its own: the code, reason and message, and the details as UTF-8 JSON.
 */
export interface ItemError {
  errorCode: string;
  errorReason: string;
  errorMessage: string;
  errorDetails: Uint8Array;
}

export function toItemError(err: unknown): ItemError {
  const e =
    err instanceof TidemarkError
      ? err
      : new TidemarkError('INTERNAL', 'item_failed', String((err as Error)?.message ?? err));
  return {
    errorCode: e.code,
    errorReason: e.reason,
    errorMessage: e.message,
    errorDetails: new TextEncoder().encode(JSON.stringify(e.details)),
  };
}

/** The TidemarkError of an item whose errorCode is set (an unknown code from a newer peer is INTERNAL). */
export function fromItemError(e: ItemError): TidemarkError {
  let details: Record<string, unknown> = {};
  try {
    if (e.errorDetails.length > 0) details = JSON.parse(new TextDecoder().decode(e.errorDetails));
  } catch {
    details = {};
  }
  const code = (e.errorCode in table ? e.errorCode : 'INTERNAL') as ErrorCode;
  return new TidemarkError(code, e.errorReason, e.errorMessage, details);
}
