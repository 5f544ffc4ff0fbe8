/**
 * Majority-quorum arithmetic (etcd-io/raft quorum/majority.go, single configuration: membership changes are
 * one server at a time, so joint quorums are never needed).
 */
import type { NodeId } from './types.js';

export enum VoteResult {
  Pending = 0,
  Lost = 1,
  Won = 2,
}

/** Number of votes needed for a majority of `n` voters. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * The largest index that a majority of `voters` have acknowledged (`matchOf` gives each voter's index).
 * Returns 0 for an empty voter set (nothing can be committed without voters).
 */
export function committedIndex(voters: Iterable<NodeId>, matchOf: (id: NodeId) => number): number {
  const matches: number[] = [];
  for (const id of voters) matches.push(matchOf(id));
  if (matches.length === 0) return 0;
  matches.sort((a, b) => b - a);
  return matches[majority(matches.length) - 1];
}

/** Outcome of an election given the votes recorded so far (missing voters are pending). */
export function voteResult(voters: Iterable<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  let n = 0;
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    n++;
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  if (n === 0) return VoteResult.Won; // vacuous; callers never campaign without being a voter
  const q = majority(n);
  if (granted >= q) return VoteResult.Won;
  if (n - rejected < q) return VoteResult.Lost;
  return VoteResult.Pending;
}
