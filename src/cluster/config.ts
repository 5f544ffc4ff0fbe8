/**
 * Node configuration: one type (NodeConfig), one frozen defaults object (DEFAULT_CONFIG) and one loader
 * (loadConfig) that merges defaults < config file (JSON) < environment (TIDEMARK_*) < flags, validates every
 * value once at the boundary and throws INVALID_ARGUMENT naming the setting *and where it came from*
 * (`--shards`, `TIDEMARK_SHARDS`, `tidemark.json: shards`). Unknown flags, unknown config-file keys and unknown
 * TIDEMARK_* variables are rejected.
 *
 * Pure apart from reading the config file (through an injectable reader): argv, environment and hostname are
 * inputs, never read from `process`.
 *
 * Every setting is described once, in SETTINGS; flags, variables, file keys and docs/configuration.md follow it.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { TidemarkError } from '../errors/index.js';
import { DEFAULT_STORE_OPTIONS, resolveStoreOptions, type StoreOptions } from '../storage/options.js';

// ---------------------------------------------------------------------------------------------------------
// The type and its defaults

export interface PeerSpec {
  /** Node id (also the Raft node id). */
  readonly id: string;
  /** Address other nodes dial for the peer (Raft) API: `host:port`. */
  readonly address: string;
}

export interface NodeConfig {
  /** This node's id: 1..63 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit. */
  readonly nodeId: string;
  /** Listen addresses (`host:port`; port 0 = any free port). */
  readonly listen: {
    /** HTTP API (OpenTSDB, /write, /metrics, health). */
    readonly http: string;
    /** gRPC client API. */
    readonly grpc: string;
    /** gRPC peer API (Raft traffic between nodes). */
    readonly peer: string;
  };
  /** The peer address other nodes reach this node at; always equals this node's entry in `peers`. */
  readonly advertisePeer: string;
  /** Static bootstrap membership, sorted by id; always includes this node. */
  readonly peers: readonly PeerSpec[];
  /**
   * Client API (gRPC) address of nodes by id, returned in the ShardMap RPC so clients route to leaders:
   * `--peer-clients`, derived in StatefulSet mode (`<name>-<i>.<service>:<grpc port>`); nodes not listed are
   * unknown to clients except the answering node itself. Every id is one of `peers`.
   */
  readonly peerClients: Readonly<Record<string, string>>;
  /** Shard count S, fixed at cluster creation (= Kafka partition count). */
  readonly shards: number;
  /** Replicas per shard R, 1 <= R <= peers.length. */
  readonly replication: number;
  /** Directory holding this node's shard replicas (Raft logs and stores). */
  readonly dataDir: string;
  readonly raft: {
    /** Milliseconds per Raft tick. */
    readonly tickMs: number;
    /** Ticks without a leader before a follower campaigns (randomized in [e, 2e)). */
    readonly electionTicks: number;
    /** Ticks between leader heartbeats; < electionTicks. */
    readonly heartbeatTicks: number;
    /** A shard's log is compacted once this many applied entries precede its first index; 0 never. */
    readonly compactEntries: number;
    /**
     * How shard leaders confirm linearizable reads: 'index' (default, a heartbeat round: ReadIndex) or
     * 'lease' (no round while the leader lease holds; bounded clock drift assumed, docs/raft.md).
     */
    readonly readMode?: 'index' | 'lease';
  };
  /** Each shard store checkpoints (persists its head, truncates its write-ahead records) this often; 0 never. */
  readonly checkpointIntervalMs: number;
  readonly limits: {
    /** Proposals waiting per shard before writes are refused with RESOURCE_EXHAUSTED. */
    readonly maxProposalQueue: number;
    /** Largest accepted request body / message, in bytes. */
    readonly maxRequestBytes: number;
    // Request and cardinality limits (src/limits, docs/security.md "Limits"); optional so NodeConfig
    // literals need not spell them (limitSettingsOf fills the defaults).
    /** Most samples in one write request (HTTP /api/put, /write; gRPC Write). */
    readonly maxSamplesPerRequest?: number;
    /** Most series in one write request. */
    readonly maxSeriesPerRequest?: number;
    /** Longest line-protocol line. */
    readonly maxLineBytes?: number;
    /** Series new to a shard that this node (as shard leader) admits per minute; 0 = unlimited. */
    readonly maxNewSeriesPerMinute?: number;
    /** Series per metric in the cluster (enforced per shard as ceil(L / shards)); 0 = unlimited. */
    readonly maxSeriesPerMetric?: number;
    /** Queries in flight per client (principal, else remote address); 0 = unlimited. */
    readonly maxConcurrentQueriesPerClient?: number;
  };
  /** Options of every shard store on this node (see src/storage/options.ts). */
  readonly store: Readonly<StoreOptions>;
  /**
   * Shard stores fsync at most this often (ms) instead of on every apply: the Raft log is the durable
   * record, the log is compacted only up to what a store has fsync'd, and after an OS crash with unsynced
   * commits a store refuses to open (rebuild the node by snapshot). 0 fsyncs every apply. Default: 1000
   * with R >= 2 (a peer can rebuild this node), 0 with R = 1.
   */
  readonly storeSyncIntervalMs: number;
  // --- Kafka ingestion (src/cluster/kafka.ts, docs/kafka.md) ---
  /** Kafka ingestion: shard i's leader consumes partition i of `topic`. Off while `brokers` is ''.
   * Absent when `kafka.brokers` is not set (so NodeConfig literals need not spell it). */
  readonly kafka?: {
    /** Comma-separated host:port list; '' disables Kafka ingestion. */
    readonly brokers: string;
    readonly topic: string;
    /** influx | opentsdb | protobuf | auto (validated by src/ingest/kafka/config.ts at start). */
    readonly format: string;
    /** Dead-letter topic for undecodable records; '' drops them (still counted and logged). */
    readonly deadLetterTopic: string;
    /** A proposal is flushed at this many samples. */
    readonly batchMaxSamples: number;
    /** ... or this long after its first record. */
    readonly lingerMs: number;
    /** Proposals per partition awaiting commit at once. */
    readonly maxInFlight: number;
  };
  // --- end Kafka ---
  // --- security (docs/security.md); optional so NodeConfig literals need not spell them ---
  /** PEM files: CA, this node's certificate and key (all three or none). Used by the peer, gRPC and HTTP ports. */
  readonly tls?: {
    readonly ca: string;
    readonly cert: string;
    readonly key: string;
    readonly clientAuth: boolean;
  };
  /** Explicitly allows a node with peers to run its peer port without TLS. */
  readonly insecure?: boolean;
  /** Bearer-token auth of the client APIs; all '' = open. */
  readonly auth?: {
    readonly tokenFile: string;
    readonly jwtHs256SecretFile: string;
    readonly jwtRs256PublicKeyFile: string;
  };
  // --- end security ---
}

