/**
 * Snapshot streaming, independent of the transport: a Snap message is cut into bounded chunks on the
 * sender and put back together on the receiver, so no single frame (gRPC message, memory hop) carries a
 * whole state-machine image, and a receiver never buffers more than `maxBytes` per sender.
 *
 * Every chunk repeats the message header and snapshot metadata (they are small), carries its byte offset
 * and the image's total length; the last chunk carries a CRC-32 of the whole image. The receiver accepts
 * chunks of one stream in order only: a gap, a reordering, a size or checksum mismatch discards the stream
 * (the leader resends the snapshot after reportSnapshot(false) / its next probe).
 */
import { crc32 } from 'node:zlib';
import { TidemarkError } from '../errors/index.js';
import type { Message, NodeId, SnapshotMeta } from './types.js';

export interface SnapshotChunk {
  /** The Snap message without its snapshot (from, to, term, ...). */
  header: Omit<Message, 'snapshot'>;
  meta: SnapshotMeta;
  /** Byte offset of `data` in the image. */
  offset: number;
  /** Length of the whole image. */
  total: number;
  data: Uint8Array;
  /** CRC-32 of the whole image; set on the last chunk only. */
  checksum?: number;
}

export const DEFAULT_SNAPSHOT_CHUNK_BYTES = 1 << 20;

/** Cuts a Snap message into chunks of at most `chunkBytes` of image (an empty image is one chunk). */
export function chunkSnapshot(message: Message, chunkBytes = DEFAULT_SNAPSHOT_CHUNK_BYTES): SnapshotChunk[] {
  const snap = message.snapshot;
  if (snap === undefined) throw new TypeError('chunkSnapshot needs a message with a snapshot');
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1) throw new RangeError('chunkBytes must be >= 1');
  const { snapshot: _, ...header } = message;
  const total = snap.data.length;
  const chunks: SnapshotChunk[] = [];
  let offset = 0;
  do {
    const end = Math.min(total, offset + chunkBytes);
    chunks.push({ header, meta: snap.meta, offset, total, data: snap.data.subarray(offset, end) });
    offset = end;
  } while (offset < total);
  chunks[chunks.length - 1]!.checksum = crc32(snap.data);
  return chunks;
}

interface Stream {
  key: string;
  buf: Uint8Array;
  received: number;
}

export type AssembleResult =
  | { kind: 'partial' }
  | { kind: 'complete'; message: Message }
  | { kind: 'discarded'; error: TidemarkError };

/** Reassembles snapshot chunks, one stream in progress per sender. */
export class SnapshotAssembler {
  private readonly streams = new Map<NodeId, Stream>();

  /** @param maxBytes the largest image accepted; bounds the memory one sender can pin. */
  constructor(private readonly maxBytes: number) {}

  add(chunk: SnapshotChunk): AssembleResult {
    const from = chunk.header.from;
    const key = `${chunk.header.term}/${chunk.meta.index}/${chunk.meta.term}/${chunk.total}`;
    let s = this.streams.get(from);
    if (chunk.offset === 0) {
      // A new stream (or a resend) replaces whatever this sender had in progress.
      if (chunk.total > this.maxBytes) {
        this.streams.delete(from);
        return this.discard(
          'snapshot_too_large',
          `snapshot of ${chunk.total} bytes is larger than the ${this.maxBytes}-byte limit`,
        );
      }
      s = { key, buf: new Uint8Array(chunk.total), received: 0 };
      this.streams.set(from, s);
    }
    if (s === undefined || s.key !== key || chunk.offset !== s.received) {
      this.streams.delete(from);
      return this.discard(
        'snapshot_chunk_out_of_order',
        `snapshot chunk at offset ${chunk.offset} is out of order`,
      );
    }
    if (chunk.offset + chunk.data.length > chunk.total) {
      this.streams.delete(from);
      return this.discard('snapshot_chunk_overflow', 'snapshot chunk runs past the announced length');
    }
    s.buf.set(chunk.data, s.received);
    s.received += chunk.data.length;
    if (s.received < chunk.total || chunk.checksum === undefined) return { kind: 'partial' };
    this.streams.delete(from);
    if (crc32(s.buf) !== chunk.checksum) {
      return this.discard('snapshot_checksum_mismatch', 'snapshot image failed its checksum');
    }
    return { kind: 'complete', message: { ...chunk.header, snapshot: { meta: chunk.meta, data: s.buf } } };
  }

  /** Drops the stream in progress from `from` (e.g. its connection closed). */
  reset(from: NodeId): void {
    this.streams.delete(from);
  }

  /** Bytes currently buffered across senders. */
  bufferedBytes(): number {
    let n = 0;
    for (const s of this.streams.values()) n += s.buf.length;
    return n;
  }

  private discard(reason: string, message: string): AssembleResult {
    return { kind: 'discarded', error: new TidemarkError('DATA_CORRUPTION', reason, message) };
  }
}
