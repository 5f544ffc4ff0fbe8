/**
 * Raft entry payloads of a shard's log: a write batch (optionally tagged with the Kafka records it covers) or
 * a delete. The bytes are the shard entry format of src/ingest/batch-codec.ts (docs/format/batch.md); this
 * module adapts it to the replica's commands.
 */
import { dataCorruption } from '../errors/index.js';
import {
  decodeBatch,
  decodeDelete,
  EntryKind,
  encodeBatch,
  encodeDelete,
  entryKind,
  type KafkaPosition,
} from '../ingest/batch-codec.js';
import type { DeleteRequest, SampleBatch } from '../storage/index.js';

export type { KafkaPosition };

export type ShardCommand =
  | { kind: 'batch'; batch: SampleBatch; kafka?: KafkaPosition }
  | { kind: 'delete'; request: DeleteRequest };

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

export function encodeNextOffset(next: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(next));
  return b;
}

/** The stored next offset; 0 when nothing from Kafka was applied yet. */
export function decodeNextOffset(v: Uint8Array | undefined): number {
  if (v === undefined) return 0;
  if (v.length !== 8)
    throw dataCorruption('kafka_offset_invalid', `a stored Kafka offset has ${v.length} bytes`);
  return Number(new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0));
}

export const entryCodec: EntryCodec = {
  encode(cmd) {
    if (cmd.kind === 'delete') return encodeDelete(cmd.request);
    return encodeBatch(cmd.batch, cmd.kafka === undefined ? {} : { kafka: cmd.kafka });
  },
  decode(data) {
    const kind = entryKind(data);
    if (kind === EntryKind.delete) return { kind: 'delete', request: decodeDelete(data) };
    const { batch, extra } = decodeBatch(data);
    return extra.kafka === undefined
      ? { kind: 'batch', batch }
      : { kind: 'batch', batch, kafka: extra.kafka };
  },
};