/**
 * The defaults. Two of them are resolved against the rest of the configuration:
 * `peers: []` means "this node alone" and `advertisePeer: ''` means "this node's entry in peers, else the peer
 * listen address (a wildcard host becomes 127.0.0.1)"; `replication` 3 applies as `min(3, nodes)` when no
 * source sets it (a single node runs with R = 1 without configuration; an explicit R > nodes is an error).
 */
export const DEFAULT_CONFIG: NodeConfig = deepFreeze({
  nodeId: 'tidemark-0',
  listen: { http: '0.0.0.0:4242', grpc: '0.0.0.0:4243', peer: '0.0.0.0:4244' },
  advertisePeer: '',
  peers: [],
  peerClients: {},
  shards: 16,
  replication: 3,
  dataDir: 'data',
  raft: { tickMs: 100, electionTicks: 10, heartbeatTicks: 1, compactEntries: 10_000 },
  checkpointIntervalMs: 30_000,
  limits: {
    maxProposalQueue: 1024,
    maxRequestBytes: 16 * 1024 * 1024,
    maxSamplesPerRequest: 1_000_000,
    maxSeriesPerRequest: 100_000,
    maxLineBytes: 65_536,
    maxNewSeriesPerMinute: 0,
    maxSeriesPerMetric: 0,
    maxConcurrentQueriesPerClient: 64,
  },
  store: { ...DEFAULT_STORE_OPTIONS },
  storeSyncIntervalMs: 1000,
  kafka: {
    brokers: '',
    topic: 'tidemark',
    format: 'protobuf',
    deadLetterTopic: '',
    batchMaxSamples: 50_000,
    lingerMs: 50,
    maxInFlight: 2,
  },
  tls: { ca: '', cert: '', key: '', clientAuth: false },
  insecure: false,
  auth: { tokenFile: '', jwtHs256SecretFile: '', jwtRs256PublicKeyFile: '' },
});

// ---------------------------------------------------------------------------------------------------------
// The settings table

type Kind =
  | 'int'
  | 'storeInt'
  | 'nodeId'
  | 'listen'
  | 'address'
  | 'peers'
  | 'peerClients'
  | 'path'
  | 'statefulset'
  | 'text'
  | 'optPath'
  | 'bool';

export interface SettingSpec {
  /** Config-file key (dotted = nested object) and the field named in errors. */
  readonly key: string;
  /** Command-line flag, without the leading `--`. */
  readonly flag: string;
  /** Environment variable. */
  readonly env: string;
  readonly kind: Kind;
  /** Inclusive integer range, for int settings. */
  readonly range?: readonly [number, number];
}

