/**
 * The shard map: an immutable value holding, per shard, its replicas (replicas[0] = preferred leader, from
 * ./placement) and the leader and term last observed from Raft. Observations return a new map with `version`
 * one higher; an unchanged or stale (older term) observation returns the same map. JSON (de)serialization is
 * the wire shape of the Status / ShardMap APIs.
 */
import { invalidArgument, TidemarkError } from '../errors/index.js';
import { type SeriesId, shardOf } from '../model/index.js';
import type { NodeConfig } from './config.js';
import { placeShards, validatePlacementInput } from './placement.js';

export interface ShardInfo {
  readonly shard: number;
  /** R distinct node ids; replicas[0] is the preferred leader. */
  readonly replicas: readonly string[];
  /** = replicas[0]. */
  readonly preferredLeader: string;
  /** Leader last observed ('' = none known). */
  readonly leader: string;
  /** Raft term of that observation (0 = nothing observed). */
  readonly term: number;
}

/** One observation of a shard's Raft soft state. */
export interface LeaderObservation {
  shard: number;
  /** '' when the observer knows no leader. */
  leader: string;
  term: number;
}

/** JSON form (Status / ShardMap APIs). */
export interface ShardMapJSON {
  version: number;
  shardCount: number;
  replication: number;
  nodes: string[];
  shards: { shard: number; replicas: string[]; preferredLeader: string; leader: string; term: number }[];
}

export class ShardMap {
  readonly version: number;
  readonly shardCount: number;
  readonly replication: number;
  /** Member node ids, sorted. */
  readonly nodes: readonly string[];
  private readonly infos: readonly ShardInfo[];

  private constructor(
    version: number,
    replication: number,
    nodes: readonly string[],
    infos: readonly ShardInfo[],
  ) {
    this.version = version;
    this.shardCount = infos.length;
    this.replication = replication;
    this.nodes = nodes;
    this.infos = infos;
    Object.freeze(this);
  }

  /** The initial map (version 0, nothing observed) for S shards over `nodes` with R replicas each. */
  static create(shardCount: number, nodes: readonly string[], replication: number): ShardMap {
    validatePlacementInput(shardCount, nodes, replication);
    const sorted = Object.freeze([...nodes].sort());
    const infos = placeShards(shardCount, sorted, replication).map((p) =>
      freezeInfo(p.shard, p.replicas, '', 0),
    );
    return new ShardMap(0, replication, sorted, Object.freeze(infos));
  }

  static fromConfig(config: NodeConfig): ShardMap {
    return ShardMap.create(
      config.shards,
      config.peers.map((p) => p.id),
      config.replication,
    );
  }

  /** The shard a series belongs to: jump(id, S). */
  shardOfSeries(id: SeriesId): number {
    return shardOf(id, this.shardCount);
  }

  shard(shard: number): ShardInfo {
    const info = this.infos[shard];
    if (!Number.isInteger(shard) || info === undefined) {
      throw new TidemarkError(
        'NOT_FOUND',
        'shard_not_found',
        `no shard ${shard} (shard count ${this.shardCount})`,
        {
          field: 'shard',
        },
      );
    }
    return info;
  }

  shards(): readonly ShardInfo[] {
    return this.infos;
  }

  replicasOf(shard: number): readonly string[] {
    return this.shard(shard).replicas;
  }

  preferredLeaderOf(shard: number): string {
    return this.shard(shard).preferredLeader;
  }

  /** The observed leader, '' when none is known. */
  leaderOf(shard: number): string {
    return this.shard(shard).leader;
  }

  /** Shards `node` holds a replica of, ascending. */
  shardsOfNode(node: string): number[] {
    const out: number[] = [];
    for (const info of this.infos) if (info.replicas.includes(node)) out.push(info.shard);
    return out;
  }

  /**
   * Records a leader/term seen in a shard's Raft soft state. Stale (term below the recorded one) or unchanged
   * observations return this map; anything else returns a copy with version + 1.
   */
  withObservedLeader(shard: number, leader: string, term: number): ShardMap {
    return this.withObservations([{ shard, leader, term }]);
  }

