/**
 * Replica placement: rendezvous (highest-random-weight) hashing of (shard, node) → the top R nodes per shard.
 *
 * Weight = xxh64(u32 big-endian shard ‖ UTF-8 node id, seed PLACEMENT_SEED), an unsigned 64-bit integer; a
 * shard's nodes rank by descending weight (ties, which need a 64-bit collision, by node id). Every node computes
 * the same map from the same (S, nodes, R); the order nodes are listed in does not matter. Adding a node moves
 * a replica only onto the new node, and only for the shards where it ranks in the top R (≈ R/(N+1) of them);
 * removing one moves only its replicas.
 *
 * The first replica of each shard is its *preferred leader*. Preferences are balanced: a greedy pass over the
 * shards in order gives each shard to the replica with the fewest preferred-leader shards so far (ties by
 * rendezvous rank), then a repair pass moves preferences along replica paths until no node has two more than
 * another whenever the replica sets allow it. The remaining replicas follow in rendezvous order.
 */
import { invalidArgument } from '../errors/index.js';
import { h64Raw } from '../model/hash.js';

/** Seed of the placement hash ("tidemark" in ASCII); part of the placement format: never change it. */
export const PLACEMENT_SEED = 0x746964656d61726bn;

export interface ShardPlacement {
  readonly shard: number;
  /** R distinct node ids; replicas[0] is the preferred leader, the rest in rendezvous order. */
  readonly replicas: readonly string[];
}

const utf8 = new TextEncoder();

/** The rendezvous weight of `node` for `shard`. */
export function rendezvousWeight(shard: number, node: string): bigint {
  const id = utf8.encode(node);
  const bytes = new Uint8Array(4 + id.length);
  new DataView(bytes.buffer).setUint32(0, shard);
  bytes.set(id, 4);
  return h64Raw(bytes, PLACEMENT_SEED);
}

/** All `nodes` ranked for `shard`, best first. */
export function rankNodes(shard: number, nodes: readonly string[]): string[] {
  const weighted = nodes.map((node) => ({ node, w: rendezvousWeight(shard, node) }));
  weighted.sort((a, b) => (a.w > b.w ? -1 : a.w < b.w ? 1 : a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  return weighted.map((x) => x.node);
}

/** Checks the inputs of placeShards; INVALID_ARGUMENT naming the field. */
export function validatePlacementInput(
  shardCount: number,
  nodes: readonly string[],
  replication: number,
): void {
  if (!Number.isSafeInteger(shardCount) || shardCount < 1) {
    throw invalidArgument(
      'shard_count_invalid',
      'shards',
      `shard count must be a positive integer, got ${shardCount}`,
    );
  }
  if (!Array.isArray(nodes) || nodes.length === 0) {
    throw invalidArgument('nodes_empty', 'nodes', 'placement needs at least one node');
  }
  const seen = new Set<string>();
  for (const n of nodes) {
    if (typeof n !== 'string' || n === '')
      throw invalidArgument('node_id_invalid', 'nodes', 'node ids must be non-empty strings');
    if (seen.has(n))
      throw invalidArgument('node_id_duplicate', 'nodes', `node id ${JSON.stringify(n)} is listed twice`);
    seen.add(n);
  }
  if (!Number.isSafeInteger(replication) || replication < 1 || replication > nodes.length) {
    throw invalidArgument(
      'replication_invalid',
      'replication',
      `replication must be an integer in [1, ${nodes.length}] (the node count), got ${replication}`,
    );
  }
}

/**
 * Places every shard: the top `replication` nodes by rendezvous weight, reordered so replicas[0] is the
 * balanced preferred leader. Deterministic in (shardCount, set of nodes, replication).
 */
export function placeShards(
  shardCount: number,
  nodes: readonly string[],
  replication: number,
): ShardPlacement[] {
  validatePlacementInput(shardCount, nodes, replication);
  const sorted = [...nodes].sort();
  const ranked: string[][] = [];
  for (let shard = 0; shard < shardCount; shard++)
    ranked.push(rankNodes(shard, sorted).slice(0, replication));
  const leaders = balanceLeaders(ranked, sorted);
  return ranked.map((replicas, shard) => {
    const leader = leaders[shard]!;
    return Object.freeze({
      shard,
      replicas: Object.freeze([leader, ...replicas.filter((n) => n !== leader)]),
    });
  });
}

/**
 * Chooses a preferred leader per shard among its replicas (given in rendezvous order) so that every node leads
 * ⌊S/N⌋ or ⌈S/N⌉ shards when the replica sets allow (a node holding fewer replicas than that cannot).
 */
export function balanceLeaders(
  replicasByShard: readonly (readonly string[])[],
  nodes: readonly string[],
): string[] {
  const count = new Map<string, number>(nodes.map((n) => [n, 0]));
  const leader: string[] = [];
  // Greedy: fewest preferred-leader shards so far, ties by rendezvous rank.
  for (const replicas of replicasByShard) {
    let best = replicas[0]!;
    for (const n of replicas) if (count.get(n)! < count.get(best)!) best = n;
    leader.push(best);
    count.set(best, count.get(best)! + 1);
  }
  // Repair: while some node leads two more than another node reachable from it, shift one preference along a
  // shortest path of shards (u leads shard s, v replicates s → v leads s). BFS in node order and shard order
  // keeps it deterministic; each shift lowers the sum of squared counts, so it terminates.
  const shardsLedBy = (n: string): number[] => {
    const out: number[] = [];
    for (let s = 0; s < leader.length; s++) if (leader[s] === n) out.push(s);
    return out;
  };
  for (;;) {
    let moved = false;
    const byLoad = [...nodes].sort((a, b) => count.get(b)! - count.get(a)! || (a < b ? -1 : a > b ? 1 : 0));
    for (const src of byLoad) {
      // BFS from src to the least-loaded reachable node.
      const prev = new Map<string, { from: string; shard: number }>();
      const queue = [src];
      const visited = new Set([src]);
      let target: string | undefined;
      for (let qi = 0; qi < queue.length; qi++) {
        const u = queue[qi]!;
        for (const s of shardsLedBy(u)) {
          for (const v of replicasByShard[s]!) {
            if (visited.has(v)) continue;
            visited.add(v);
            prev.set(v, { from: u, shard: s });
            queue.push(v);
            if (
              count.get(v)! + 1 < count.get(src)! &&
              (target === undefined || count.get(v)! < count.get(target)!)
            ) {
              target = v;
            }
          }
        }
      }
      if (target === undefined) continue;
      for (let v = target; v !== src; ) {
        const step = prev.get(v)!;
        leader[step.shard] = v;
        v = step.from;
      }
      count.set(src, count.get(src)! - 1);
      count.set(target, count.get(target)! + 1);
      moved = true;
      break;
    }
    if (!moved) return leader;
  }
}