const storeKey = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Every setting, in documentation order. */
export const SETTINGS: readonly SettingSpec[] = Object.freeze([
  { key: 'nodeId', flag: 'node-id', env: 'TIDEMARK_NODE_ID', kind: 'nodeId' },
  { key: 'listen.http', flag: 'http', env: 'TIDEMARK_HTTP', kind: 'listen' },
  { key: 'listen.grpc', flag: 'grpc', env: 'TIDEMARK_GRPC', kind: 'listen' },
  { key: 'listen.peer', flag: 'peer-listen', env: 'TIDEMARK_PEER_LISTEN', kind: 'listen' },
  { key: 'advertisePeer', flag: 'advertise-peer', env: 'TIDEMARK_ADVERTISE_PEER', kind: 'address' },
  { key: 'peers', flag: 'peers', env: 'TIDEMARK_PEERS', kind: 'peers' },
  { key: 'peerClients', flag: 'peer-clients', env: 'TIDEMARK_PEER_CLIENTS', kind: 'peerClients' },
  {
    key: 'statefulset.service',
    flag: 'peers-from-statefulset',
    env: 'TIDEMARK_STATEFULSET',
    kind: 'statefulset',
  },
  {
    key: 'statefulset.replicas',
    flag: 'statefulset-replicas',
    env: 'TIDEMARK_STATEFULSET_REPLICAS',
    kind: 'int',
    range: [1, 1000],
  },
  { key: 'shards', flag: 'shards', env: 'TIDEMARK_SHARDS', kind: 'int', range: [1, 4096] },
  { key: 'replication', flag: 'replication', env: 'TIDEMARK_REPLICATION', kind: 'int', range: [1, 9] },
  { key: 'dataDir', flag: 'data-dir', env: 'TIDEMARK_DATA_DIR', kind: 'path' },
  { key: 'raft.tickMs', flag: 'raft-tick-ms', env: 'TIDEMARK_RAFT_TICK_MS', kind: 'int', range: [1, 60_000] },
  {
    key: 'raft.electionTicks',
    flag: 'election-ticks',
    env: 'TIDEMARK_ELECTION_TICKS',
    kind: 'int',
    range: [2, 10_000],
  },
  {
    key: 'raft.heartbeatTicks',
    flag: 'heartbeat-ticks',
    env: 'TIDEMARK_HEARTBEAT_TICKS',
    kind: 'int',
    range: [1, 9_999],
  },
  {
    key: 'raft.readMode',
    flag: 'raft-read-mode',
    env: 'TIDEMARK_RAFT_READ_MODE',
    kind: 'text',
  },
  {
    key: 'raft.compactEntries',
    flag: 'raft-compact-entries',
    env: 'TIDEMARK_RAFT_COMPACT_ENTRIES',
    kind: 'int',
    range: [0, 1_000_000_000],
  },
  {
    key: 'checkpointIntervalMs',
    flag: 'checkpoint-interval-ms',
    env: 'TIDEMARK_CHECKPOINT_INTERVAL_MS',
    kind: 'int',
    range: [0, 86_400_000],
  },
  {
    key: 'limits.maxProposalQueue',
    flag: 'max-proposal-queue',
    env: 'TIDEMARK_MAX_PROPOSAL_QUEUE',
    kind: 'int',
    range: [1, 1_000_000],
  },
  {
    key: 'limits.maxRequestBytes',
    flag: 'max-request-bytes',
    env: 'TIDEMARK_MAX_REQUEST_BYTES',
    kind: 'int',
    range: [1024, 1024 * 1024 * 1024],
  },
  {
    key: 'limits.maxSamplesPerRequest',
    flag: 'max-samples-per-request',
    env: 'TIDEMARK_MAX_SAMPLES_PER_REQUEST',
    kind: 'int',
    range: [1, 100_000_000],
  },
  {
    key: 'limits.maxSeriesPerRequest',
    flag: 'max-series-per-request',
    env: 'TIDEMARK_MAX_SERIES_PER_REQUEST',
    kind: 'int',
    range: [1, 100_000_000],
  },
  {
    key: 'limits.maxLineBytes',
    flag: 'max-line-bytes',
    env: 'TIDEMARK_MAX_LINE_BYTES',
    kind: 'int',
    range: [64, 1024 * 1024 * 1024],
  },
  {
    key: 'limits.maxNewSeriesPerMinute',
    flag: 'max-new-series-per-minute',
    env: 'TIDEMARK_MAX_NEW_SERIES_PER_MINUTE',
    kind: 'int',
    range: [0, 1_000_000_000],
  },
  {
    key: 'limits.maxSeriesPerMetric',
    flag: 'max-series-per-metric',
    env: 'TIDEMARK_MAX_SERIES_PER_METRIC',
    kind: 'int',
    range: [0, 1_000_000_000],
  },
  {
    key: 'limits.maxConcurrentQueriesPerClient',
    flag: 'max-concurrent-queries-per-client',
    env: 'TIDEMARK_MAX_CONCURRENT_QUERIES_PER_CLIENT',
    kind: 'int',
    range: [0, 1_000_000],
  },
  {
    key: 'storeSyncIntervalMs',
    flag: 'store-sync-interval-ms',
    env: 'TIDEMARK_STORE_SYNC_INTERVAL_MS',
    kind: 'int',
    range: [0, 3_600_000],
  },
  // --- Kafka ingestion ---
  { key: 'kafka.brokers', flag: 'kafka-brokers', env: 'TIDEMARK_KAFKA_BROKERS', kind: 'text' },
  { key: 'kafka.topic', flag: 'kafka-topic', env: 'TIDEMARK_KAFKA_TOPIC', kind: 'text' },
  { key: 'kafka.format', flag: 'kafka-format', env: 'TIDEMARK_KAFKA_FORMAT', kind: 'text' },
  {
    key: 'kafka.deadLetterTopic',
    flag: 'kafka-dead-letter-topic',
    env: 'TIDEMARK_KAFKA_DEAD_LETTER_TOPIC',
    kind: 'text',
  },
  {
    key: 'kafka.batchMaxSamples',
    flag: 'kafka-batch-max-samples',
    env: 'TIDEMARK_KAFKA_BATCH_MAX_SAMPLES',
    kind: 'int',
    range: [1, 1_000_000],
  },
  {
    key: 'kafka.lingerMs',
    flag: 'kafka-linger-ms',
    env: 'TIDEMARK_KAFKA_LINGER_MS',
    kind: 'int',
    range: [0, 60_000],
  },
  {
    key: 'kafka.maxInFlight',
    flag: 'kafka-max-in-flight',
    env: 'TIDEMARK_KAFKA_MAX_IN_FLIGHT',
    kind: 'int',
    range: [1, 64],
  },
  // --- end Kafka ---
  // --- security (docs/security.md) ---
  { key: 'tls.ca', flag: 'tls-ca', env: 'TIDEMARK_TLS_CA', kind: 'optPath' },
  { key: 'tls.cert', flag: 'tls-cert', env: 'TIDEMARK_TLS_CERT', kind: 'optPath' },
  { key: 'tls.key', flag: 'tls-key', env: 'TIDEMARK_TLS_KEY', kind: 'optPath' },
  { key: 'tls.clientAuth', flag: 'tls-client-auth', env: 'TIDEMARK_TLS_CLIENT_AUTH', kind: 'bool' },
  { key: 'insecure', flag: 'insecure', env: 'TIDEMARK_INSECURE', kind: 'bool' },
  { key: 'auth.tokenFile', flag: 'auth-token-file', env: 'TIDEMARK_AUTH_TOKEN_FILE', kind: 'optPath' },
  {
    key: 'auth.jwtHs256SecretFile',
    flag: 'auth-jwt-hs256-secret-file',
    env: 'TIDEMARK_AUTH_JWT_HS256_SECRET_FILE',
    kind: 'optPath',
  },
  {
    key: 'auth.jwtRs256PublicKeyFile',
    flag: 'auth-jwt-rs256-public-key-file',
    env: 'TIDEMARK_AUTH_JWT_RS256_PUBLIC_KEY_FILE',
    kind: 'optPath',
  },
  // --- end security ---
  ...Object.keys(DEFAULT_STORE_OPTIONS).map(
    (name): SettingSpec => ({
      key: `store.${name}`,
      flag: `store-${storeKey(name)}`,
      env: `TIDEMARK_STORE_${storeKey(name).replaceAll('-', '_').toUpperCase()}`,
      kind: 'storeInt',
    }),
  ),
]);

/** Names the config file: `--config PATH` or `TIDEMARK_CONFIG=PATH`. */
export const CONFIG_FLAG = 'config';
export const CONFIG_ENV = 'TIDEMARK_CONFIG';

/** TIDEMARK_* variables that are not node settings (tests, debugging); loadConfig ignores them. */
export const NON_CONFIG_ENV: ReadonlySet<string> = new Set(['TIDEMARK_SEED', 'TIDEMARK_DEBUG']);

const BY_KEY = new Map(SETTINGS.map((s) => [s.key, s]));
const BY_FLAG = new Map(SETTINGS.map((s) => [s.flag, s]));
const BY_ENV = new Map(SETTINGS.map((s) => [s.env, s]));
const GROUPS = new Set(SETTINGS.filter((s) => s.key.includes('.')).map((s) => s.key.split('.')[0]!));

