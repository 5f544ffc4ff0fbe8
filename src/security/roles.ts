/**
 * The role each client-API operation needs. A gRPC method missing from the table needs admin, so a new RPC
 * is closed until someone decides its role (test/security/roles.test.ts lists every TidemarkService method).
 */
import type { DescMethod } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import type { Authenticator, Principal, Role } from './auth.js';

/** TidemarkService methods by local name. */
export const GRPC_METHOD_ROLES: Readonly<Record<string, Role>> = Object.freeze({
  write: 'write',
  query: 'read',
  shardMap: 'read',
  status: 'read',
  transferLeader: 'admin',
  setRetention: 'admin',
  backup: 'admin',
});

/** HTTP endpoints by path; paths not listed (health, readiness, metrics, ping) are open. */
export const HTTP_ROUTE_ROLES: Readonly<Record<string, Role>> = Object.freeze({
  '/api/put': 'write',
  '/write': 'write',
  '/api/v2/write': 'write',
  '/query': 'read',
  '/api/query': 'read',
  '/api/query/last': 'read',
  '/api/suggest': 'read',
  '/api/aggregators': 'read',
  '/api/config/filters': 'read',
  '/api/search/lookup': 'read',
  // The page at / holds no data (open); its status JSON needs read, like the gRPC Status call.
  '/api/status': 'read',
});

export function roleOfMethod(method: DescMethod): Role {
  return GRPC_METHOD_ROLES[method.localName] ?? 'admin';
}

/** An `authorize` hook for addService: the call's `authorization` metadata must carry the method's role. */
export function grpcAuthorizer(
  auth: Authenticator,
): (method: DescMethod, ctx: { metadata: grpc.Metadata }) => Principal {
  return (method, ctx) => {
    const v = ctx.metadata.get('authorization')[0];
    return auth.authorize(typeof v === 'string' ? v : undefined, roleOfMethod(method));
  };
}
