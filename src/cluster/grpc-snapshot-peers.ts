/**
 * SnapshotPeers over gRPC: replicas register their image servers here (SnapshotRegistry); the node serves
 * them as `tidemark.v1.StoreImageService` on its peer API port, and a replica installing a snapshot reaches
 * another node's image server through a client of that service (docs/snapshots.md, docs/cluster.md).
 */
import type * as grpc from '@grpc/grpc-js';
import { dataCorruption, TidemarkError } from '../errors/index.js';
import { type ImageResponse, StoreImageService } from '../gen/tidemark/v1/peer_pb.js';
import type { NodeId } from '../raft/types.js';
import {
  addService,
  type ClientOptions,
  createClient,
  type ServiceClient,
} from '../transport/grpc-adapter.js';
import { toNumber } from '../transport/raft-codec.js';
import type { SnapshotRegistry } from './replica.js';
import type { ImageManifest, ImageStream, SnapshotPeers, SnapshotSource } from './store-snapshot.js';

type ImageClient = ServiceClient<typeof StoreImageService>;

export interface GrpcSnapshotPeersOptions {
  /** This node's id. */
  id: NodeId;
  /** Peer API address of a node (undefined: unknown). */
  addressOf: (node: NodeId) => string | undefined;
  clientOptions?: ClientOptions;
}

export class GrpcSnapshotPeers implements SnapshotPeers, SnapshotRegistry {
  private readonly local = new Map<number, SnapshotSource>();
  private readonly clients = new Map<NodeId, { address: string; client: ImageClient }>();
  private closed = false;

  constructor(private readonly options: GrpcSnapshotPeersOptions) {}

  register(node: NodeId, shard: number, source: SnapshotSource): void {
    if (node === this.options.id) this.local.set(shard, source);
  }

  unregister(node: NodeId, shard: number, source?: SnapshotSource): void {
    if (node !== this.options.id) return;
    if (source === undefined || this.local.get(shard) === source) this.local.delete(shard);
  }

  sourceFor(peer: NodeId, shard: number): SnapshotSource | undefined {
    if (this.closed) return undefined;
    if (peer === this.options.id) return this.local.get(shard);
    const address = this.options.addressOf(peer);
    if (address === undefined) return undefined;
    return { open: (req) => this.open(peer, address, req) };
  }

  /** Registers StoreImageService (this node's image servers) on `server`. */
  serve(server: grpc.Server): void {
    const local = this.local;
    addService(server, StoreImageService, {
      image: async function* (req, ctx) {
        const src = local.get(req.shard);
        if (src === undefined) {
          throw new TidemarkError('NOT_FOUND', 'unknown_shard', `shard ${req.shard} has no replica here`);
        }
        const stream = await src.open({
          shard: req.shard,
          minIndex: toNumber(req.minIndex),
          ...(req.snapshotId === '' ? {} : { snapshotId: req.snapshotId }),
        });
        try {
          const m = stream.manifest;
          yield {
            part: {
              case: 'manifest' as const,
              value: {
                shard: m.shard,
                snapshotId: m.snapshotId,
                formatVersion: m.formatVersion,
                appliedIndex: BigInt(m.appliedIndex),
                bytes: BigInt(m.bytes),
                sha256: m.sha256,
                chunkBytes: m.chunkBytes,
              },
            },
          };
          for await (const chunk of stream.chunks) {
            if (ctx.signal.aborted) return;
            yield { part: { case: 'chunk' as const, value: chunk } };
          }
        } finally {
          await stream.close();
        }
      },
    });
  }

  private clientOf(peer: NodeId, address: string): ImageClient {
    const c = this.clients.get(peer);
    if (c !== undefined && c.address === address) return c.client;
    c?.client.close();
    const client = createClient(StoreImageService, address, this.options.clientOptions);
    this.clients.set(peer, { address, client });
    return client;
  }

  private async open(
    peer: NodeId,
    address: string,
    req: { shard: number; minIndex: number; snapshotId?: string },
  ): Promise<ImageStream> {
    if (this.closed) throw new TidemarkError('CLOSED', 'closed', 'snapshot peers are closed');
    const abort = new AbortController();
    const responses = this.clientOf(peer, address).image(
      { shard: req.shard, minIndex: BigInt(req.minIndex), snapshotId: req.snapshotId ?? '' },
      { signal: abort.signal },
    );
    const it = responses[Symbol.asyncIterator]();
    let first: IteratorResult<ImageResponse>;
    try {
      first = await it.next();
    } catch (err) {
      abort.abort();
      throw err;
    }
    if (first.done || first.value.part.case !== 'manifest') {
      abort.abort();
      throw dataCorruption('snapshot_manifest_missing', `store image from ${peer}: no manifest`);
    }
    const m = first.value.part.value;
    const manifest: ImageManifest = {
      shard: m.shard,
      snapshotId: m.snapshotId,
      formatVersion: m.formatVersion,
      appliedIndex: toNumber(m.appliedIndex),
      bytes: toNumber(m.bytes),
      sha256: m.sha256,
      chunkBytes: m.chunkBytes,
    };
    let done = false;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        if (r.value.part.case !== 'chunk') {
          throw dataCorruption('snapshot_stream_invalid', `store image from ${peer}: unexpected message`);
        }
        yield r.value.part.value;
      }
    }
    return {
      manifest,
      chunks: chunks(),
      close: async () => {
        if (done) return;
        done = true;
        abort.abort();
        await it.return?.().catch(() => {});
      },
    };
  }

  close(): void {
    this.closed = true;
    for (const c of this.clients.values()) c.client.close();
    this.clients.clear();
  }
}