  /** Several observations at once; version + 1 if any of them changed the map. */
  withObservations(observations: readonly LeaderObservation[]): ShardMap {
    let infos: ShardInfo[] | undefined;
    for (const { shard, leader, term } of observations) {
      const cur = (infos ?? this.infos)[shard] ?? this.shard(shard);
      if (typeof leader !== 'string') {
        throw invalidArgument('leader_invalid', 'leader', 'observed leader must be a string');
      }
      if (!Number.isSafeInteger(term) || term < 0) {
        throw invalidArgument(
          'term_invalid',
          'term',
          `observed term must be a non-negative integer, got ${term}`,
        );
      }
      if (term < cur.term || (term === cur.term && leader === cur.leader)) continue;
      // Within one term a known leader does not turn into another; only forget it (e.g. a check-quorum
      // step-down) or learn it.
      infos ??= [...this.infos];
      infos[shard] = freezeInfo(shard, cur.replicas, leader, term);
    }
    if (infos === undefined) return this;
    return new ShardMap(this.version + 1, this.replication, this.nodes, Object.freeze(infos));
  }

  toJSON(): ShardMapJSON {
    return {
      version: this.version,
      shardCount: this.shardCount,
      replication: this.replication,
      nodes: [...this.nodes],
      shards: this.infos.map((i) => ({
        shard: i.shard,
        replicas: [...i.replicas],
        preferredLeader: i.preferredLeader,
        leader: i.leader,
        term: i.term,
      })),
    };
  }

  /** Parses and validates the JSON form; INVALID_ARGUMENT naming the field (`shardMap.shards[3].replicas`). */
  static fromJSON(json: unknown): ShardMap {
    const bad = (field: string, message: string): TidemarkError =>
      invalidArgument('shard_map_invalid', `shardMap${field}`, `shardMap${field}: ${message}`);
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad('', 'must be an object');
    const o = json as Record<string, unknown>;
    const int = (v: unknown, field: string, lo: number): number => {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo) {
        throw bad(field, `must be an integer >= ${lo}, got ${JSON.stringify(v)}`);
      }
      return v;
    };
    const version = int(o.version, '.version', 0);
    const shardCount = int(o.shardCount, '.shardCount', 1);
    const replication = int(o.replication, '.replication', 1);
    if (!Array.isArray(o.nodes) || o.nodes.some((n) => typeof n !== 'string' || n === '')) {
      throw bad('.nodes', 'must be a list of node ids');
    }
    const nodes = o.nodes as string[];
    const nodeSet = new Set(nodes);
    if (nodeSet.size !== nodes.length) throw bad('.nodes', 'lists a node twice');
    if (replication > nodes.length) throw bad('.replication', `exceeds the node count ${nodes.length}`);
    if (!Array.isArray(o.shards) || o.shards.length !== shardCount) {
      throw bad('.shards', `must be a list of ${shardCount} shards`);
    }
    const infos = o.shards.map((raw: unknown, i): ShardInfo => {
      const f = `.shards[${i}]`;
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad(f, 'must be an object');
      const s = raw as Record<string, unknown>;
      if (s.shard !== i) throw bad(`${f}.shard`, `must be ${i}, got ${JSON.stringify(s.shard)}`);
      const replicas = s.replicas;
      if (
        !Array.isArray(replicas) ||
        replicas.length !== replication ||
        replicas.some((r) => typeof r !== 'string' || !nodeSet.has(r)) ||
        new Set(replicas).size !== replicas.length
      ) {
        throw bad(`${f}.replicas`, `must be ${replication} distinct member node ids`);
      }
      if (s.preferredLeader !== replicas[0]) throw bad(`${f}.preferredLeader`, 'must equal replicas[0]');
      if (typeof s.leader !== 'string') throw bad(`${f}.leader`, 'must be a node id or ""');
      const term = int(s.term, `${f}.term`, 0);
      return freezeInfo(i, replicas as string[], s.leader, term);
    });
    return new ShardMap(version, replication, Object.freeze([...nodes].sort()), Object.freeze(infos));
  }
}

function freezeInfo(shard: number, replicas: readonly string[], leader: string, term: number): ShardInfo {
  return Object.freeze({
    shard,
    replicas: Object.isFrozen(replicas) ? replicas : Object.freeze([...replicas]),
    preferredLeader: replicas[0]!,
    leader,
    term,
  });
}
