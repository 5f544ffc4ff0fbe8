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
