/**
 * A Tidemark node: hosts one ShardReplica per shard placed on it, the multi-Raft PeerTransport (peer API),
 * the peer-port services for store images (GrpcSnapshotPeers) and remote shard reads (ShardReadService),
 * the gRPC client API, and implements ClusterService (docs/cluster.md):
 *
 *   write   split by shard → per part: local leader → propose; else forward to the shard's leader
 *           (NOT_LEADER → follow the hint; UNAVAILABLE / RESOURCE_EXHAUSTED → back off and retry) until the
 *           deadline; acknowledged after commit + leader apply.
 *   select  every shard through its local replica (ReadIndex unless stale); shards without a local
 *           replica through ShardReadService.Select on a node holding one.
 *
 * Observed leaders are polled from the local replicas every `observeIntervalMs`; a LeaderBalancer moves
 * leadership toward each shard's preferred leader. close() refuses new writes, hands local leaderships to
 * caught-up peers (bounded), then closes the servers and replicas.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import type {
  ClusterService,
  NodeStatus,
  QueryOptions,
  Readiness,
  ReadOptions,
  SeriesResult,
  WriteOptions,
  WriteResult,
} from '../api/cluster-service.js';
import { addTidemarkService, matchersFromPb, matchersToPb } from '../api/grpc-service.js';
import { addBackupService } from '../backup/service.js';
import {
  closed,
  fromItemError,
  invalidArgument,
  isTidemarkError,
  notLeader,
  TidemarkError,
  toItemError,
} from '../errors/index.js';
import {
  type ExecuteBatchRequest,
  type ExecuteBatchResponseSchema,
  type ExecuteRequest,
  type LookupRequest,
  type SelectRequest as PbSelectRequest,
  type SelectResponseSchema,
  ShardQueryService,
  ShardReadService,
} from '../gen/tidemark/v1/peer_pb.js';
import { canonicalKeyFast, routeByShard } from '../ingest/batch.js';
import {
  decodeBatch,
  decodePolicy,
  EntryKind,
  encodeBatch,
  encodePolicy,
  entryKind,
} from '../ingest/batch-codec.js';
import { LimitGuard, limitSettingsOf, seriesIdsOfMetric, writeAdmitted } from '../limits/index.js';
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, seriesIdOfKey, shardOf } from '../model/index.js';
import {
  DEFAULT_DEADLINE_MS,
  decodeShardPartial,
  decodeShardQuery,
  encodeShardPartial,
  encodeShardQuery,
  executeShard,
  type LastPoint,
  type LastRequest,
  type LookupPartial,
  lookupSeries,
  parseLookupPost,
  type QueryOutcome,
  type QuerySpec,
  queryLast,
  runQuery,
  type LookupRequest as SeriesLookupRequest,
  type ShardFn,
  type ShardPartial,
  type ShardQuery,
  type SuggestRequest,
  suggest,
} from '../query/index.js';
import { LmdbLogEnv } from '../raft/storage-lmdb.js';
import { ConfChangeType } from '../raft/types.js';
import { type NodeSecurity, nodeSecurity } from '../security/node-security.js';
import type { LmdbShardStore } from '../storage/lmdb-store.js';
import type { SampleBatch, SelectRequest } from '../storage/store.js';
import {
  addService,
  bindServer,
  type CallContext,
  createClient,
  createServer,
  type ServiceClient,
  shutdownServer,
} from '../transport/grpc-adapter.js';
import { type ForwardRequestInfo, type ForwardResult, PeerTransport } from '../transport/peer.js';
import type { NodeConfig } from './config.js';
import { GrpcSnapshotPeers } from './grpc-snapshot-peers.js';
import { NodeKafka } from './kafka.js';
import { type BalanceCandidate, type BalancerOptions, LeaderBalancer } from './leader-balancer.js';
import {
  decideIncarnation,
  type HelloAnswer,
  IDENTITY_FILE,
  memberId,
  newIncarnation,
  nodeOfMember,
  RAFT_LOG_DIR,
  readIdentity,
  writeIdentity,
} from './member.js';
import { NodeMetrics } from './node-metrics.js';
import { type ReplicaDriverOptions, ShardReplica, type SnapshotRegistry } from './replica.js';
import { ShardMap } from './shard-map.js';
import type { SnapshotPeers } from './store-snapshot.js';

/** The logging a node does (pino's Logger satisfies it). */
export interface NodeLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  child?(bindings: Record<string, unknown>): NodeLogger;
  bindings?(): Record<string, unknown>;
}

/** The node's log lines carry `node`: a child logger, unless the given one binds it already (`tidemark start`). */
function nodeLogger(logger: NodeLogger | undefined, id: string): NodeLogger | undefined {
  if (logger?.child === undefined || logger.bindings?.().node !== undefined) return logger;
  return logger.child({ node: id });
}

export interface TidemarkNodeDeps {
  logger?: NodeLogger;
  /**
   * Where replicas find peers' store images (snapshot install) and register their own. Default:
   * GrpcSnapshotPeers (StoreImageService on the peer API port).
   */
  snapshots?: SnapshotPeers & SnapshotRegistry;
  /** Driver overrides (on top of config.raft / config.limits). */
  driver?: ReplicaDriverOptions;
  /** Store checkpoint period (ms; default 30,000; 0 disables). */
  checkpointIntervalMs?: number;
  /** How often local replicas' leaders are observed and balancing runs (ms, default 100). */
  observeIntervalMs?: number;
  /** How often each local replica runs its retention pass (ms, default 60,000). */
  retentionIntervalMs?: number;
  /** Leader balancing; `false` disables it. */
  balancer?: BalancerOptions | false;
  /** Default write deadline (ms, default 10,000). */
  writeTimeoutMs?: number;
  /** How long close() waits for leadership transfers (ms, default 2,000). */
  closeTransferMs?: number;
  /** TLS credentials and client-API auth; default: nodeSecurity(config) (src/security). */
  security?: NodeSecurity;
}

/** Indexes of samples whose timestamp the entry codec refuses; undefined when there are none. */
function splitInvalidTimestamps(
  b: SampleBatch,
): { valid: SampleBatch; origin: Uint32Array; invalid: number[] } | undefined {
  const invalid: number[] = [];
  for (let i = 0; i < b.length; i++) {
    const t = b.timestamps[i]!;
    if (!Number.isInteger(t) || t < MIN_TIMESTAMP_MS || t > MAX_TIMESTAMP_MS) invalid.push(i);
  }
  if (invalid.length === 0) return undefined;
  const n = b.length - invalid.length;
  const valid: SampleBatch = {
    series: b.series,
    seriesRef: new Uint32Array(n),
    timestamps: new Float64Array(n),
    values: new Float64Array(n),
    length: n,
  };
  const origin = new Uint32Array(n);
  let j = 0;
  let k = 0;
  for (let i = 0; i < b.length; i++) {
    if (invalid[k] === i) {
      k++;
      continue;
    }
    valid.seriesRef[j] = b.seriesRef[i]!;
    valid.timestamps[j] = b.timestamps[i]!;
    valid.values[j] = b.values[i]!;
    origin[j++] = i;
  }
  return { valid, origin, invalid };
}

/** A forwarded batch must hold only series of the shard it names, or they would be stored on the wrong shard. */
function checkShardOfSeries(b: SampleBatch, shard: number, shards: number): void {
  if (shards === 1) return;
  for (let i = 0; i < b.series.length; i++) {
    const s = shardOf(seriesIdOfKey(canonicalKeyFast(b.series[i]!)), shards);
    if (s !== shard)
      throw invalidArgument(
        'wrong_shard',
        `batch.series[${i}]`,
        `batch.series[${i}] belongs to shard ${s}, not ${shard}`,
      );
  }
}

type SelectResponseInit = MessageInitShape<typeof SelectResponseSchema>;

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function unavailable(reason: string, message: string, retryAfterMs = 50): TidemarkError {
  return new TidemarkError('UNAVAILABLE', reason, message, { retryAfterMs });
}