// ---------------------------------------------------------------------------------------------------------
// Inputs

export interface LoadConfigInput {
  /** Command-line arguments after the command (e.g. `['--node-id', 'a', '--shards', '32']`). */
  argv?: readonly string[];
  /** Environment; only TIDEMARK_* entries are looked at. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Config file path used when neither `--config` nor TIDEMARK_CONFIG names one. */
  file?: string;
  /** Reads the config file (default: fs.readFileSync as UTF-8). Injected by tests. */
  readFile?: (path: string) => string;
  /** This machine's hostname; needed only in StatefulSet mode (the CLI passes os.hostname()). */
  hostname?: string;
}

type SourceKind = 'default' | 'options' | 'file' | 'env' | 'flag';

/** Precedence of each source kind (higher wins). */
const RANK: Record<SourceKind, number> = { default: 0, options: 1, file: 1, env: 2, flag: 3 };

/** A value as given by one source, with the name to blame in errors. */
interface Given {
  value: unknown;
  /** `--shards`, `TIDEMARK_SHARDS`, `tidemark.json: shards`, `options.shards`, `default shards`. */
  where: string;
  kind: SourceKind;
}

function fail(reason: string, field: string, where: string, message: string): TidemarkError {
  return new TidemarkError('INVALID_ARGUMENT', reason, `${where} ${message}`, { field, source: where });
}

const show = (value: unknown, kind: SourceKind): string =>
  kind === 'flag' || kind === 'env' ? JSON.stringify(String(value)) : safeJson(value);

function safeJson(value: unknown): string {
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Addresses and ids

export interface HostPort {
  host: string;
  port: number;
}

const HOST_RE =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6_RE = /^\[([0-9A-Fa-f:.]+)\]$/;
const NODE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const WILDCARD_HOSTS = new Set(['0.0.0.0', '[::]', '::']);

/**
 * Splits `host:port` (`[v6]:port` for IPv6). Returns undefined when malformed: the host must be a DNS name,
 * an IPv4 address or a bracketed IPv6 address; the port an integer in [0, 65535].
 */
export function splitHostPort(address: string): HostPort | undefined {
  const colon = address.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const host = address.slice(0, colon);
  const portText = address.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 65535) return undefined;
  if (IPV6_RE.test(host)) {
    if (!host.includes(':')) return undefined;
  } else {
    if (!HOST_RE.test(host)) return undefined;
    const labels = host.split('.');
    if (
      labels.every((l) => /^\d+$/.test(l)) &&
      (labels.length !== 4 || labels.some((l) => Number(l) > 255))
    ) {
      return undefined; // all-numeric: must be a dotted-quad IPv4 address
    }
  }
  return { host, port };
}

export function isValidNodeId(id: unknown): id is string {
  return typeof id === 'string' && NODE_ID_RE.test(id);
}

// ---------------------------------------------------------------------------------------------------------
// Parsing one value from one source

function parseValue(s: SettingSpec, g: Given): unknown {
  const { value, where, kind } = g;
  const fromText = kind === 'flag' || kind === 'env';
  switch (s.kind) {
    case 'int':
    case 'storeInt': {
      let n: number;
      if (fromText)
        n = typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value) ? Number(value) : Number.NaN;
      else n = typeof value === 'number' ? value : Number.NaN;
      const range = s.kind === 'int' ? `an integer in [${s.range![0]}, ${s.range![1]}]` : storeRange(s.key);
      if (!Number.isSafeInteger(n)) {
        throw fail('setting_invalid', s.key, where, `must be ${range}, got ${show(value, kind)}`);
      }
      if (s.kind === 'int' ? n < s.range![0] || n > s.range![1] : !storeOk(s.key, n)) {
        throw fail('setting_out_of_range', s.key, where, `must be ${range}, got ${show(value, kind)}`);
      }
      return n;
    }
    case 'nodeId':
      if (!isValidNodeId(value)) {
        throw fail(
          'setting_invalid',
          s.key,
          where,
          `must be a node id (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit), got ${show(value, kind)}`,
        );
      }
      return value;
    case 'listen':
    case 'address': {
      const hp = typeof value === 'string' ? splitHostPort(value.trim()) : undefined;
      if (hp === undefined) {
        throw fail('setting_invalid', s.key, where, `must be host:port, got ${show(value, kind)}`);
      }
      if (s.kind === 'address' && (hp.port === 0 || WILDCARD_HOSTS.has(hp.host))) {
        throw fail(
          'setting_invalid',
          s.key,
          where,
          `must be an address other nodes can dial (no wildcard host, no port 0), got ${show(value, kind)}`,
        );
      }
      return (value as string).trim();
    }
    case 'path':
      if (typeof value !== 'string' || value.trim() === '' || value.includes('\0')) {
        throw fail('setting_invalid', s.key, where, `must be a non-empty path, got ${show(value, kind)}`);
      }
      return value;
    case 'text': // Kafka settings; their meaning is validated by src/ingest/kafka/config.ts at start
      if (typeof value !== 'string' || value.includes('\0')) {
        throw fail('setting_invalid', s.key, where, `must be a string, got ${show(value, kind)}`);
      }
      return value.trim();
    // --- security: optional path ('' = unset) and boolean settings ---
    case 'optPath':
      if (typeof value !== 'string' || value.includes('\0')) {
        throw fail('setting_invalid', s.key, where, `must be a path, got ${show(value, kind)}`);
      }
      return value.trim();
    case 'bool':
      if (typeof value === 'boolean') return value;
      if (fromText && typeof value === 'string' && /^(true|false|1|0)$/i.test(value.trim())) {
        return /^(true|1)$/i.test(value.trim());
      }
      throw fail('setting_invalid', s.key, where, `must be true or false, got ${show(value, kind)}`);
    case 'peers':
      return parsePeers(s, g);
    case 'peerClients':
      return parsePeerClients(s, g);
    case 'statefulset':
      // The service part only; `service,replicas` is split by the caller.
      if (typeof value !== 'string' || !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(value)) {
        throw fail(
          'setting_invalid',
          s.key,
          where,
          `must name a headless service (a DNS label) optionally followed by ",<replicas>", got ${show(value, kind)}`,
        );
      }
      return value;
  }
}

const storeRanges = new Map<string, string>();

