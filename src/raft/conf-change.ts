/**
 * Encoding of a ConfChange in a ConfChange entry's data: one byte for the type, then the node id in UTF-8.
 */
import { dataCorruption } from '../errors/errors.js';
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type NodeId,
} from './types.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const id = enc.encode(cc.node);
  const out = new Uint8Array(1 + id.length);
  out[0] = cc.type;
  out.set(id, 1);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.length < 1) throw dataCorruption('raft_conf_change', 'empty conf change entry');
  const type = data[0];
  if (
    type !== ConfChangeType.AddVoter &&
    type !== ConfChangeType.RemoveNode &&
    type !== ConfChangeType.AddLearner
  ) {
    throw dataCorruption('raft_conf_change', `unknown conf change type ${type}`);
  }
  return { type: type as ConfChangeType, node: dec.decode(data.subarray(1)) };
}

/**
 * The initial durable state of a brand-new cluster member listed in `voters` (etcd's Bootstrap): one
 * committed AddVoter entry per voter at term 1, so that members added later, which start from an empty
 * log and configuration, rebuild the configuration by applying the log from index 1. Re-applying the
 * entries on a bootstrapped node is a no-op (applyConfChange is idempotent). Nodes joining an existing
 * cluster start empty (no entries, zero hard state, empty ConfState).
 */
export function bootstrapState(voters: NodeId[]): {
  entries: Entry[];
  hardState: HardState;
  conf: ConfState;
} {
  const entries: Entry[] = voters.map((node, i) => ({
    term: 1,
    index: i + 1,
    type: EntryType.ConfChange,
    data: encodeConfChange({ type: ConfChangeType.AddVoter, node }),
  }));
  return {
    entries,
    hardState: { term: 1, vote: '', commit: entries.length },
    conf: { voters: [...voters], learners: [] },
  };
}
