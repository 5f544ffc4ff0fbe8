/**
 * The narrow interface between the Kafka ingester and a shard replica. The ingester knows nothing about
 * Raft: it asks the target where to resume and hands it batches tagged with their Kafka position; the
 * target proposes each batch to the shard's Raft group and applies it (samples + offset in one
 * transaction). The exactly-once argument (docs/kafka.md) rests on the apply rule below.
 */
import type { SampleBatch } from '../../storage/store.js';

/** Where a batch came from: records [firstOffset, lastOffset] of `partition`, all of them accounted for. */
export interface KafkaPosition {
  partition: number;
  /** Offset of the first record the batch covers (= the target's nextOffset() when the batch was read). */
  firstOffset: bigint;
  /** Offset of the last record the batch covers (bad records and skipped ones included). */
  lastOffset: bigint;
}

/**
 * A shard replica seen from its partition's ingester.
 *
 * Apply rule (the target's half of exactly-once): an entry carrying `pos` is applied, atomically with the
 * stored offset, only when `pos.firstOffset` equals the stored next offset (stored lastOffset + 1, or 0);
 * otherwise it is a replay (an earlier proposal whose outcome the ingester could not know committed after
 * all) or out of order, and its samples are dropped while the entry itself still counts as applied.
 * `kafkaApplyDecision` implements the check.
 */
export interface KafkaShardTarget {
  readonly shard: number;
  /** The stored last offset + 1, or 0 when this shard has applied nothing from Kafka yet. */
  nextOffset(): bigint;
  /**
   * Proposes the batch with its position and resolves when it is committed and applied here (so a later
   * nextOffset() reflects it), or rejects (not leader, timeout, ...). The batch's arrays may be views of
   * a reused buffer: copy or encode them before resolving. `signal` aborts when the ingester stops.
   */
  propose(batch: SampleBatch, pos: KafkaPosition, signal: AbortSignal): Promise<void>;
}

/** The apply rule: whether an entry at `pos` is applied, given the stored next offset. */
export function kafkaApplyDecision(storedNext: bigint, pos: KafkaPosition): 'apply' | 'replay' | 'gap' {
  if (pos.firstOffset === storedNext) return 'apply';
  return pos.firstOffset < storedNext ? 'replay' : 'gap';
}

/** Key under which a shard stores its Kafka position in the store's meta (applyBatch's `meta`). */
export const KAFKA_OFFSET_META_KEY = 'kafka.nextOffset';

/** Encodes a next offset for the store's meta: 8 bytes, big-endian signed. */
export function encodeNextOffset(next: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, next);
  return out;
}

/** Decodes encodeNextOffset's bytes; undefined (nothing stored) → 0n. */
export function decodeNextOffset(bytes: Uint8Array | undefined): bigint {
  if (bytes === undefined) return 0n;
  if (bytes.length !== 8) throw new RangeError(`a stored Kafka offset has 8 bytes, got ${bytes.length}`);
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigInt64(0);
}

/** Counters of one partition's ingester (exported on /metrics and in `tidemark status` by the node). */
export interface PartitionStats {
  partition: number;
  /** Whether the loop runs (this node leads the shard). */
  running: boolean;
  /** Next offset to fetch. */
  fetchOffset: bigint;
  /** Next offset the target has applied (nextOffset() at the last check). */
  committedOffset: bigint;
  /** The partition's high watermark at the last fetch. */
  highWatermark: bigint;
  /** highWatermark - committedOffset (0 when unknown). */
  lag: bigint;
  records: number;
  samples: number;
  badRecords: number;
  batches: number;
  fetchErrors: number;
  proposeErrors: number;
  deadLetterErrors: number;
}