/** The range text resolveStoreOptions reports for a store option ("an integer in [1, 8192]"). */
function storeRange(key: string): string {
  let text = storeRanges.get(key);
  if (text === undefined) {
    text = 'an integer';
    try {
      resolveStoreOptions({ [key.slice('store.'.length)]: Number.NaN });
    } catch (err) {
      const m = /must be (an integer in \[[^\]]*\])/.exec(err instanceof Error ? err.message : '');
      if (m) text = m[1]!;
    }
    storeRanges.set(key, text);
  }
  return text;
}

function storeOk(key: string, n: number): boolean {
  try {
    resolveStoreOptions({ [key.slice('store.'.length)]: n });
    return true;
  } catch {
    return false;
  }
}

/** `id=host:port,...` as written in a flag or variable → [id, address] pairs (checked by the caller). */
function splitIdAddressList(s: SettingSpec, value: string, where: string): [unknown, unknown][] {
  const text = value.trim();
  if (text === '') throw fail('setting_invalid', s.key, where, 'must list at least one id=host:port');
  return text.split(',').map((part, i) => {
    const eq = part.indexOf('=');
    if (eq < 0) {
      throw fail(
        'setting_invalid',
        s.key,
        where,
        `entry ${i + 1} must be id=host:port, got ${JSON.stringify(part.trim())}`,
      );
    }
    return [part.slice(0, eq).trim(), part.slice(eq + 1).trim()];
  });
}

function parsePeers(s: SettingSpec, g: Given): PeerSpec[] {
  const { value, where, kind } = g;
  let entries: [unknown, unknown][];
  if (typeof value === 'string') {
    entries = splitIdAddressList(s, value, where);
  } else if (!fromTextKind(kind) && Array.isArray(value)) {
    entries = value.map((e, i) => {
      if (e === null || typeof e !== 'object' || Array.isArray(e)) {
        throw fail(
          'setting_invalid',
          s.key,
          where,
          `entry ${i + 1} must be {"id", "address"}, got ${safeJson(e)}`,
        );
      }
      const o = e as Record<string, unknown>;
      const extra = Object.keys(o).find((k) => k !== 'id' && k !== 'address');
      if (extra !== undefined) {
        throw fail(
          'setting_unknown',
          s.key,
          where,
          `entry ${i + 1} has an unknown key ${JSON.stringify(extra)}`,
        );
      }
      return [o.id, o.address];
    });
  } else if (!fromTextKind(kind) && value !== null && typeof value === 'object') {
    entries = Object.entries(value as Record<string, unknown>);
  } else {
    throw fail(
      'setting_invalid',
      s.key,
      where,
      `must be "id=host:port,...", an object {id: "host:port"} or a list of {id, address}, got ${show(value, kind)}`,
    );
  }
  if (entries.length === 0) throw fail('setting_invalid', s.key, where, 'must list at least one peer');
  const ids = new Set<string>();
  const addresses = new Map<string, string>();
  const out: PeerSpec[] = [];
  for (const [id, address] of entries) {
    if (!isValidNodeId(id)) {
      throw fail(
        'peer_id_invalid',
        s.key,
        where,
        `has an invalid node id ${safeJson(id)} (1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit)`,
      );
    }
    if (ids.has(id))
      throw fail('peer_id_duplicate', s.key, where, `lists node id ${JSON.stringify(id)} twice`);
    ids.add(id);
    const hp = typeof address === 'string' ? splitHostPort(address) : undefined;
    if (hp === undefined || hp.port === 0 || WILDCARD_HOSTS.has(hp.host)) {
      throw fail(
        'peer_address_invalid',
        s.key,
        where,
        `has an invalid address ${safeJson(address)} for ${JSON.stringify(id)} (want a dialable host:port)`,
      );
    }
    const other = addresses.get(address as string);
    if (other !== undefined) {
      throw fail(
        'peer_address_duplicate',
        s.key,
        where,
        `gives ${JSON.stringify(other)} and ${JSON.stringify(id)} the same address ${JSON.stringify(address)}`,
      );
    }
    addresses.set(address as string, id);
    out.push({ id, address: address as string });
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** `id=host:port,...` (or, in the file, `{"id": "host:port"}`) → client addresses by id. */
function parsePeerClients(s: SettingSpec, g: Given): Record<string, string> {
  const { value, where, kind } = g;
  let entries: [unknown, unknown][];
  if (typeof value === 'string') {
    entries = splitIdAddressList(s, value, where);
  } else if (!fromTextKind(kind) && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    entries = Object.entries(value as Record<string, unknown>);
  } else {
    throw fail(
      'setting_invalid',
      s.key,
      where,
      `must be "id=host:port,..." or an object {id: "host:port"}, got ${show(value, kind)}`,
    );
  }
  const out: Record<string, string> = {};
  for (const [id, address] of entries) {
    if (!isValidNodeId(id)) {
      throw fail('peer_id_invalid', s.key, where, `has an invalid node id ${safeJson(id)}`);
    }
    if (Object.hasOwn(out, id))
      throw fail('peer_id_duplicate', s.key, where, `lists node id ${JSON.stringify(id)} twice`);
    const hp = typeof address === 'string' ? splitHostPort(address) : undefined;
    if (hp === undefined || hp.port === 0 || WILDCARD_HOSTS.has(hp.host)) {
      throw fail(
        'peer_address_invalid',
        s.key,
        where,
        `has an invalid client address ${safeJson(address)} for ${JSON.stringify(id)} (want a dialable host:port)`,
      );
    }
    out[id] = address as string;
  }
  return out;
}

const fromTextKind = (kind: SourceKind): boolean => kind === 'flag' || kind === 'env';

// ---------------------------------------------------------------------------------------------------------
// Collecting the layers

/** One layer's values by setting key, parsed and checked. */
type Layer = Map<string, Given>;

function put(layer: Layer, s: SettingSpec, g: Given): void {
  if (s.kind === 'statefulset' && typeof g.value === 'string' && g.value.includes(',')) {
    // `service,replicas` sets both settings, both blamed on this source.
    const [service, replicas, ...rest] = g.value.split(',').map((p) => p.trim());
    if (rest.length > 0 || replicas === '') {
      throw fail(
        'setting_invalid',
        s.key,
        g.where,
        `must be "<service>" or "<service>,<replicas>", got ${show(g.value, g.kind)}`,
      );
    }
    const rs = BY_KEY.get('statefulset.replicas')!;
    const asText = g.kind === 'flag' || g.kind === 'env';
    layer.set(s.key, { ...g, value: parseValue(s, { ...g, value: service }) });
    layer.set(rs.key, {
      ...g,
      value: parseValue(rs, { ...g, kind: asText ? g.kind : 'env', value: replicas }),
    });
    return;
  }
  layer.set(s.key, { ...g, value: parseValue(s, g) });
}

/** A file-shaped object (nested groups, file keys) → a layer. `prefix` names the source in errors. */
function objectLayer(obj: unknown, kind: 'file' | 'options', name: string): Layer {
  const at = (key: string): string => (kind === 'file' ? `${name}: ${key}` : `${name}.${key}`);
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw fail(
      'config_invalid',
      '',
      kind === 'file' ? `${name}:` : name,
      `must be a JSON object, got ${safeJson(obj)}`,
    );
  }
  const layer: Layer = new Map();
  for (const [top, value] of Object.entries(obj)) {
    if (value === undefined) continue;
    if (GROUPS.has(top)) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw fail('setting_invalid', top, at(top), `must be an object, got ${safeJson(value)}`);
      }
      for (const [sub, v] of Object.entries(value)) {
        if (v === undefined) continue;
        const key = `${top}.${sub}`;
        const s = BY_KEY.get(key);
        if (s === undefined) throw fail('setting_unknown', key, at(key), 'is not a known setting');
        put(layer, s, { value: v, where: at(key), kind });
      }
      continue;
    }
    const s = BY_KEY.get(top);
    if (s === undefined) throw fail('setting_unknown', top, at(top), 'is not a known setting');
    put(layer, s, { value, where: at(top), kind });
  }
  return layer;
}

