import { describe, expect, it } from 'vitest';
import {
  GrpcStatus,
  invalidArgument,
  notLeader,
  resourceExhausted,
  retryHeaders,
  TidemarkError,
  toGrpcStatus,
  toHttpStatus,
} from '../../src/errors/index.js';

describe('error status mapping', () => {
  it('maps codes to gRPC and HTTP status', () => {
    const bad = invalidArgument('metric_empty', 'series[0].metric', 'metric name is empty');
    expect(toGrpcStatus(bad)).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(toHttpStatus(bad)).toBe(400);
    const busy = resourceExhausted('queue_full', 'proposal queue is full', 250);
    expect(toGrpcStatus(busy)).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(toHttpStatus(busy)).toBe(429);
    expect(retryHeaders(busy)).toEqual({ 'retry-after': '1' });
    const nl = notLeader('node-2');
    expect(nl.details.leaderHint).toBe('node-2');
    expect(toHttpStatus(nl)).toBe(421);
  });

  it('treats unknown errors as internal', () => {
    expect(toGrpcStatus(new Error('boom'))).toBe(GrpcStatus.INTERNAL);
    expect(toHttpStatus('nope')).toBe(500);
    expect(retryHeaders(new Error('x'))).toEqual({});
  });

  it('serializes to a stable JSON shape', () => {
    const e = new TidemarkError('UNAVAILABLE', 'no_quorum', 'shard 3 has no quorum', { retryAfterMs: 1500 });
    expect(JSON.parse(JSON.stringify(e))).toEqual({
      code: 'UNAVAILABLE',
      reason: 'no_quorum',
      message: 'shard 3 has no quorum',
      details: { retryAfterMs: 1500 },
    });
    expect(retryHeaders(e)).toEqual({ 'retry-after': '2' });
  });
});
