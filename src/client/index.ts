/** The Tidemark SDK: `import { TidemarkClient } from 'tidemark/client'`. See docs/client.md. */

export type { ErrorCode, ErrorDetails } from '../errors/index.js';
export { isTidemarkError, TidemarkError } from '../errors/index.js';
export {
  type CallOptions,
  type ClientShardMap,
  type ConnectOptions,
  type KafkaPartitionStatus,
  type MatchOp,
  type NodeStatus,
  type QueryMatcher,
  type QueryRequest,
  type QuerySeries,
  type ReplicaStatus,
  TidemarkClient,
  type WriteResult,
} from './client.js';
export { type BearerToken, channelCredentials, type TlsOptions } from './credentials.js';
export type { Point, SeriesSamplesInput, WriteInput } from './prepare.js';
export type { BackoffOptions } from './retry.js';
export { BatchWriter, type WriterOptions, type WriterStats } from './writer.js';
