/**
 * Raft entry payloads of a shard's log: a write batch (optionally tagged with the Kafka records it covers) or
 * a delete. The bytes are the shard entry format of src/ingest/batch-codec.ts (docs/format/batch.md); this
 * module adapts it to the replica's commands.
 */
import { dataCorruption } from '../errors/index.js';
import {
  decodeBatch,
  decodeDelete,
  decodePolicy,
  EntryKind,
  encodeBatch,
  encodeDelete,
  encodePolicy,
  entryKind,
  type KafkaPosition,
  type ShardPolicy,
} from '../ingest/batch-codec.js';
import type { Series } from '../model/index.js';
import type { DeleteRequest, SampleBatch } from '../storage/index.js';

export type { KafkaPosition, ShardPolicy };

export type ShardCommand =
  | { kind: 'batch'; batch: SampleBatch; kafka?: KafkaPosition }
  | { kind: 'delete'; request: DeleteRequest }
  | { kind: 'policy'; policy: ShardPolicy };

/**
 * Store meta key of the shard's retention (a policy entry's retentionMs, 8 bytes big-endian), written at the
 * entry's index on every replica; absent until a policy entry was applied (the node's setting applies).
 */
export const RETENTION_MS_KEY = 'policy.retentionMs';

export interface EntryCodec {
  /** Throws INVALID_ARGUMENT for what the format cannot carry (invalid series, timestamps, offsets). */
  encode(cmd: ShardCommand): Uint8Array;
  /** Throws DATA_CORRUPTION for a malformed payload or an unknown version. */
  decode(data: Uint8Array): ShardCommand;
}

/**
 * Store meta key of a shard's Kafka position: the next offset to apply (the last applied record + 1) as
 * 8 bytes big-endian. Written in the same transaction as the samples it accounts for.
 */
export const KAFKA_NEXT_OFFSET_KEY = 'kafka.nextOffset';

/** A store meta value holding a safe non-negative integer: 8 bytes big-endian. */
export function encodeU64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v));
  return b;
}

export function decodeU64(v: Uint8Array, what: string): number {
  if (v.length !== 8) throw dataCorruption(`${what}_invalid`, `a stored ${what} has ${v.length} bytes`);
  return Number(new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0));
}

export function encodeNextOffset(next: number): Uint8Array {
  return encodeU64(next);
}

/** The stored next offset; 0 when nothing from Kafka was applied yet. */
export function decodeNextOffset(v: Uint8Array | undefined): number {
  return v === undefined ? 0 : decodeU64(v, 'kafka_offset');
}

/** The shard's replicated retention, or undefined when no policy entry was applied yet. */
export function decodeRetention(v: Uint8Array | undefined): number | undefined {
  return v === undefined ? undefined : decodeU64(v, 'retention');
}

/**
 * Write commands this process encoded, by the very array it returned: the leader applies its own proposals
 * without decoding them again, as long as the Raft log hands back the proposed array (it does while the
 * entry is in memory). The memo holds what decoding would give — interned series, the same samples — and
 * is taken once; any other array, and every entry on a follower, decodes. The proposer must not change the
 * batch after encoding it (no caller does: each awaits its write).
 */
const encodedHere = new WeakMap<Uint8Array, ShardCommand>();

export const entryCodec: EntryCodec = {
  encode(cmd) {
    if (cmd.kind === 'delete') return encodeDelete(cmd.request);
    if (cmd.kind === 'policy') return encodePolicy(cmd.policy);
    const series: Series[] = [];
    const b = cmd.batch;
    const data = encodeBatch(b, cmd.kafka === undefined ? {} : { kafka: cmd.kafka }, series);
    const n = b.length;
    let timestamps = b.timestamps.subarray(0, n);
    // The entry holds integers: a -0 timestamp decodes as 0, so the memo must say 0 too.
    if (timestamps.includes(0)) timestamps = timestamps.map((t) => t + 0);
    const batch: SampleBatch = {
      series,
      seriesRef: b.seriesRef.subarray(0, n),
      timestamps,
      values: b.values.subarray(0, n),
      length: n,
    };
    encodedHere.set(
      data,
      cmd.kafka === undefined ? { kind: 'batch', batch } : { kind: 'batch', batch, kafka: { ...cmd.kafka } },
    );
    return data;
  },
  decode(data) {
    const memo = encodedHere.get(data);
    if (memo !== undefined) {
      encodedHere.delete(data);
      return memo;
    }
    const kind = entryKind(data);
    if (kind === EntryKind.delete) return { kind: 'delete', request: decodeDelete(data) };
    if (kind === EntryKind.policy) return { kind: 'policy', policy: decodePolicy(data) };
    const { batch, extra } = decodeBatch(data);
    return extra.kafka === undefined
      ? { kind: 'batch', batch }
      : { kind: 'batch', batch, kafka: extra.kafka };
  },
};