function envLayer(env: Readonly<Record<string, string | undefined>>): Layer {
  const layer: Layer = new Map();
  for (const [name, value] of Object.entries(env)) {
    if (
      !name.startsWith('TIDEMARK_') ||
      value === undefined ||
      name === CONFIG_ENV ||
      NON_CONFIG_ENV.has(name)
    ) {
      continue;
    }
    const s = BY_ENV.get(name);
    if (s === undefined) {
      throw fail('setting_unknown', name, name, 'is not a known setting (see docs/configuration.md)');
    }
    put(layer, s, { value, where: name, kind: 'env' });
  }
  return layer;
}

const PARSE_OPTIONS = Object.fromEntries([
  [CONFIG_FLAG, { type: 'string' as const }],
  // A boolean setting is a bare flag (`--insecure`).
  ...SETTINGS.map((s) => [s.flag, { type: s.kind === 'bool' ? ('boolean' as const) : ('string' as const) }]),
]);

function flagLayer(argv: readonly string[]): { layer: Layer; config?: string } {
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: PARSE_OPTIONS,
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const code = (err as { code?: string }).code;
    const quoted = /'([^']*)'/.exec(message)?.[1] ?? '';
    const flag = quoted.split(' ')[0]!;
    const key = BY_FLAG.get(flag.replace(/^--?/, ''))?.key ?? (flag === `--${CONFIG_FLAG}` ? 'config' : flag);
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      throw fail('flag_unknown', flag, flag, 'is not a known flag (see docs/configuration.md)');
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      throw fail('argument_unexpected', '', 'arguments:', `unexpected argument ${JSON.stringify(quoted)}`);
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag.startsWith('-')) {
      throw fail(
        'flag_invalid',
        key,
        flag,
        `needs a value (write ${flag}=<value> for a value starting with "-")`,
      );
    }
    throw new TidemarkError('INVALID_ARGUMENT', 'flag_invalid', message, { field: key, source: flag }, err);
  }
  const layer: Layer = new Map();
  let config: string | undefined;
  for (const [flag, value] of Object.entries(values)) {
    if (flag === CONFIG_FLAG) {
      config = value as string;
      continue;
    }
    const s = BY_FLAG.get(flag)!;
    put(layer, s, { value, where: `--${flag}`, kind: 'flag' });
  }
  return { layer, config };
}

function fileLayer(path: string, where: string, readFile: (path: string) => string): Layer {
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new TidemarkError(
      'INVALID_ARGUMENT',
      'config_file_unreadable',
      `${where}: cannot read config file ${JSON.stringify(path)}: ${why}`,
      { field: 'config', source: where },
      err,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new TidemarkError(
      'INVALID_ARGUMENT',
      'config_file_invalid',
      `${path}: not valid JSON: ${why}`,
      { field: 'config', source: path },
      err,
    );
  }
  return objectLayer(data, 'file', path);
}

// ---------------------------------------------------------------------------------------------------------
// Resolution

/**
 * Loads the node configuration: defaults < config file < environment < flags. Throws INVALID_ARGUMENT
 * (`details.field` = the config-file key, `details.source` = the flag / variable / file key to fix).
 */
export function loadConfig(input: LoadConfigInput = {}): NodeConfig {
  const env = input.env ?? {};
  const { layer: flags, config: configFlag } = flagLayer(input.argv ?? []);
  const envValues = envLayer(env);
  let file: Layer = new Map();
  const configEnv = env[CONFIG_ENV];
  if (configFlag !== undefined) {
    if (configFlag.trim() === '')
      throw fail('setting_invalid', 'config', '--config', 'must be a path, got ""');
    file = fileLayer(configFlag, '--config', input.readFile ?? readUtf8);
  } else if (configEnv !== undefined && configEnv !== '') {
    file = fileLayer(configEnv, CONFIG_ENV, input.readFile ?? readUtf8);
  } else if (input.file !== undefined) {
    file = fileLayer(input.file, input.file, input.readFile ?? readUtf8);
  }
  return resolve([file, envValues, flags], input.hostname);
}

/**
 * Builds a configuration from a file-shaped object (the same keys as the JSON config file, nested the same
 * way; a NodeConfig itself is accepted), for code that configures nodes in-process (tests, `tidemark dev`).
 * Errors name `options.<key>`.
 */
export function resolveNodeConfig(options: unknown = {}, hostname?: string): NodeConfig {
  return resolve([objectLayer(options, 'options', 'options')], hostname);
}