/** A shard read error another attempt (elsewhere, or later) may cure; query errors (`query_*`) are final. */
function retriableRead(err: unknown): boolean {
  return (
    isTidemarkError(err) &&
    ['NOT_LEADER', 'UNAVAILABLE', 'NOT_FOUND', 'CLOSED'].includes(err.code) &&
    !err.reason.startsWith('query_')
  );
}

/** A listen address others can dial: a wildcard host is replaced by the advertised peer host. */
/**
 * The incarnation of a node starting on an empty data directory (./member.ts decideIncarnation): asks every
 * peer hosting one of this node's shards until the answers decide. Waits while a needed peer is silent:
 * founding a group that has made progress would let this node's lost votes and acknowledgements count.
 */
async function decideIdentity(
  config: NodeConfig,
  map: ShardMap,
  peer: PeerTransport,
  logger: NodeLogger | undefined,
): Promise<string> {
  const shardPeers = new Map<number, string[]>();
  for (const shard of map.shardsOfNode(config.nodeId)) {
    shardPeers.set(
      shard,
      map.replicasOf(shard).filter((n) => n !== config.nodeId),
    );
  }
  const askees = [...new Set([...shardPeers.values()].flat())];
  const answers = new Map<string, HelloAnswer>();
  const started = Date.now();
  let warned = started;
  for (;;) {
    await Promise.all(
      askees
        .filter((n) => !answers.has(n))
        .map((n) =>
          peer.hello(n, 1000).then(
            (a) => void answers.set(n, a),
            () => {},
          ),
        ),
    );
    const decided = decideIncarnation(shardPeers, answers, () => newIncarnation());
    if (decided !== undefined) return decided;
    if (Date.now() - warned > 10_000) {
      warned = Date.now();
      logger?.warn(
        { waiting: askees.filter((n) => !answers.has(n)), waitedMs: warned - started },
        'empty data directory: waiting for peers to tell whether the cluster is new',
      );
    }
    await sleep(250);
  }
}

function dialable(listen: string, advertisePeer: string): string {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon);
  if (host !== '0.0.0.0' && host !== '::' && host !== '[::]') return listen;
  return `${advertisePeer.slice(0, advertisePeer.lastIndexOf(':'))}${listen.slice(colon)}`;
}

/** `host:port` with the actual port when 0 was asked for. */
function withPort(address: string, port: number): string {
  const colon = address.lastIndexOf(':');
  return `${address.slice(0, colon)}:${port}`;
}

export class TidemarkNode implements ClusterService {
  readonly id: string;
  /** Bound addresses (ports resolved). */
  readonly endpoints: { grpc: string; peer: string };
  private map: ShardMap;
  private readonly leaderSince = new Map<number, { leader: string; since: number }>();
  private observeTimer: NodeJS.Timeout | undefined;
  private readonly balancer: LeaderBalancer | undefined;
  private closing = false;
  private readonly readClients = new Map<string, ServiceClient<typeof ShardReadService>>();
  private readonly queryClients = new Map<string, ServiceClient<typeof ShardQueryService>>();
  /** Query calls this node made to peers (ShardQueryService), for tests and debugging. */
  readonly queryCalls = { execute: 0, executeBatch: 0 };
  /** The node-wide Raft log environment (set by start, closed after the replicas). */
  private logEnv: LmdbLogEnv | undefined;
  /** TLS credentials and the client-API authenticator (set by start). */
  security: NodeSecurity | undefined;
  private closedPromise: Promise<void> | undefined;
  private readonly writeTimeoutMs: number;
  private readonly log: NodeLogger | undefined;
  /** The node's Prometheus metrics (its own registry; ./node-metrics.ts). */
  readonly metrics: NodeMetrics;
  /** Request, series and query limits (src/limits); the HTTP API finds it here (guardOf). */
  readonly limitGuard: LimitGuard;
  /** Kafka ingestion (./kafka.ts); undefined when not configured. */
  kafka: NodeKafka | undefined;

  private constructor(
    readonly config: NodeConfig,
    private readonly deps: TidemarkNodeDeps,
    readonly replicas: ReadonlyMap<number, ShardReplica>,
    readonly peer: PeerTransport,
    private readonly grpcServer: grpc.Server,
    endpoints: { grpc: string; peer: string },
    map: ShardMap,
    private readonly peerServer: grpc.Server,
    private readonly grpcSnapshots: GrpcSnapshotPeers | undefined,
  ) {
    this.id = config.nodeId;
    this.endpoints = endpoints;
    this.map = map;
    this.writeTimeoutMs = deps.writeTimeoutMs ?? 10_000;
    this.log = nodeLogger(deps.logger, config.nodeId);
    this.balancer = deps.balancer === false ? undefined : new LeaderBalancer(deps.balancer);
    this.metrics = new NodeMetrics({
      replicas: () => this.replicas,
      peerStats: () => peer.stats,
      kafkaSamples: () => this.kafka?.status(),
    });
    this.limitGuard = new LimitGuard({
      settings: limitSettingsOf(config),
      registry: this.metrics.registry,
      shards: config.shards,
      // The series limiter reads which series a local shard store holds (only on its leader).
      seed: (shard, metric) => {
        const r = this.replicas.get(shard);
        return r === undefined ? [] : seriesIdsOfMetric(r.store, metric);
      },
    });
  }

