/**
 * The one place a TidemarkError crosses gRPC, both ways. The status code comes from src/errors/status.ts
 * (`toGrpcStatus`); the error itself (code, reason, message, details) travels as JSON in the binary
 * trailing-metadata entry `tidemark-error-bin`, so the client rebuilds an equal TidemarkError
 * (leaderHint, retryAfterMs, field included). A status without the trailer (from grpc-js itself: deadline,
 * connection loss, message size, or from a foreign server) is mapped from its status code.
 */
import { Metadata, type ServiceError, type StatusObject, status } from '@grpc/grpc-js';
import { type ErrorCode, TidemarkError, toGrpcStatus } from '../errors/index.js';

/** Binary trailer carrying the JSON-encoded TidemarkError. */
export const ERROR_TRAILER = 'tidemark-error-bin';

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'NOT_LEADER',
  'UNAVAILABLE',
  'RESOURCE_EXHAUSTED',
  'DEADLINE_EXCEEDED',
  'FAILED_PRECONDITION',
  'DATA_CORRUPTION',
  'CLOSED',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'INTERNAL',
]);

/** Server side: any thrown value to the status a handler ends its call with. Unknown errors → INTERNAL. */
export function toGrpcError(err: unknown): Partial<StatusObject> & { code: number; details: string } {
  const te =
    err instanceof TidemarkError
      ? err
      : new TidemarkError('INTERNAL', 'internal', err instanceof Error ? err.message : String(err));
  const metadata = new Metadata();
  metadata.set(ERROR_TRAILER, Buffer.from(JSON.stringify(te.toJSON()), 'utf8'));
  return { code: toGrpcStatus(te), details: te.message, metadata };
}

/** Client side: a failed call's error to a TidemarkError (the server's own when it sent one). */
export function fromGrpcError(err: unknown): TidemarkError {
  if (err instanceof TidemarkError) return err;
  const se = err as Partial<ServiceError> | undefined;
  if (se === undefined || se === null || typeof se.code !== 'number') {
    return new TidemarkError('INTERNAL', 'internal', err instanceof Error ? err.message : String(err));
  }
  const trailer = se.metadata?.get(ERROR_TRAILER)[0];
  if (trailer instanceof Buffer) {
    try {
      const o = JSON.parse(trailer.toString('utf8')) as {
        code?: unknown;
        reason?: unknown;
        message?: unknown;
        details?: unknown;
      };
      if (typeof o.code === 'string' && CODES.has(o.code) && typeof o.reason === 'string') {
        const details = typeof o.details === 'object' && o.details !== null ? o.details : {};
        return new TidemarkError(
          o.code as ErrorCode,
          o.reason,
          typeof o.message === 'string' ? o.message : (se.details ?? ''),
          details as Record<string, unknown>,
        );
      }
    } catch {
      // A malformed trailer: fall back to the status code.
    }
  }
  return fromStatus(se.code, se.details ?? se.message ?? '');
}

function fromStatus(code: number, message: string): TidemarkError {
  const details = { grpcCode: code };
  switch (code) {
    case status.DEADLINE_EXCEEDED:
      return new TidemarkError('DEADLINE_EXCEEDED', 'deadline_exceeded', message, details);
    case status.UNAVAILABLE:
      return new TidemarkError('UNAVAILABLE', 'unavailable', message, details);
    case status.CANCELLED:
      return new TidemarkError('CLOSED', 'cancelled', message, details);
    case status.RESOURCE_EXHAUSTED:
      // grpc-js's own size checks ("... larger than max ...") carry no trailer.
      return new TidemarkError(
        'RESOURCE_EXHAUSTED',
        /larger than/i.test(message) ? 'message_too_large' : 'resource_exhausted',
        message,
        details,
      );
    case status.INVALID_ARGUMENT:
      return new TidemarkError('INVALID_ARGUMENT', 'invalid_argument', message, details);
    case status.NOT_FOUND:
      return new TidemarkError('NOT_FOUND', 'not_found', message, details);
    case status.FAILED_PRECONDITION:
      return new TidemarkError('FAILED_PRECONDITION', 'failed_precondition', message, details);
    case status.UNIMPLEMENTED:
      return new TidemarkError('FAILED_PRECONDITION', 'unimplemented', message, details);
    case status.UNAUTHENTICATED:
      return new TidemarkError('UNAUTHENTICATED', 'unauthenticated', message, details);
    case status.PERMISSION_DENIED:
      return new TidemarkError('PERMISSION_DENIED', 'permission_denied', message, details);
    case status.DATA_LOSS:
      return new TidemarkError('DATA_CORRUPTION', 'data_loss', message, details);
    default:
      return new TidemarkError('INTERNAL', 'internal', message, details);
  }
}
