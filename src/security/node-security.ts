/**
 * What a node's servers and clients use, derived once from the configuration: credentials for the peer
 * port (mutual TLS), the client gRPC port, outgoing peer channels, HTTPS options, and the authenticator.
 * No TLS configured → insecure credentials; no auth configured → no authenticator (open API).
 */
import type { DescMethod } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { NodeConfig } from '../cluster/config.js';
import { TidemarkError } from '../errors/index.js';
import { type Authenticator, loadAuthenticator } from './auth.js';
import { grpcAuthorizer } from './roles.js';
import {
  httpsOptions,
  loadTlsMaterial,
  peerChannelCredentials,
  serverCredentials,
  type TlsMaterial,
} from './tls.js';

export interface NodeSecurity {
  readonly tls: TlsMaterial | undefined;
  readonly authenticator: Authenticator | undefined;
  /** Peer port: mutual TLS (client certificates from the CA required). */
  readonly peerServer: grpc.ServerCredentials;
  /** Outgoing node-to-node channels (Raft, forwards, shard reads, store images). */
  readonly peerChannel: grpc.ChannelCredentials;
  /** Client gRPC port: TLS, client certificates only with tls.clientAuth. */
  readonly clientServer: grpc.ServerCredentials;
  /** node:https options for the HTTP API; undefined = plain HTTP. */
  readonly https: ReturnType<typeof httpsOptions> | undefined;
  /** addService hook for the client gRPC API; undefined = open. */
  readonly authorize: ((method: DescMethod, ctx: { metadata: grpc.Metadata }) => unknown) | undefined;
}

export function nodeSecurity(config: NodeConfig, now?: () => number): NodeSecurity {
  const tls = loadTlsMaterial(config.tls ?? {});
  const authenticator = loadAuthenticator(
    {
      tokenFile: config.auth?.tokenFile,
      jwtHs256SecretFile: config.auth?.jwtHs256SecretFile,
      jwtRs256PublicKeyFile: config.auth?.jwtRs256PublicKeyFile,
    },
    now,
  );
  const clientAuth = config.tls?.clientAuth ?? false;
  if (clientAuth && tls === undefined) {
    throw new TidemarkError(
      'INVALID_ARGUMENT',
      'tls_incomplete',
      'tls.clientAuth needs tls.ca, tls.cert and tls.key',
      {
        field: 'tls.clientAuth',
      },
    );
  }
  return {
    tls,
    authenticator,
    peerServer: tls === undefined ? grpc.ServerCredentials.createInsecure() : serverCredentials(tls, true),
    peerChannel: tls === undefined ? grpc.credentials.createInsecure() : peerChannelCredentials(tls),
    clientServer:
      tls === undefined ? grpc.ServerCredentials.createInsecure() : serverCredentials(tls, clientAuth),
    https: tls === undefined ? undefined : httpsOptions(tls, clientAuth),
    authorize: authenticator === undefined ? undefined : grpcAuthorizer(authenticator),
  };
}

/**
 * A node with other peers refuses to run its peer port without TLS unless told `--insecure`: Raft traffic
 * in the clear lets anyone on the network forge votes and entries. A single node has no peer traffic.
 */
export function requireSecurePeers(config: NodeConfig): void {
  const others = config.peers.filter((p) => p.id !== config.nodeId).length;
  const hasTls = Boolean(config.tls?.ca || config.tls?.cert || config.tls?.key);
  if (others > 0 && !hasTls && config.insecure !== true) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'tls_required',
      `node ${config.nodeId} has ${others} peer(s) but no TLS: set tls.ca, tls.cert and tls.key (make them with \`tidemark certs\`, see docs/security.md), or pass --insecure (TIDEMARK_INSECURE=true) to run the peer port in the clear`,
      { field: 'tls.cert' },
    );
  }
}
