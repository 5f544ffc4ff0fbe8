/**
 * Raft member identity. A node's replicas take part in Raft under a member id: the node id itself for
 * the node's first incarnation (every founding configuration lists plain node ids), `<node>~<incarnation>`
 * after the node lost its data directory and rejoined. A new incarnation is a new member: its lost votes
 * and acknowledgements can never count again, because the old member is removed from every configuration
 * before the new one becomes a voter (docs/cluster.md, "Membership and rejoining"). Node ids never contain
 * `~` (config.ts), so the node of a member id is unambiguous.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TidemarkError } from '../errors/index.js';
import type { NodeId } from '../raft/types.js';

const SEP = '~';

export function memberId(node: NodeId, incarnation: string): string {
  return incarnation === '' ? node : `${node}${SEP}${incarnation}`;
}

export function nodeOfMember(member: string): NodeId {
  const i = member.indexOf(SEP);
  return i < 0 ? member : member.slice(0, i);
}

/** The member of `node` among `members`, if any (the newest listed wins; a node has at most two during a rejoin). */
export function memberOfNode(members: readonly string[], node: NodeId): string | undefined {
  let found: string | undefined;
  for (const m of members) if (nodeOfMember(m) === node) found = m;
  return found;
}

/** `<dataDir>/identity.json`: written once when a data directory is first used (format version 1). */
export interface NodeIdentity {
  format: 1;
  nodeId: NodeId;
  /** '' for the node's founding incarnation. */
  incarnation: string;
  createdAtMs: number;
}

export const IDENTITY_FILE = 'identity.json';
/** The node-wide Raft log environment; its presence marks a data directory that has held replicas. */
export const RAFT_LOG_DIR = 'raft-log';

/**
 * Reads the identity of a data directory. A directory from before identities were recorded (it has a Raft
 * log but no identity file) is the founding incarnation. Undefined for a directory that never held state.
 * A directory that belongs to another node is refused: starting on it would impersonate that node.
 */
export function readIdentity(dataDir: string, nodeId: NodeId): NodeIdentity | undefined {
  const file = join(dataDir, IDENTITY_FILE);
  if (!existsSync(file)) {
    if (!existsSync(join(dataDir, RAFT_LOG_DIR))) return undefined;
    return { format: 1, nodeId, incarnation: '', createdAtMs: 0 };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new TidemarkError(
      'DATA_CORRUPTION',
      'identity_unreadable',
      `${file} is not valid JSON: ${String(err)}`,
    );
  }
  const id = parsed as Partial<NodeIdentity>;
  if (id.format !== 1 || typeof id.nodeId !== 'string' || typeof id.incarnation !== 'string') {
    throw new TidemarkError('DATA_CORRUPTION', 'identity_unreadable', `${file} is not a version-1 identity`);
  }
  if (id.nodeId !== nodeId) {
    throw new TidemarkError(
      'FAILED_PRECONDITION',
      'data_dir_other_node',
      `data directory ${dataDir} belongs to node ${id.nodeId}, not ${nodeId}`,
      { node: id.nodeId },
    );
  }
  return { format: 1, nodeId, incarnation: id.incarnation, createdAtMs: id.createdAtMs ?? 0 };
}

/** Writes the identity atomically (temp file + rename). */
export function writeIdentity(dataDir: string, identity: NodeIdentity): void {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, IDENTITY_FILE);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(identity)}\n`, { flush: true });
  renameSync(tmp, file);
}

export function newIncarnation(random: () => Uint8Array = () => randomBytes(4)): string {
  return Buffer.from(random()).toString('hex');
}

export interface HelloAnswer {
  node: NodeId;
  started: boolean;
  progressedShards: number[];
  /** The node's gRPC client-API address; '' while not known (not listening yet). */
  clientAddress?: string;
}

/**
 * Decides the incarnation of a node whose data directory is empty: the founding one only if no shard this
 * node hosts has made progress anywhere. Founding is safe only when every other replica of those shards
 * answered (a shard can progress with a quorum that excludes any single silent peer), so the caller keeps
 * asking until `decide` returns a value. Any answer showing progress decides at once: a new incarnation.
 */
export function decideIncarnation(
  shardPeers: ReadonlyMap<number, readonly NodeId[]>,
  answers: ReadonlyMap<NodeId, HelloAnswer>,
  makeIncarnation: () => string,
): string | undefined {
  for (const [shard, peers] of shardPeers) {
    for (const p of peers) if (answers.get(p)?.progressedShards.includes(shard)) return makeIncarnation();
  }
  for (const peers of shardPeers.values()) for (const p of peers) if (!answers.has(p)) return undefined;
  return '';
}