function readUtf8(path: string): string {
  return readFileSync(path, 'utf8');
}

const DEFAULT_GIVEN = (key: string): Given => ({
  value: getPath(DEFAULT_CONFIG, key),
  where: `default ${key}`,
  kind: 'default',
});

function getPath(obj: unknown, key: string): unknown {
  let v: unknown = obj;
  for (const part of key.split('.')) v = v === undefined ? undefined : (v as Record<string, unknown>)[part];
  return v;
}

function resolve(layers: Layer[], hostname: string | undefined): NodeConfig {
  // Highest-precedence source per key (layers are in increasing precedence).
  const pick = (key: string): Given => {
    for (let i = layers.length - 1; i >= 0; i--) {
      const g = layers[i]!.get(key);
      if (g !== undefined) return g;
    }
    return DEFAULT_GIVEN(key);
  };
  const num = (key: string): number => pick(key).value as number;
  const str = (key: string): string => pick(key).value as string;

  // Raft read mode ('index' when unset).
  const readModeG = pick('raft.readMode');
  const readMode = readModeG.value ?? 'index';
  if (readMode !== 'index' && readMode !== 'lease') {
    throw fail(
      'setting_invalid',
      'raft.readMode',
      readModeG.where,
      `must be "index" or "lease", got ${show(readMode, readModeG.kind)}`,
    );
  }

  // Raft timing.
  const election = pick('raft.electionTicks');
  const heartbeat = pick('raft.heartbeatTicks');
  if ((heartbeat.value as number) >= (election.value as number)) {
    throw fail(
      'setting_conflict',
      'raft.heartbeatTicks',
      heartbeat.where,
      `(${heartbeat.value}) must be less than ${election.where} (${election.value})`,
    );
  }

  // Listen addresses must not collide.
  const listens = ['listen.http', 'listen.grpc', 'listen.peer'].map((k) => pick(k));
  for (let i = 0; i < listens.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = splitHostPort(listens[i]!.value as string)!;
      const b = splitHostPort(listens[j]!.value as string)!;
      if (
        a.port !== 0 &&
        a.port === b.port &&
        (a.host === b.host || WILDCARD_HOSTS.has(a.host) || WILDCARD_HOSTS.has(b.host))
      ) {
        throw fail(
          'setting_conflict',
          ['listen.http', 'listen.grpc', 'listen.peer'][i]!,
          listens[i]!.where,
          `(${listens[i]!.value}) uses the same port as ${listens[j]!.where} (${listens[j]!.value})`,
        );
      }
    }
  }
  const peerListen = splitHostPort(str('listen.peer'))!;

  // Membership: StatefulSet mode or a static list.
  let nodeIdG = pick('nodeId');
  let peersG = pick('peers');
  let stsClients: Record<string, string> = {};
  const stsService = pick('statefulset.service');
  const stsReplicas = pick('statefulset.replicas');
  if (stsService.kind === 'default' && stsReplicas.kind !== 'default') {
    throw fail(
      'setting_conflict',
      'statefulset.replicas',
      stsReplicas.where,
      'is set but StatefulSet mode is off (set --peers-from-statefulset / TIDEMARK_STATEFULSET)',
    );
  }
  // A higher-precedence source decides the membership mode; the same source giving both is a conflict.
  if (stsService.kind !== 'default' && RANK[peersG.kind] === RANK[stsService.kind]) {
    throw fail(
      'setting_conflict',
      'peers',
      peersG.where,
      `cannot be combined with StatefulSet mode (${stsService.where})`,
    );
  }
  if (stsService.kind !== 'default' && RANK[stsService.kind] > RANK[peersG.kind]) {
    const derived = statefulSetPeers(stsService, stsReplicas, hostname, peerListen.port);
    // The derived id overrides a node id from a lower-precedence source; an equal or higher one must agree.
    if (RANK[nodeIdG.kind] >= RANK[stsService.kind] && nodeIdG.value !== derived.nodeId) {
      throw fail(
        'setting_conflict',
        'nodeId',
        nodeIdG.where,
        `(${JSON.stringify(nodeIdG.value)}) disagrees with the id derived from hostname ${JSON.stringify(hostname)} in StatefulSet mode (${stsService.where}): ${JSON.stringify(derived.nodeId)}`,
      );
    }
    nodeIdG = { value: derived.nodeId, where: `hostname (${stsService.where})`, kind: stsService.kind };
    peersG = { value: derived.peers, where: stsService.where, kind: stsService.kind };
    const grpcPort = splitHostPort(str('listen.grpc'))!.port || 4243;
    stsClients = Object.fromEntries(
      derived.peers.map((p) => [p.id, `${p.address.slice(0, p.address.lastIndexOf(':'))}:${grpcPort}`]),
    );
  }
  const nodeId = nodeIdG.value as string;

  const advertiseG = pick('advertisePeer');
  let peers = peersG.value as PeerSpec[];
  let advertisePeer: string;
  if (peers.length === 0) {
    advertisePeer =
      advertiseG.kind !== 'default'
        ? (advertiseG.value as string)
        : `${WILDCARD_HOSTS.has(peerListen.host) ? '127.0.0.1' : peerListen.host}:${peerListen.port === 0 ? 4244 : peerListen.port}`;
    peers = [{ id: nodeId, address: advertisePeer }];
  } else {
    const self = peers.find((p) => p.id === nodeId);
    if (self === undefined) {
      throw fail(
        'peers_missing_self',
        'peers',
        peersG.where,
        `must include this node ${JSON.stringify(nodeId)} (from ${nodeIdG.where}); it lists ${peers.map((p) => JSON.stringify(p.id)).join(', ')}`,
      );
    }
    if (advertiseG.kind !== 'default' && advertiseG.value !== self.address) {
      throw fail(
        'setting_conflict',
        'advertisePeer',
        advertiseG.where,
        `(${advertiseG.value}) disagrees with this node's entry in ${peersG.where} (${self.address})`,
      );
    }
    advertisePeer = self.address;
  }

  // Client addresses: derived (StatefulSet mode) < explicit; every id must be a peer.
  const peerClientsG = pick('peerClients');
  const explicitClients = peerClientsG.value as Record<string, string>;
  for (const id of Object.keys(explicitClients)) {
    if (!peers.some((p) => p.id === id)) {
      throw fail(
        'peer_clients_unknown_id',
        'peerClients',
        peerClientsG.where,
        `names ${JSON.stringify(id)}, which is not a node of the cluster (${peersG.where} lists ${peers.map((p) => JSON.stringify(p.id)).join(', ')})`,
      );
    }
  }
  const peerClients = Object.fromEntries(
    Object.entries({ ...stsClients, ...explicitClients }).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );

  // Replication.
  const replicationG = pick('replication');
  let replication = replicationG.value as number;
  if (replicationG.kind === 'default') replication = Math.min(replication, peers.length);
  else if (replication > peers.length) {
    throw fail(
      'replication_exceeds_nodes',
      'replication',
      replicationG.where,
      `(${replication}) must not exceed the number of nodes (${peers.length}, from ${peersG.where})`,
    );
  }

  const store: Record<string, number> = {};
  for (const name of Object.keys(DEFAULT_STORE_OPTIONS)) store[name] = num(`store.${name}`);

  return deepFreeze({
    nodeId,
    listen: { http: str('listen.http'), grpc: str('listen.grpc'), peer: str('listen.peer') },
    advertisePeer,
    peers,
    peerClients,
    shards: num('shards'),
    replication,
    dataDir: str('dataDir'),
    raft: {
      tickMs: num('raft.tickMs'),
      electionTicks: num('raft.electionTicks'),
      heartbeatTicks: num('raft.heartbeatTicks'),
      compactEntries: num('raft.compactEntries'),
      ...(readMode === 'lease' ? { readMode } : {}),
    },
    checkpointIntervalMs: num('checkpointIntervalMs'),
    limits: {
      maxProposalQueue: num('limits.maxProposalQueue'),
      maxRequestBytes: num('limits.maxRequestBytes'),
      maxSamplesPerRequest: num('limits.maxSamplesPerRequest'),
      maxSeriesPerRequest: num('limits.maxSeriesPerRequest'),
      maxLineBytes: num('limits.maxLineBytes'),
      maxNewSeriesPerMinute: num('limits.maxNewSeriesPerMinute'),
      maxSeriesPerMetric: num('limits.maxSeriesPerMetric'),
      maxConcurrentQueriesPerClient: num('limits.maxConcurrentQueriesPerClient'),
    },
    store: resolveStoreOptions(store as Partial<StoreOptions>),
    // Deferred store sync needs a peer to rebuild from after an OS crash: the default applies with R >= 2.
    storeSyncIntervalMs:
      pick('storeSyncIntervalMs').kind === 'default' && replication < 2 ? 0 : num('storeSyncIntervalMs'),
    // Kafka: present only when configured (kafka.brokers set); configs without it are unchanged.
    ...(str('kafka.brokers') === ''
      ? {}
      : {
          kafka: {
            brokers: str('kafka.brokers'),
            topic: str('kafka.topic'),
            format: str('kafka.format'),
            deadLetterTopic: str('kafka.deadLetterTopic'),
            batchMaxSamples: num('kafka.batchMaxSamples'),
            lingerMs: num('kafka.lingerMs'),
            maxInFlight: num('kafka.maxInFlight'),
          },
        }),
    // Security: present only when configured, like kafka; configs without it are unchanged.
    ...(str('tls.ca') === '' &&
    str('tls.cert') === '' &&
    str('tls.key') === '' &&
    !pick('tls.clientAuth').value
      ? {}
      : {
          tls: {
            ca: str('tls.ca'),
            cert: str('tls.cert'),
            key: str('tls.key'),
            clientAuth: pick('tls.clientAuth').value as boolean,
          },
        }),
    ...(pick('insecure').value === true ? { insecure: true } : {}),
    ...(str('auth.tokenFile') === '' &&
    str('auth.jwtHs256SecretFile') === '' &&
    str('auth.jwtRs256PublicKeyFile') === ''
      ? {}
      : {
          auth: {
            tokenFile: str('auth.tokenFile'),
            jwtHs256SecretFile: str('auth.jwtHs256SecretFile'),
            jwtRs256PublicKeyFile: str('auth.jwtRs256PublicKeyFile'),
          },
        }),
  });
}