  /** Starts the peer transport, opens the local replicas, then serves the client API. */
  static async start(config: NodeConfig, deps: TidemarkNodeDeps = {}): Promise<TidemarkNode> {
    const map = ShardMap.fromConfig(config);
    const replicas = new Map<number, ShardReplica>();
    let node: TidemarkNode | undefined;
    // Membership (./member.ts): what this node tells a peer with an empty data directory.
    const priorIdentity = readIdentity(config.dataDir, config.nodeId);
    const hello = (): HelloAnswer => {
      const hosted = map.shardsOfNode(config.nodeId);
      if (replicas.size === 0) {
        // Not open yet: a data directory with state may hold progress (say so); a new one holds none.
        return { node: config.nodeId, started: false, progressedShards: priorIdentity ? hosted : [] };
      }
      const clientAddress = node?.ownClientAddress() ?? '';
      const progressed: number[] = [];
      for (const [shard, r] of replicas) {
        const st = r.driver.status();
        if (st.term > 1 || st.lastIndex > map.replicasOf(shard).length || st.firstIndex > 1)
          progressed.push(shard);
      }
      return { node: config.nodeId, started: true, progressedShards: progressed, clientAddress };
    };
    const peers = new Map(config.peers.filter((p) => p.id !== config.nodeId).map((p) => [p.id, p.address]));
    const peerMaxBytes = Math.max(config.limits.maxRequestBytes, 1024 * 1024) + 64 * 1024;
    // security: TLS credentials + client-API auth from config.tls / config.auth (src/security).
    const sec = deps.security ?? nodeSecurity(config);
    // The peer API server carries PeerService (Raft, snapshots messages, forwards) and StoreImageService.
    const peerServer = createServer({ maxMessageBytes: peerMaxBytes });
    const peer = await PeerTransport.start({
      id: config.nodeId,
      peers,
      server: peerServer,
      maxMessageBytes: peerMaxBytes,
      channelCredentials: sec.peerChannel,
      onForward: (req) => {
        if (node === undefined) throw unavailable('node_starting', `node ${config.nodeId} is starting`);
        return node.serveForward(req);
      },
      onHello: hello,
      onJoin: async (shard, member) => (node === undefined ? false : node.serveJoin(shard, member)),
    });
    const grpcSnapshots =
      deps.snapshots === undefined
        ? new GrpcSnapshotPeers({
            id: config.nodeId,
            addressOf: (id) => peers.get(id),
            clientOptions: { credentials: sec.peerChannel },
          })
        : undefined;
    const snapshots = deps.snapshots ?? grpcSnapshots!;
    grpcSnapshots?.serve(peerServer);
    addService(peerServer, ShardQueryService, {
      execute: async (req, ctx) => {
        if (node === undefined) throw unavailable('node_starting', `node ${config.nodeId} is starting`);
        return node.serveExecute(req, ctx);
      },
      executeBatch: async (req, ctx) => {
        if (node === undefined) throw unavailable('node_starting', `node ${config.nodeId} is starting`);
        return node.serveExecuteBatch(req, ctx);
      },
      lookup: async (req, ctx) => {
        if (node === undefined) throw unavailable('node_starting', `node ${config.nodeId} is starting`);
        return node.serveLookup(req, ctx);
      },
    });
    addService(peerServer, ShardReadService, {
      select: async function* (req, ctx) {
        if (node === undefined) throw unavailable('node_starting', `node ${config.nodeId} is starting`);
        yield* node.serveSelect(req, ctx);
      },
    });
    const server = createServer({ maxMessageBytes: config.limits.maxRequestBytes });
    let peerPort: number;
    try {
      peerPort = await bindServer(peerServer, config.listen.peer, sec.peerServer);
    } catch (err) {
      await peer.close();
      peerServer.forceShutdown();
      throw err;
    }
    // Every local shard's Raft log in one environment: their saves share fsyncs (docs/format/raft-log.md).
    let identity = priorIdentity;
    if (identity === undefined) {
      try {
        identity = {
          format: 1,
          nodeId: config.nodeId,
          incarnation: await decideIdentity(config, map, peer, deps.logger),
          createdAtMs: Date.now(),
        };
      } catch (err) {
        await peer.close();
        grpcSnapshots?.close();
        peerServer.forceShutdown();
        throw err;
      }
      writeIdentity(config.dataDir, identity);
      if (identity.incarnation !== '') {
        deps.logger?.warn(
          { incarnation: identity.incarnation },
          'empty data directory in a cluster that has made progress: rejoining as a new member (rebuilt by snapshot)',
        );
      }
    } else if (!existsSync(join(config.dataDir, IDENTITY_FILE))) {
      writeIdentity(config.dataDir, identity);
    }
    const member = memberId(config.nodeId, identity.incarnation);
    const founding = priorIdentity === undefined && identity.incarnation === '';
    mkdirSync(config.dataDir, { recursive: true });
    const logEnv = LmdbLogEnv.open(join(config.dataDir, RAFT_LOG_DIR), { maxLogs: config.shards });
    try {
      for (const shard of map.shardsOfNode(config.nodeId)) {
        const r = await ShardReplica.open({
          shard,
          nodeId: config.nodeId,
          memberId: member,
          dataDir: config.dataDir,
          transport: peer.shard(shard, member),
          snapshotPeers: snapshots,
          snapshotRegistry: snapshots,
          // Groups are founded only at a founding node's first start. A new incarnation, or a shard newly
          // placed on this node (the peer list changed), founds nothing: it waits to be added (serveJoin).
          ...(founding ? { voters: [...map.replicasOf(shard)] } : {}),
          logEnv,
          storeOptions: { ...config.store, syncIntervalMs: config.storeSyncIntervalMs },
          checkpointIntervalMs: deps.checkpointIntervalMs ?? config.checkpointIntervalMs,
          driver: {
            tickMs: config.raft.tickMs,
            electionTick: config.raft.electionTicks,
            heartbeatTick: config.raft.heartbeatTicks,
            maxPendingProposals: config.limits.maxProposalQueue,
            compactThreshold: config.raft.compactEntries,
            ...(config.raft.readMode === 'lease' ? { readMode: 'lease' as const } : {}),
            ...deps.driver,
          },
          onFatal: (err) =>
            nodeLogger(deps.logger, config.nodeId)?.warn(
              { shard, term: replicas.get(shard)?.driver.status().term, err: String(err) },
              'shard replica stopped',
            ),
          onStoreDiscarded: (aside) =>
            nodeLogger(deps.logger, config.nodeId)?.warn(
              { shard, aside },
              'shard store had unsynced commits at an OS restart: set aside, rebuilding from the log or a peer',
            ),
        });
        replicas.set(shard, r);
      }
      const grpcPort = await bindServer(server, config.listen.grpc, sec.clientServer);
      const endpoints = {
        grpc: withPort(config.listen.grpc, grpcPort),
        peer: withPort(config.listen.peer, peerPort),
      };
      node = new TidemarkNode(
        config,
        deps,
        replicas,
        peer,
        server,
        endpoints,
        map,
        peerServer,
        grpcSnapshots,
      );
      node.logEnv = logEnv;
      node.security = sec;
      const self = node;
      // The gRPC API's view of the node: queries timed and samples counted under `grpc` (node-metrics.ts).
      addTidemarkService(server, node.metrics.instrument(node, 'grpc'), {
        // Configured client addresses (--peer-clients / StatefulSet); this node's own bound one when not given.
        clientAddresses: () => ({
          ...Object.fromEntries(self.learnedClients),
          ...config.peerClients,
          [self.id]: self.ownClientAddress(),
        }),
        defaultWriteTimeoutMs: node.writeTimeoutMs,
        authorize: sec.authorize,
        guard: node.limitGuard,
      });
      // Consistent backup (docs/backup.md); needs the admin role when auth is on.
      addBackupService(server, node, { authorize: sec.authorize });
      // Kafka: checks the topic (exactly S partitions) before serving; observe() starts the ingesters.
      node.kafka = await NodeKafka.open({
        config,
        replicas,
        write: (b, o) => self.write(b, o),
        logger: deps.logger,
        registry: node.metrics.registry,
        writeTimeoutMs: node.writeTimeoutMs,
      });
      node.observe();
      node.observeTimer = setInterval(() => self.tick(), deps.observeIntervalMs ?? 100);
      node.observeTimer.unref();
      return node;
    } catch (err) {
      server.forceShutdown();
      for (const r of replicas.values()) await r.close().catch(() => {});
      await logEnv.close().catch(() => {});
      await peer.close();
      grpcSnapshots?.close();
      peerServer.forceShutdown();
      throw err;
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Observation and balancing

  private tick(): void {
    if (this.closing) return;
    try {
      this.observe();
      this.balance();
      this.reconcileMembership();
      this.retain();
      this.learnClientAddresses();
    } catch (err) {
      this.log?.warn({ err: String(err) }, 'observe/balance failed');
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Client addresses (docs/configuration.md, "Client addresses")

  /** Peers' client-API addresses learned from their Hello answers (for peers `peerClients` does not name). */
  private readonly learnedClients = new Map<string, string>();
  private readonly clientAsked = new Map<string, number>();

  /** This node's client-API address as peers and clients should dial it. */
  ownClientAddress(): string {
    return this.config.peerClients[this.id] ?? dialable(this.endpoints.grpc, this.config.advertisePeer);
  }

  /**
   * Asks each peer `peerClients` does not name for its client address (PeerService.Hello): at once while
   * unknown (every 2 s), then every 60 s (a restarted peer may listen elsewhere). Without it a node's shard
   * map has no address for those peers, and clients reach the shards they lead only through forwarding.
   */
  private learnClientAddresses(): void {
    const now = Date.now();
    for (const p of this.config.peers) {
      if (p.id === this.id || this.config.peerClients[p.id] !== undefined) continue;
      const every = this.learnedClients.has(p.id) ? 60_000 : 2_000;
      if (now - (this.clientAsked.get(p.id) ?? 0) < every) continue;
      this.clientAsked.set(p.id, now);
      this.peer.hello(p.id, 1000).then(
        (a) => {
          if (a.clientAddress) this.learnedClients.set(p.id, a.clientAddress);
        },
        () => {}, // unreachable now: asked again later
      );
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Retention (docs/cluster.md, "Retention")

  private lastRetention = 0;
  private retaining = false;

  /**
   * Every retentionIntervalMs each local replica drops what is older than its retention: the shard's
   * replicated policy (setRetention), else the node's store.retentionMs. One pass at a time.
   */
  private retain(): void {
    const now = Date.now();
    if (this.retaining || now - this.lastRetention < (this.deps.retentionIntervalMs ?? 60_000)) return;
    this.lastRetention = now;
    this.retaining = true;
    void (async () => {
      for (const [shard, r] of this.replicas) {
        if (this.closing) break;
        try {
          const res = await r.store.applyRetention(now, r.retentionMs(this.config.store.retentionMs));
          this.metrics.observeRetention(shard, res);
        } catch (err) {
          // UNAVAILABLE during a snapshot install or CLOSED at shutdown: the next pass catches up.
          if (!isTidemarkError(err, 'UNAVAILABLE') && !isTidemarkError(err, 'CLOSED'))
            this.log?.warn({ shard, err: String(err) }, 'retention pass failed');
        }
      }
    })().finally(() => {
      this.retaining = false;
    });
  }

  async setRetention(retentionMs: number, options: { deadline?: number } = {}): Promise<number[]> {
    if (this.closing) throw closed(`node ${this.id}`);
    const policy = { retentionMs };
    const encoded = encodePolicy(policy); // validates (INVALID_ARGUMENT retentionMs)
    const deadline = options.deadline ?? Date.now() + this.writeTimeoutMs;
    const shards = Array.from({ length: this.config.shards }, (_, s) => s);
    await Promise.all(shards.map((shard) => this.proposePolicy(shard, policy, encoded, deadline)));
    this.lastRetention = 0; // apply it at the next tick
    this.log?.info({ retentionMs }, 'retention set on every shard');
    return shards;
  }

  /** Proposes a policy entry to a shard's leader (local or forwarded), retrying leader changes until the deadline. */
  private async proposePolicy(
    shard: number,
    policy: { retentionMs: number },
    encoded: Uint8Array,
    deadline: number,
  ): Promise<void> {
    let hint: string | undefined;
    for (let attempt = 0; ; attempt++) {
      if (this.closing) throw closed(`node ${this.id}`);
      if (Date.now() >= deadline) {
        throw new TidemarkError(
          'DEADLINE_EXCEEDED',
          'deadline_exceeded',
          `shard ${shard}: policy not committed in time`,
          {
            outcome: 'unknown',
            shard,
          },
        );
      }
      const target = this.targetOf(shard, hint, attempt);
      hint = undefined;
      try {
        if (target === this.id) {
          const r = this.replicas.get(shard);
          if (r === undefined || !r.isLeader()) throw notLeader(r?.leader() || undefined);
          await r.setPolicy(policy, { deadline });
        } else {
          await this.peer.forward(target, shard, encoded, { deadline });
        }
        return;
      } catch (err) {
        if (!isTidemarkError(err)) throw err;
        if (err.code === 'NOT_LEADER' && typeof err.details.leaderHint === 'string')
          hint = err.details.leaderHint;
        else if (!['NOT_LEADER', 'UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'CLOSED'].includes(err.code)) throw err;
        this.map = this.map.withObservedLeader(shard, '', this.map.shard(shard).term);
      }
      await sleep(Math.min(50 * 2 ** Math.min(attempt, 4), 500, deadline - Date.now()));
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Membership (docs/cluster.md, "Membership and rejoining")

  private lastJoinAsk = 0;
  private readonly confChanging = new Set<number>();

  /**
   * A replica of a new incarnation asks the shard's replicas to add it, until it is in its own configuration.
   * On a leader: a learner on a node the placement names is promoted once caught up, after the node's old
   * member (a lost incarnation) is removed; one configuration change at a time per shard.
   */
  private reconcileMembership(): void {
    const now = Date.now();
    const ask = now - this.lastJoinAsk >= 1000;
    if (ask) this.lastJoinAsk = now;
    for (const [shard, r] of this.replicas) {
      const st = r.driver.status();
      const members = [...st.conf.voters, ...st.conf.learners];
      if (ask && !members.includes(r.memberId)) {
        for (const n of this.map.replicasOf(shard)) {
          if (n !== this.id) void this.peer.join(n, shard, r.memberId, 1000).catch(() => {});
        }
      }
      if (st.role !== 'leader' || this.confChanging.has(shard)) continue;
      const placed = this.map.replicasOf(shard);
      const { members: progress } = r.progress();
      if (this.removeUnplaced(shard, r, st.conf.voters, placed)) continue;
      for (const learner of st.conf.learners) {
        const node = nodeOfMember(learner);
        const p = progress.get(learner);
        if (!placed.includes(node) || p === undefined || p.match + 256 < st.commit) continue;
        const old = st.conf.voters.find((v) => v !== learner && nodeOfMember(v) === node);
        this.changeConf(
          shard,
          r,
          old === undefined
            ? { type: ConfChangeType.AddVoter, node: learner }
            : { type: ConfChangeType.RemoveNode, node: old },
        );
        break;
      }
    }
  }

  /**
   * After the peer list changed, voters on nodes the placement no longer names leave once every placed node
   * has a voter (one at a time; a leader on such a node first hands over to a placed voter).
   */
  private removeUnplaced(
    shard: number,
    r: ShardReplica,
    voters: string[],
    placed: readonly string[],
  ): boolean {
    const unplaced = voters.filter((v) => !placed.includes(nodeOfMember(v)));
    if (unplaced.length === 0) return false;
    if (!placed.every((n) => voters.some((v) => nodeOfMember(v) === n))) return false;
    const victim = unplaced.find((v) => v !== r.memberId);
    if (victim !== undefined) {
      this.changeConf(shard, r, { type: ConfChangeType.RemoveNode, node: victim });
    } else {
      const to = this.bestSuccessor(shard, r);
      if (to !== undefined && placed.includes(to)) r.transferLeader(to);
    }
    return true;
  }

  private changeConf(shard: number, r: ShardReplica, cc: { type: ConfChangeType; node: string }): void {
    this.confChanging.add(shard);
    const what = ConfChangeType[cc.type];
    this.log?.info({ shard, change: what, member: cc.node }, 'changing shard membership');
    r.driver
      .proposeConfChange(cc)
      .then(
        () => this.log?.info({ shard, change: what, member: cc.node }, 'shard membership changed'),
        (err: unknown) =>
          this.log?.warn(
            { shard, change: what, member: cc.node, err: String(err) },
            'membership change failed',
          ),
      )
      .finally(() => this.confChanging.delete(shard));
  }

  /** PeerService.Join: on the shard's leader, adds a placed node's new member as a learner. */
  serveJoin(shard: number, member: string): boolean {
    const r = this.replicas.get(shard);
    if (r === undefined || !r.isLeader() || this.closing) return false;
    const node = nodeOfMember(member);
    if (!this.map.replicasOf(shard).includes(node)) {
      throw invalidArgument(
        'join_not_placed',
        'member',
        `node ${node} holds no replica of shard ${shard} in the shard map`,
      );
    }
    const conf = r.driver.status().conf;
    if (conf.voters.includes(member) || conf.learners.includes(member)) return true;
    if (!this.confChanging.has(shard))
      this.changeConf(shard, r, { type: ConfChangeType.AddLearner, node: member });
    return false;
  }

  /** Records every local replica's leader/term in the shard map. */
  private observe(): void {
    const now = Date.now();
    const obs = [];
    for (const [shard, r] of this.replicas) {
      const s = r.raftStatus();
      obs.push({ shard, leader: s.leader, term: s.term });
      if (this.metrics.observeLeader(shard, s.leader))
        this.log?.info(
          { shard, term: s.term, leader: s.leader, role: s.role },
          s.leader === '' ? 'shard has no leader' : 'shard leader changed',
        );
      const prev = this.leaderSince.get(shard);
      if (prev === undefined || prev.leader !== s.leader)
        this.leaderSince.set(shard, { leader: s.leader, since: now });
    }
    this.map = this.map.withObservations(obs);
    if (!this.closing) this.kafka?.sync();
  }

  private balance(): void {
    if (this.balancer === undefined) return;
    const now = Date.now();
    const candidates: BalanceCandidate[] = [];
    for (const [shard, r] of this.replicas) {
      if (!r.isLeader()) continue;
      const preferred = this.map.preferredLeaderOf(shard);
      if (preferred === this.id) continue;
      const p = r.progressOf(preferred);
      candidates.push({
        shard,
        self: this.id,
        preferred,
        leaderSince: this.leaderSince.get(shard)?.since ?? now,
        lastIndex: r.isLeader() ? r.progress().lastIndex : Number.POSITIVE_INFINITY,
        preferredProgress:
          p === undefined || p.isLearner ? undefined : { match: p.match, recentActive: p.recentActive },
      });
    }
    for (const t of this.balancer.round(candidates, now)) {
      this.log?.info(
        { shard: t.shard, term: this.replicas.get(t.shard)?.driver.status().term, to: t.to },
        'transferring leadership to the preferred leader',
      );
      this.replicas.get(t.shard)?.transferLeader(t.to);
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // ClusterService

  write(batch: SampleBatch, options: WriteOptions = {}): Promise<WriteResult> {
    return this.metrics.trackWrite(this.writeBatch(batch, options));
  }

  private async writeBatch(batch: SampleBatch, options: WriteOptions): Promise<WriteResult> {
    if (this.closing) throw closed(`node ${this.id}`);
    const deadline = Math.floor(options.deadline ?? Date.now() + this.writeTimeoutMs);
    const S = this.config.shards;
    const { parts, origin } = routeByShard(batch, S);
    const results = await Promise.all(
      parts.map((part, shard) => (part.length === 0 ? undefined : this.writePart(shard, part, deadline))),
    );
    let accepted = 0;
    const rejected: WriteResult['rejected'] = [];
    const leaders: { shard: number; leader: string }[] = [];
    results.forEach((r, shard) => {
      if (r === undefined) return;
      accepted += r.accepted;
      for (const x of r.rejected) rejected.push({ index: origin[shard]![x.index]!, reason: x.reason });
      if (r.forwardedTo !== undefined) leaders.push({ shard, leader: r.forwardedTo });
    });
    rejected.sort((a, b) => a.index - b.index);
    return leaders.length === 0 ? { accepted, rejected } : { accepted, rejected, leaders };
  }

  /** The node to send shard `shard`'s writes to next: the hint, else a known leader, else a replica in turn. */
  private targetOf(shard: number, hint: string | undefined, attempt: number): string {
    if (hint !== undefined && hint !== '') return hint;
    const local = this.replicas.get(shard);
    const leader = local?.leader() || this.map.leaderOf(shard);
    if (leader !== '') return leader;
    if (local !== undefined) return this.id;
    const replicas = this.map.replicasOf(shard);
    return replicas[attempt % replicas.length]!;
  }

  private async writePart(
    shard: number,
    part: SampleBatch,
    deadline: number,
  ): Promise<{ accepted: number; rejected: { index: number; reason: string }[]; forwardedTo?: string }> {
    // The entry format refuses invalid timestamps; the store would reject them per sample. Reject them here
    // and write the rest, so every path (local proposal or forward) answers alike.
    const split = splitInvalidTimestamps(part);
    if (split !== undefined) {
      const rest: Awaited<ReturnType<TidemarkNode['writePart']>> =
        split.valid.length === 0
          ? { accepted: 0, rejected: [] }
          : await this.writePart(shard, split.valid, deadline);
      const rejected = [
        ...split.invalid.map((index) => ({ index, reason: 'invalid_timestamp' })),
        ...rest.rejected.map((x) => ({ index: split.origin[x.index]!, reason: x.reason })),
      ].sort((a, b) => a.index - b.index);
      return rest.forwardedTo === undefined
        ? { accepted: rest.accepted, rejected }
        : { accepted: rest.accepted, rejected, forwardedTo: rest.forwardedTo };
    }
    let encoded: Uint8Array | undefined;
    let hint: string | undefined;
    let last: unknown;
    for (let attempt = 0; ; attempt++) {
      if (this.closing) throw closed(`node ${this.id}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new TidemarkError(
          'DEADLINE_EXCEEDED',
          'deadline_exceeded',
          `write to shard ${shard} did not complete before its deadline${last instanceof Error ? ` (last error: ${last.message})` : ''}`,
          { outcome: attempt === 0 ? 'none' : 'unknown', shard },
        );
      }
      const target = this.targetOf(shard, hint, attempt);
      hint = undefined;
      let backoff = Math.min(50 * 2 ** Math.min(attempt, 5), 1000);
      try {
        if (target === this.id) {
          const r = this.replicas.get(shard);
          if (r === undefined)
            throw notLeader(undefined, `node ${this.id} holds no replica of shard ${shard}`);
          if (!r.isLeader()) throw notLeader(r.leader() || undefined);
          // Series limits (src/limits) on the shard leader, before proposing.
          const g = this.limitGuard;
          const res = await writeAdmitted(
            g.series,
            g.counter,
            shard,
            () => r.driver.status().term,
            part,
            (b) => this.metrics.trackProposal(shard, r.write(b, { deadline })),
          );
          return { accepted: res.accepted, rejected: res.rejected };
        }
        encoded ??= encodeBatch(part);
        // Bound each attempt so a hung peer cannot eat the whole deadline.
        const res = await this.metrics.trackForward(
          shard,
          this.peer.forward(target, shard, encoded, {
            deadline: Math.floor(Math.min(deadline, Date.now() + Math.max(2000, left / 2))),
          }),
        );
        return {
          accepted: res.accepted,
          rejected: res.rejected.map((x) => ({ index: x.sampleIndex, reason: x.reason })),
          forwardedTo: target,
        };
      } catch (err) {
        last = err;
        if (!isTidemarkError(err)) throw err;
        switch (err.code) {
          case 'NOT_LEADER': {
            const h = err.details.leaderHint;
            if (typeof h === 'string' && h !== '' && h !== target) {
              hint = h;
              backoff = 0;
            }
            break;
          }
          case 'UNAVAILABLE':
          case 'RESOURCE_EXHAUSTED':
          case 'CLOSED': // the target is shutting down
            backoff = Math.max(backoff, Math.min(err.retryAfterMs ?? 0, 1000));
            break;
          case 'DEADLINE_EXCEEDED':
            if (Date.now() >= deadline) throw err;
            break; // a per-attempt bound passed: try again (writes are idempotent)
          default:
            throw err;
        }
        if (err.code !== 'NOT_LEADER' || hint === undefined) {
          // Forget a leader that failed us, so the next attempt asks around.
          this.map = this.map.withObservedLeader(shard, '', this.map.shard(shard).term);
        }
      }
      if (backoff > 0) await sleep(Math.min(backoff, deadline - Date.now()));
    }
  }

  /** PeerService.Forward: a batch for a shard this node should lead. */
  private async serveForward(req: ForwardRequestInfo): Promise<ForwardResult> {
    if (this.closing) throw unavailable('node_closing', `node ${this.id} is shutting down`);
    if (!Number.isInteger(req.shard) || req.shard < 0 || req.shard >= this.config.shards)
      throw invalidArgument(
        'shard_invalid',
        'shard',
        `shard ${req.shard} is not in [0, ${this.config.shards})`,
      );
    const r = this.replicas.get(req.shard);
    if (r === undefined) {
      const h = this.map.leaderOf(req.shard);
      throw notLeader(
        h === '' || h === this.id ? undefined : h,
        `node ${this.id} holds no replica of shard ${req.shard}`,
      );
    }
    if (!r.isLeader()) {
      const h = r.leader();
      throw notLeader(h === '' || h === this.id ? undefined : h);
    }
    if (entryKind(req.batch) === EntryKind.policy) {
      await r.setPolicy(
        decodePolicy(req.batch),
        req.deadline === undefined ? {} : { deadline: req.deadline },
      );
      return { accepted: 0, rejected: [] };
    }
    const { batch } = decodeBatch(req.batch);
    checkShardOfSeries(batch, req.shard, this.config.shards);
    const g = this.limitGuard;
    const res = await writeAdmitted(
      g.series,
      g.counter,
      req.shard,
      () => r.driver.status().term,
      batch,
      (b) =>
        this.metrics.trackProposal(
          req.shard,
          r.write(b, req.deadline === undefined ? {} : { deadline: req.deadline }),
        ),
    );
    return {
      accepted: res.accepted,
      rejected: res.rejected.map((x) => ({
        seriesIndex: batch.seriesRef[x.index] ?? 0,
        sampleIndex: x.index,
        reason: x.reason,
      })),
    };
  }

  async select(request: SelectRequest, options: ReadOptions = {}): Promise<SeriesResult[]> {
    if (this.closing) throw closed(`node ${this.id}`);
    const opts = {
      ...(options.stale ? { stale: true } : {}),
      deadline: options.deadline ?? Date.now() + this.writeTimeoutMs,
    };
    const perShard = await Promise.all(
      Array.from({ length: this.config.shards }, async (_, shard) => {
        const r = this.replicas.get(shard);
        if (r === undefined) return this.selectRemote(shard, request, opts);
        const data = await this.readShard(r, request, opts);
        return data.map((d): SeriesResult => {
          const a = d.toArrays();
          return {
            metric: d.series.metric,
            tags: { ...d.series.tags },
            timestamps: a.ts.slice(0, a.count),
            values: a.vals.slice(0, a.count),
          };
        });
      }),
    );
    const out = perShard.flat();
    const key = (s: SeriesResult) => `${s.metric}\u0000${JSON.stringify(Object.entries(s.tags).sort())}`;
    out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    return out;
  }

  // ------------------------------------------------------------------ queries

  async query(spec: QuerySpec, options: QueryOptions = {}): Promise<QueryOutcome> {
    if (this.closing) throw closed(`node ${this.id}`);
    const deadline = options.deadline ?? Date.now() + DEFAULT_DEADLINE_MS;
    const stale = options.stale === true;
    const batch = this.queryBatcher(deadline, stale);
    const shards = Array.from({ length: this.config.shards }, (_, shard): ShardFn => {
      return async (q, signal) => {
        // A shard with no replica here is read on its leader, in one ExecuteBatch per leader node for the
        // whole query (docs/query.md, "Execution"); a failure there that another attempt may cure (a moved
        // leader, a lost connection) falls back to the per-shard path below.
        const to = this.batchTarget(shard);
        if (to !== undefined) {
          try {
            return await batch(to, shard, q, signal);
          } catch (err) {
            if (!retriableRead(err) || Date.now() >= deadline) throw err;
          }
        }
        return this.onShard(
          shard,
          { stale, deadline, signal },
          async (store) => executeShard(store, q, signal),
          async (client) => {
            this.queryCalls.execute++;
            const res = await client.execute(
              { shard, query: encodeShardQuery(q), stale },
              { deadline, signal },
            );
            return decodeShardPartial(res.partial);
          },
        );
      };
    });
    return this.metrics.countLimitHits(
      runQuery(spec, shards, {
        deadlineMs: Math.max(1, deadline - Date.now()),
        ...(options.partial ? { partial: true } : {}),
        ...(options.limits ? { limits: options.limits } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      }),
    );
  }

  async suggest(request: SuggestRequest, options: ReadOptions = {}): Promise<string[]> {
    // Validate once here (a bad request fails before any shard is asked).
    suggest([], request);
    const lists = await this.lookupAll<string[]>('suggest', request, options, (store) =>
      suggest([store], request),
    );
    return [...new Set(lists.flat())].sort().slice(0, request.max ?? 25);
  }

  async last(request: LastRequest, now: number, options: ReadOptions = {}): Promise<LastPoint[]> {
    const lists = await this.lookupAll<LastPoint[]>('last', { ...request, now }, options, (store) =>
      queryLast([store], request, now),
    );
    return lists.flat();
  }

  /** OpenTSDB /api/search/lookup: per shard, its first startIndex + limit matches and its total. */
  lookup(request: SeriesLookupRequest, options: ReadOptions = {}): Promise<LookupPartial[]> {
    return this.lookupAll<LookupPartial>('lookup', request, options, (store) =>
      lookupSeries([store], request),
    );
  }

  private lookupAll<T>(
    kind: 'suggest' | 'last' | 'lookup',
    request: object,
    options: ReadOptions,
    local: (store: LmdbShardStore) => T,
  ): Promise<T[]> {
    if (this.closing) throw closed(`node ${this.id}`);
    const deadline = options.deadline ?? Date.now() + this.writeTimeoutMs;
    const stale = options.stale === true;
    const body = utf8.encode(JSON.stringify(request));
    return Promise.all(
      Array.from({ length: this.config.shards }, (_, shard) =>
        this.onShard(
          shard,
          { stale, deadline },
          async (store) => local(store),
          async (client) => {
            const res = await client.lookup({ shard, kind, request: body, stale }, { deadline });
            return JSON.parse(utf8d.decode(res.response)) as T;
          },
        ),
      ),
    );
  }

  /**
   * Runs `local` on this node's replica of `shard` after its read barrier, or `remote` through
   * ShardQueryService on a node holding one (the leader first), retrying transient errors until the deadline.
   */
  private async onShard<T>(
    shard: number,
    opts: { stale: boolean; deadline: number; signal?: AbortSignal },
    local: (store: LmdbShardStore) => Promise<T>,
    remote: (client: ServiceClient<typeof ShardQueryService>) => Promise<T>,
  ): Promise<T> {
    const r = this.replicas.get(shard);
    const replicas = this.map.replicasOf(shard);
    for (let attempt = 0; ; attempt++) {
      if (this.closing) throw closed(`node ${this.id}`);
      if (opts.signal?.aborted) throw opts.signal.reason ?? closed('query');
      try {
        if (r !== undefined) {
          return await local(
            await r.readBarrier(
              opts.stale ? { stale: true, deadline: opts.deadline } : { deadline: opts.deadline },
            ),
          );
        }
        const leader = this.map.leaderOf(shard);
        const to = attempt === 0 && leader !== '' ? leader : replicas[attempt % replicas.length]!;
        const address = this.config.peers.find((p) => p.id === to)?.address;
        if (address === undefined) throw unavailable('unknown_peer', `no address for node ${to}`);
        return await remote(this.queryClientOf(to, address));
      } catch (err) {
        const retry = retriableRead(err);
        const wait =
          r === undefined && attempt < replicas.length ? 0 : Math.min(20 * 2 ** Math.min(attempt, 5), 500);
        if (!retry || Date.now() + wait >= opts.deadline) throw err;
        if (wait > 0) await sleep(wait);
      }
    }
  }

  /**
   * The node `shard`'s query goes to in a per-node batch when this node holds no replica of it: its
   * leader if known, else its preferred leader (where the balancer keeps leadership; a follower's barrier
   * forwards to the leader, so any replica answers linearizably). A shard held here runs here, after its
   * barrier, even when another node leads it: moving those reads to their leaders in per-node batches
   * was measured and costs more (docs/query.md, "Read consistency and latency").
   */
  private batchTarget(shard: number): string | undefined {
    if (this.replicas.has(shard)) return undefined;
    const to = this.map.leaderOf(shard) || this.map.preferredLeaderOf(shard);
    return to !== '' && to !== this.id ? to : undefined;
  }

  /**
   * One query's per-node batches: the ShardFns runQuery starts together (synchronously, one per shard)
   * join their target node's batch, which leaves as one ExecuteBatch a microtask later; each shard's
   * promise settles with its own result from the answer.
   */
  private queryBatcher(
    deadline: number,
    stale: boolean,
  ): (to: string, shard: number, q: ShardQuery, signal: AbortSignal) => Promise<ShardPartial> {
    type Waiter = { resolve: (p: ShardPartial) => void; reject: (err: unknown) => void };
    const open = new Map<string, { shards: number[]; waiters: Waiter[] }>();
    return (to, shard, q, signal) =>
      new Promise<ShardPartial>((resolve, reject) => {
        let b = open.get(to);
        if (b === undefined) {
          const fresh = { shards: [] as number[], waiters: [] as Waiter[] };
          open.set(to, fresh);
          b = fresh;
          queueMicrotask(() => {
            open.delete(to);
            void this.sendBatch(to, fresh.shards, fresh.waiters, q, { signal, deadline, stale });
          });
        }
        b.shards.push(shard);
        b.waiters.push({ resolve, reject });
      });
  }

  private async sendBatch(
    to: string,
    shards: number[],
    waiters: { resolve: (p: ShardPartial) => void; reject: (err: unknown) => void }[],
    q: ShardQuery,
    opts: { signal: AbortSignal; deadline: number; stale: boolean },
  ): Promise<void> {
    try {
      const address = this.config.peers.find((p) => p.id === to)?.address;
      if (address === undefined) throw unavailable('unknown_peer', `no address for node ${to}`);
      this.queryCalls.executeBatch++;
      const res = await this.queryClientOf(to, address).executeBatch(
        { shards, query: encodeShardQuery(q), stale: opts.stale },
        { deadline: opts.deadline, signal: opts.signal },
      );
      shards.forEach((shard, i) => {
        const w = waiters[i]!;
        const r = res.results[i];
        try {
          if (r === undefined || r.shard !== shard) {
            throw new TidemarkError(
              'INTERNAL',
              'batch_answer_invalid',
              `node ${to} answered shard ${r?.shard ?? 'none'} in place of shard ${shard}`,
            );
          }
          if (r.errorCode !== '') throw fromItemError(r);
          w.resolve(decodeShardPartial(r.partial));
        } catch (err) {
          w.reject(err);
        }
      });
    } catch (err) {
      for (const w of waiters) w.reject(err);
    }
  }

  private queryClientOf(id: string, address: string): ServiceClient<typeof ShardQueryService> {
    let c = this.queryClients.get(id);
    if (c === undefined) {
      c = createClient(ShardQueryService, address, {
        maxMessageBytes: this.config.limits.maxRequestBytes,
        credentials: this.security?.peerChannel,
      });
      this.queryClients.set(id, c);
    }
    return c;
  }

  private localReplica(shard: number): ShardReplica {
    if (this.closing) throw unavailable('node_closing', `node ${this.id} is shutting down`);
    const r = this.replicas.get(shard);
    if (r === undefined) {
      throw new TidemarkError(
        'NOT_FOUND',
        'unknown_shard',
        `node ${this.id} holds no replica of shard ${shard}`,
      );
    }
    return r;
  }

  /** ShardQueryService.Execute: one local shard's partial aggregates. */
  async serveExecute(req: ExecuteRequest, ctx: CallContext): Promise<{ partial: Uint8Array }> {
    const r = this.localReplica(req.shard);
    const q = decodeShardQuery(req.query);
    const deadline = ctx.deadline ?? Date.now() + DEFAULT_DEADLINE_MS;
    const store = await r.readBarrier(req.stale ? { stale: true, deadline } : { deadline });
    return { partial: encodeShardPartial(await executeShard(store, q, ctx.signal)) };
  }

  /**
   * ShardQueryService.ExecuteBatch: one query on several local shards, barriers and execution concurrent;
   * each shard answers on its own (a partial, or its error with code, reason and details).
   */
  async serveExecuteBatch(
    req: ExecuteBatchRequest,
    ctx: CallContext,
  ): Promise<MessageInitShape<typeof ExecuteBatchResponseSchema>> {
    // One entry per distinct shard of this cluster: a longer or repeated list is a broken (or hostile)
    // caller, refused before any barrier runs.
    const S = this.config.shards;
    if (
      req.shards.length > S ||
      new Set(req.shards).size !== req.shards.length ||
      req.shards.some((x) => x >= S)
    ) {
      throw invalidArgument(
        'shards_invalid',
        'shards',
        `shards must be distinct shard numbers below ${S}, at most ${S} of them`,
      );
    }
    const q = decodeShardQuery(req.query);
    const deadline = ctx.deadline ?? Date.now() + DEFAULT_DEADLINE_MS;
    const results = await Promise.all(
      req.shards.map(async (shard) => {
        try {
          const r = this.localReplica(shard);
          const store = await r.readBarrier(req.stale ? { stale: true, deadline } : { deadline });
          return { shard, partial: encodeShardPartial(await executeShard(store, q, ctx.signal)) };
        } catch (err) {
          return { shard, ...toItemError(err) };
        }
      }),
    );
    return { results };
  }

  /** ShardQueryService.Lookup: suggest / last on one local shard. */
  async serveLookup(req: LookupRequest, ctx: CallContext): Promise<{ response: Uint8Array }> {
    const r = this.localReplica(req.shard);
    let body: unknown;
    try {
      body = JSON.parse(utf8d.decode(req.request));
    } catch {
      throw invalidArgument('lookup_invalid', 'request', 'lookup request is not JSON');
    }
    const deadline = ctx.deadline ?? Date.now() + this.writeTimeoutMs;
    const store = await r.readBarrier(req.stale ? { stale: true, deadline } : { deadline });
    let out: unknown;
    if (req.kind === 'suggest') out = suggest([store], body as SuggestRequest);
    else if (req.kind === 'last') {
      const b = body as LastRequest & { now?: unknown };
      out = queryLast([store], b, typeof b.now === 'number' ? b.now : Date.now());
    } else if (req.kind === 'lookup') out = lookupSeries([store], parseLookupPost(body));
    else throw invalidArgument('lookup_kind_invalid', 'kind', `unknown lookup ${JSON.stringify(req.kind)}`);
    return { response: utf8.encode(JSON.stringify(out)) };
  }

  /** Selects shard `shard` through a node holding a replica (ShardReadService), retrying until the deadline. */
  private async selectRemote(
    shard: number,
    request: SelectRequest,
    opts: { stale?: boolean; deadline: number },
  ): Promise<SeriesResult[]> {
    const replicas = this.map.replicasOf(shard);
    let last: unknown;
    for (let attempt = 0; ; attempt++) {
      if (this.closing) throw closed(`node ${this.id}`);
      const leader = this.map.leaderOf(shard);
      // Linearizable reads go to the leader first (ReadIndex works on followers too, one hop more).
      const to = attempt === 0 && leader !== '' ? leader : replicas[attempt % replicas.length]!;
      const address = this.config.peers.find((p) => p.id === to)?.address;
      try {
        if (address === undefined) throw unavailable('unknown_peer', `no address for node ${to}`);
        const out: SeriesResult[] = [];
        const call = this.readClientOf(to, address).select(
          {
            shard,
            metric: request.metric,
            matchers: matchersToPb(request.matchers ?? []),
            minT: BigInt(request.minT ?? 0),
            maxT: BigInt(request.maxT ?? 0),
            stale: opts.stale === true,
          },
          { deadline: opts.deadline },
        );
        for await (const m of call) {
          for (const s of m.series) {
            out.push({
              metric: s.series?.metric ?? '',
              tags: { ...(s.series?.tags ?? {}) },
              timestamps: Float64Array.from(s.timestamps, (t) => Number(t)),
              values: Float64Array.from(s.values),
            });
          }
        }
        return out;
      } catch (err) {
        last = err;
        const retry =
          isTidemarkError(err) &&
          ['NOT_LEADER', 'UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'NOT_FOUND', 'CLOSED'].includes(err.code);
        const wait = attempt < replicas.length ? 0 : Math.min(20 * 2 ** Math.min(attempt, 5), 500);
        if (!retry || Date.now() + wait >= opts.deadline) throw last;
        if (wait > 0) await sleep(wait);
      }
    }
  }

  private readClientOf(id: string, address: string): ServiceClient<typeof ShardReadService> {
    let c = this.readClients.get(id);
    if (c === undefined) {
      c = createClient(ShardReadService, address, { credentials: this.security?.peerChannel });
      this.readClients.set(id, c);
    }
    return c;
  }

  /** ShardReadService.Select: one local shard's matching series, in pieces. */
  private async *serveSelect(req: PbSelectRequest, ctx: CallContext): AsyncGenerator<SelectResponseInit> {
    if (this.closing) throw unavailable('node_closing', `node ${this.id} is shutting down`);
    const r = this.replicas.get(req.shard);
    if (r === undefined) {
      throw new TidemarkError(
        'NOT_FOUND',
        'unknown_shard',
        `node ${this.id} holds no replica of shard ${req.shard}`,
      );
    }
    const request: SelectRequest = { metric: req.metric, matchers: matchersFromPb(req.matchers) };
    if (req.minT !== 0n) request.minT = Number(req.minT);
    if (req.maxT !== 0n) request.maxT = Number(req.maxT);
    const data = await this.readShard(r, request, {
      ...(req.stale ? { stale: true } : {}),
      deadline: ctx.deadline ?? Date.now() + this.writeTimeoutMs,
    });
    for (let i = 0; i < data.length; i += 256) {
      yield {
        series: data.slice(i, i + 256).map((d) => {
          const a = d.toArrays();
          return {
            series: { metric: d.series.metric, tags: { ...d.series.tags } },
            timestamps: Array.from(a.ts.subarray(0, a.count), (t) => BigInt(t)),
            values: Array.from(a.vals.subarray(0, a.count)),
          };
        }),
      };
    }
  }

  /** Reads one local replica, retrying while its group elects or moves a leader (until the deadline). */
  private async readShard(
    r: ShardReplica,
    request: SelectRequest,
    opts: { stale?: boolean; deadline: number },
  ): Promise<Awaited<ReturnType<ShardReplica['read']>>> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await r.read(request, opts);
      } catch (err) {
        const retry =
          isTidemarkError(err) &&
          (err.code === 'NOT_LEADER' || err.code === 'UNAVAILABLE' || err.code === 'RESOURCE_EXHAUSTED');
        const wait = Math.min(20 * 2 ** Math.min(attempt, 5), 500);
        if (!retry || this.closing || Date.now() + wait >= opts.deadline) throw err;
        await sleep(wait);
      }
    }
  }

  shardMap() {
    this.observe();
    return this.map.toJSON();
  }

  status(): NodeStatus {
    return {
      nodeId: this.id,
      shardCount: this.config.shards,
      replicas: [...this.replicas].map(([shard, r]) => {
        const s = r.raftStatus();
        const conf = r.driver.status().conf;
        return {
          shard,
          role: s.role,
          term: s.term,
          commit: s.commit,
          applied: s.applied,
          leader: s.leader,
          firstIndex: s.firstIndex,
          lastIndex: s.lastIndex,
          voters: [...conf.voters],
          learners: [...conf.learners],
          retentionMs: (() => {
            try {
              return r.retentionMs(this.config.store.retentionMs);
            } catch {
              return this.config.store.retentionMs;
            }
          })(),
        };
      }),
      ...(this.kafka === undefined
        ? {}
        : {
            kafka: this.kafka.statusRows(),
          }),
    };
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    if (this.closing) reasons.push('node is shutting down');
    for (const [shard, r] of this.replicas) {
      const s = r.driver.status();
      if (s.leader === '') reasons.push(`shard ${shard}: no leader`);
      else if (s.applied < s.commit)
        reasons.push(`shard ${shard}: applied ${s.applied} < commit ${s.commit}`);
    }
    return { ready: reasons.length === 0, reasons };
  }

  // -------------------------------------------------------------------------------------------------------
  // Shutdown

  /**
   * Refuses new writes, hands local leaderships to caught-up peers (bounded by closeTransferMs), closes
   * the client API, the replicas and the peer transport. Idempotent.
   */
  close(): Promise<void> {
    this.closedPromise ??= this.doClose();
    return this.closedPromise;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    if (this.observeTimer) clearInterval(this.observeTimer);
    // Kafka first: its in-flight proposals settle while the replicas still run.
    await this.kafka
      ?.close()
      .catch((err) => this.log?.warn({ err: String(err) }, 'closing Kafka ingestion failed'));
    const api = shutdownServer(this.grpcServer, 500);
    await this.transferAway(this.deps.closeTransferMs ?? 2000);
    await api;
    for (const [shard, r] of this.replicas) {
      await r.close().catch((err) => this.log?.warn({ shard, err: String(err) }, 'closing replica failed'));
    }
    await this.logEnv
      ?.close()
      .catch((err) => this.log?.warn({ err: String(err) }, 'closing the raft log failed'));
    await this.peer.close();
    this.grpcSnapshots?.close();
    for (const c of this.readClients.values()) c.close();
    for (const c of this.queryClients.values()) c.close();
    await shutdownServer(this.peerServer, 500);
  }

  async transferLeader(
    shard: number,
    to: string,
    options: { deadline?: number } = {},
  ): Promise<{ leader: string; term: number }> {
    if (this.closing) throw closed(`node ${this.id}`);
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.config.shards) {
      throw invalidArgument('shard_invalid', 'shard', `shard must be in [0, ${this.config.shards - 1}]`);
    }
    const r = this.replicas.get(shard);
    if (r === undefined || !r.isLeader()) {
      throw notLeader(
        r?.leader() || this.map.leaderOf(shard) || undefined,
        `node ${this.id} does not lead shard ${shard}`,
      );
    }
    const voters = r.raftStatus().conf.voters;
    let target = to;
    if (target === '') target = this.bestSuccessor(shard, r) ?? '';
    if (target === '' || target === this.id || !voters.includes(target)) {
      throw invalidArgument(
        'transfer_target_invalid',
        'to',
        `to must be another voter of shard ${shard} (${voters.filter((v) => v !== this.id).join(', ') || 'none'})`,
      );
    }
    const deadline = options.deadline ?? Date.now() + this.writeTimeoutMs;
    r.transferLeader(target);
    for (;;) {
      const s = r.raftStatus();
      if (s.leader !== '' && s.leader !== this.id) return { leader: s.leader, term: s.term };
      if (Date.now() >= deadline) {
        throw unavailable(
          'transfer_timeout',
          `shard ${shard}: leadership did not move to ${target} before the deadline`,
        );
      }
      await sleep(10);
    }
  }

  /** The most caught-up, recently active other voter of a shard this node leads (the preferred one on ties). */
  private bestSuccessor(shard: number, r: ShardReplica): string | undefined {
    let best: string | undefined;
    let bestMatch = -1;
    for (const [member, p] of r.progress().members) {
      const id = nodeOfMember(member);
      if (id === this.id || p.isLearner || !p.recentActive) continue;
      const match = p.match + (id === this.map.preferredLeaderOf(shard) ? 0.5 : 0);
      if (match > bestMatch) {
        best = id;
        bestMatch = match;
      }
    }
    return best;
  }

  private async transferAway(budgetMs: number): Promise<void> {
    if (this.config.peers.length < 2 || budgetMs <= 0) return;
    const end = Date.now() + budgetMs;
    const leading = () => [...this.replicas].filter(([, r]) => r.isLeader());
    for (const [shard, r] of leading()) {
      const best = this.bestSuccessor(shard, r);
      if (best !== undefined) r.transferLeader(best);
    }
    while (Date.now() < end && leading().length > 0) await sleep(20);
  }

  /** Closes the node and deletes its data directory (tests). */
  async destroy(): Promise<void> {
    await this.close();
    await rm(this.config.dataDir, { recursive: true, force: true });
  }
}
