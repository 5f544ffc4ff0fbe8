/**
 * The node side of a backup: `tidemark.v1.BackupService` on the client API port (docs/backup.md).
 *
 * Backup(shard) on a node holding a replica of the shard: a ReadIndex barrier (through the leader; it works on
 * followers too), so the replica has applied every write acknowledged before the call; then a consistent copy
 * of its store (the same on-demand image a follower installs, src/cluster/store-snapshot.ts) streamed as a
 * manifest and bounded chunks. Writes go on meanwhile: the copy runs on a worker thread under one LMDB read
 * transaction. The method is not in the role table, so it needs the admin role (src/security/roles.ts).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import type { ShardReplica } from '../cluster/replica.js';
import type { ImageStream } from '../cluster/store-snapshot.js';
import { invalidArgument, isTidemarkError, TidemarkError } from '../errors/index.js';
import {
  type BackupRequest,
  type BackupResponseSchema,
  BackupService,
} from '../gen/tidemark/v1/client_pb.js';
import { type AddServiceOptions, addService, type CallContext } from '../transport/grpc-adapter.js';

/** What the service needs of a node (TidemarkNode satisfies it). */
export interface BackupHost {
  readonly id: string;
  readonly config: { readonly shards: number };
  readonly replicas: ReadonlyMap<number, ShardReplica>;
}

export interface BackupServiceOptions {
  authorize?: AddServiceOptions['authorize'];
  /** How long the barrier and the image may take to start (ms, default 60,000; the call's deadline if earlier). */
  startTimeoutMs?: number;
}

type BackupResponseInit = MessageInitShape<typeof BackupResponseSchema>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Retries `op` while it fails with a transient error (no leader yet, an install running, images busy). */
async function retrying<T>(what: string, deadline: number, op: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      const transient =
        isTidemarkError(err) && ['NOT_LEADER', 'UNAVAILABLE', 'RESOURCE_EXHAUSTED'].includes(err.code);
      const wait = Math.min(20 * 2 ** Math.min(attempt, 5), 500);
      if (!transient || Date.now() + wait >= deadline) {
        if (transient) {
          throw new TidemarkError(
            'UNAVAILABLE',
            'backup_not_ready',
            `${what} did not succeed in time: ${(err as Error).message}`,
            { retryAfterMs: 1000 },
            err,
          );
        }
        throw err;
      }
      await sleep(wait);
    }
  }
}

/** Streams one local shard's image after its read barrier. */
export async function* serveBackup(
  host: BackupHost,
  req: Pick<BackupRequest, 'shard'>,
  ctx: Pick<CallContext, 'deadline' | 'signal'>,
  options: Pick<BackupServiceOptions, 'startTimeoutMs'> = {},
): AsyncGenerator<BackupResponseInit> {
  const shard = req.shard;
  if (!Number.isInteger(shard) || shard < 0 || shard >= host.config.shards) {
    throw invalidArgument('shard_invalid', 'shard', `shard must be in [0, ${host.config.shards - 1}]`);
  }
  const r = host.replicas.get(shard);
  if (r === undefined) {
    throw new TidemarkError(
      'NOT_FOUND',
      'unknown_shard',
      `node ${host.id} holds no replica of shard ${shard}`,
    );
  }
  const deadline = Math.min(
    ctx.deadline ?? Number.POSITIVE_INFINITY,
    Date.now() + (options.startTimeoutMs ?? 60_000),
  );
  // ReadIndex resolves once this replica has applied everything committed before the call: the image taken
  // after it holds every write acknowledged before the backup asked for this shard.
  const readIndex = await retrying(`shard ${shard}: the read barrier`, deadline, () => r.driver.readIndex());
  // What the store holds at the barrier: the read index itself may be a Raft no-op or conf change (a leader
  // moved meanwhile), which never reaches the store.
  const storeIndex = r.stateMachine.store.lastApplied();
  const stream: ImageStream = await retrying(`shard ${shard}: the store image`, deadline, () =>
    r.stateMachine.open({ shard, minIndex: 0, snapshotId: `backup-${host.id}-${shard}-${Date.now()}` }),
  );
  try {
    const m = stream.manifest;
    // The image records the applied index of the LMDB state it copied, which includes every apply the barrier
    // waited for; anything less would be a bug, never a silently incomplete backup.
    if (m.appliedIndex < storeIndex) {
      throw new TidemarkError(
        'INTERNAL',
        'backup_image_behind',
        `shard ${shard}: image at index ${m.appliedIndex} is behind the store's index ${storeIndex} at the read barrier ${readIndex}`,
      );
    }
    const st = r.driver.status();
    yield {
      part: {
        case: 'manifest',
        value: {
          shard,
          nodeId: host.id,
          formatVersion: m.formatVersion,
          index: BigInt(m.appliedIndex),
          readIndex: BigInt(readIndex),
          term: BigInt(st.term),
          bytes: BigInt(m.bytes),
          sha256: m.sha256,
          chunkBytes: m.chunkBytes,
          voters: [...st.conf.voters],
        },
      },
    };
    for await (const chunk of stream.chunks) {
      if (ctx.signal.aborted) return;
      yield { part: { case: 'chunk', value: chunk } };
    }
  } finally {
    await stream.close();
  }
}

/** Registers BackupService for `host` on its client API server. */
export function addBackupService(
  server: grpc.Server,
  host: BackupHost,
  options: BackupServiceOptions = {},
): void {
  addService(
    server,
    BackupService,
    {
      backup: (req, ctx) => serveBackup(host, req, ctx, options),
    },
    { authorize: options.authorize },
  );
}