/**
 * StatefulSet mode: pod `<name>-<ordinal>` of a StatefulSet with `replicas` pods behind headless service
 * `service` is node `<name>-<ordinal>`; its peers are `<name>-<i>.<service>:<peer port>` for i < replicas.
 */
function statefulSetPeers(
  service: { value: unknown; where: string },
  replicas: { value: unknown; where: string; kind: string },
  hostname: string | undefined,
  peerPort: number,
): { nodeId: string; peers: PeerSpec[] } {
  if (replicas.kind === 'default') {
    throw fail(
      'statefulset_replicas_missing',
      'statefulset.replicas',
      service.where,
      'needs the replica count: "<service>,<replicas>" (or --statefulset-replicas / TIDEMARK_STATEFULSET_REPLICAS)',
    );
  }
  const pod = (hostname ?? '').split('.')[0]!;
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)-(\d+)$/.exec(pod);
  if (m === null) {
    throw fail(
      'statefulset_hostname_invalid',
      'statefulset.service',
      service.where,
      `needs a StatefulSet pod hostname "<name>-<ordinal>", got ${JSON.stringify(hostname ?? '')}`,
    );
  }
  const name = m[1]!;
  const ordinal = Number(m[3]);
  const n = replicas.value as number;
  if (ordinal >= n) {
    throw fail(
      'statefulset_ordinal_out_of_range',
      'statefulset.replicas',
      replicas.where,
      `(${n}) is not above this pod's ordinal ${ordinal} (hostname ${JSON.stringify(hostname)})`,
    );
  }
  const port = peerPort === 0 ? 4244 : peerPort;
  const peers: PeerSpec[] = [];
  for (let i = 0; i < n; i++) {
    const id = `${name}-${i}`;
    if (!isValidNodeId(id)) {
      throw fail(
        'statefulset_hostname_invalid',
        'statefulset.service',
        service.where,
        `derives an invalid node id ${JSON.stringify(id)}`,
      );
    }
    peers.push({ id, address: `${id}.${service.value as string}:${port}` });
  }
  peers.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { nodeId: `${name}-${ordinal}`, peers };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
