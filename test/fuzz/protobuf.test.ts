/**
 * Fuzz: protobuf and binary decoding with >= 100,000 generated inputs for each of
 *  - the client API's WriteRequest (gRPC Write): the server's decoder (src/transport/write-codec.ts) and
 *    protobuf-es fromBinary, then batchFromWriteRequest (with
 *    the request-size limits of a LimitGuard, sometimes small);
 *  - the peer API: RaftRequest frames (the node's decoder, src/transport/raft-frame.ts, and protobuf-es +
 *    messageFromPb for every shard message), SnapshotRequest chunks
 *    (chunkFromPb), ForwardRequest (+ the batch codec: decodeBatch), Raft entry payloads (the entry codec:
 *    writes with Kafka positions and deletes) and the query peer messages (ShardQuery / ShardPartial).
 * Inputs: valid messages built from random content and encoded (structure-aware), the same mutated at the
 * byte level (bit flips, magic bytes, insertions, deletions, duplicated slices, truncation, splices of two
 * messages, overlong varints), and random bytes.
 *
 * Allowed outcomes: decoded (with the decoded batch's invariants checked), a TidemarkError with a stable
 * reason (and a field when it is INVALID_ARGUMENT: a client's request), or protobuf-es's own wire-format
 * Error from fromBinary (grpc-js answers it as a failed call; the adapter never sees a message). Anything
 * else — TypeError, RangeError, an Error from our code — fails the test with its input.
 * Seeded: TIDEMARK_SEED=<n> [FUZZ_ONLY=<i>] npx vitest run test/fuzz/protobuf.test.ts replays.
 */
import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { Registry } from 'prom-client';
import { expect, test } from 'vitest';
import { batchFromWriteRequest } from '../../src/api/grpc-service.js';
import { entryCodec } from '../../src/cluster/entry.js';
import { isTidemarkError, TidemarkError } from '../../src/errors/index.js';
import { WriteRequestSchema } from '../../src/gen/tidemark/v1/client_pb.js';
import {
  ForwardRequestSchema,
  RaftRequestSchema,
  SnapshotRequestSchema,
} from '../../src/gen/tidemark/v1/peer_pb.js';
import { BatchBuilder } from '../../src/ingest/batch.js';
import { decodeBatch, encodeBatch } from '../../src/ingest/batch-codec.js';
import { LimitGuard } from '../../src/limits/index.js';
import { canonicalKey, makeSeries } from '../../src/model/index.js';
import {
  decodeShardPartial,
  decodeShardQuery,
  encodeShardPartial,
  encodeShardQuery,
  planQuery,
} from '../../src/query/index.js';
import type { SampleBatch } from '../../src/storage/store.js';
import { chunkFromPb, messageFromPb } from '../../src/transport/raft-codec.js';
import { decodeRaftRequest } from '../../src/transport/raft-frame.js';
import { decodeWriteRequest } from '../../src/transport/write-codec.js';
import { Rng } from '../../src/util/random.js';
import { BASE_SEED, expectRejection, fuzz, INPUTS, mutateBytes, randomBytes, summary } from './harness.js';

const FILE = 'protobuf.test.ts';

/**
 * protobuf-es's fromBinary rejects malformed wire data with an Error or RangeError ("premature EOF",
 * "invalid wire type", "illegal tag", "invalid varint", …), and a string field that is not UTF-8 with
 * TextDecoder's TypeError ERR_ENCODING_INVALID_ENCODED_DATA (proto3 strings must be UTF-8). Any other
 * TypeError would be a bug in it or in us.
 */
class WireError extends Error {}

function decode<D extends DescMessage>(schema: D, bytes: Uint8Array) {
  return wire(() => fromBinary(schema, bytes));
}

/** Runs fn, classifying a protobuf-es wire error it lets through as WireError (a TidemarkError passes as is). */
function wire<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TidemarkError) throw err;
    const utf8 = (err as { code?: unknown }).code === 'ERR_ENCODING_INVALID_ENCODED_DATA';
    if (err instanceof Error && (err.constructor === Error || err.constructor === RangeError || utf8)) {
      throw new WireError(err.message);
    }
    throw err;
  }
}

function checkError(err: unknown): string {
  if (err instanceof WireError) return 'protobuf_wire_error';
  if (err instanceof TidemarkError && err.code !== 'INVALID_ARGUMENT') {
    // Peer-side corruption (DATA_CORRUPTION): not a client request, so no field; a stable reason still.
    if (!/^[a-z][a-z0-9_]*$/.test(err.reason)) throw new Error(`unstable reason ${err.reason}`);
    return err.reason;
  }
  return expectRejection(err);
}

// ------------------------------------------------------------------------------- valid content

function randomSeries(r: Rng): { metric: string; tags: Record<string, string> } {
  const tags: Record<string, string> = {};
  const n = r.int(0, 3);
  for (let i = 0; i < n; i++) tags[r.pick(['host', 'dc', 'k', 'é'])] = r.pick(['a', 'web01', 'x y', '1']);
  return { metric: r.pick(['sys.cpu.user', 'm', 'net.bytes', 'a_b']), tags };
}

function randomBatch(r: Rng): SampleBatch {
  const b = new BatchBuilder();
  const n = r.int(0, 6);
  for (let i = 0; i < n; i++) {
    const s = randomSeries(r);
    b.add(makeSeries(s.metric, s.tags, 's'), 1_700_000_000_000 + r.int(0, 1e6), r.next() * 100);
  }
  return b.build();
}

function writeRequest(r: Rng): Uint8Array {
  const series = Array.from({ length: r.int(0, 4) }, () => {
    const k = r.int(0, 4);
    return {
      series: r.chance(0.95) ? randomSeries(r) : undefined,
      timestamps: Array.from({ length: k }, () => BigInt(1_700_000_000_000 + r.int(-1e6, 1e6))),
      values: Array.from({ length: r.chance(0.95) ? k : r.int(0, 4) }, () => r.next()),
    };
  });
  return toBinary(WriteRequestSchema, create(WriteRequestSchema, { batch: { series } }));
}

type RaftMessageInit = MessageInitShape<typeof RaftRequestSchema>['frame'] extends infer F
  ? F extends { messages?: (infer M)[] }
    ? M extends { message?: infer R }
      ? R
      : never
    : never
  : never;

function raftMessage(r: Rng): RaftMessageInit {
  const big = (): bigint => (r.chance(0.05) ? 2n ** 64n - 1n : BigInt(r.int(0, 1000)));
  const m: Record<string, unknown> = {
    type: r.chance(0.95) ? r.int(1, 13) : r.int(0, 40),
    from: r.pick(['a', 'b', '']),
    to: r.pick(['a', 'b', 'c']),
    term: big(),
    index: big(),
    logTerm: big(),
    commit: big(),
    reject: r.chance(0.1),
    rejectHint: big(),
    entries: Array.from({ length: r.int(0, 3) }, () => ({
      term: big(),
      index: big(),
      type: r.int(0, 3),
      data: entryData(r),
    })),
  };
  if (r.chance(0.2)) m.hintTerm = big();
  if (r.chance(0.2)) m.context = randomBytes(r, r.int(0, 8));
  if (r.chance(0.1)) {
    m.snapshot = {
      meta: { index: big(), term: big(), conf: { voters: ['a', 'b'], learners: [] } },
      data: randomBytes(r, 4),
    };
  }
  return m as RaftMessageInit;
}

function entryData(r: Rng): Uint8Array {
  switch (r.int(0, 4)) {
    case 0:
      return encodeBatch(randomBatch(r));
    case 1: {
      const first = r.int(0, 1000);
      return encodeBatch(randomBatch(r), {
        kafka: { partition: r.int(0, 16), firstOffset: first, lastOffset: first + r.int(0, 10) },
      });
    }
    case 2:
      return entryCodec.encode({
        kind: 'delete',
        request: {
          metric: 'm',
          matchers: [{ name: 'host', op: r.pick(['=', '!=', '=~', '!~'] as const), value: 'a.*' }],
          minT: 0,
          maxT: r.int(1, 1e9),
        },
      });
    default:
      return randomBytes(r, r.int(0, 24));
  }
}

const QUERY_SPECS = [
  { start: 0, end: 1e9, queries: [{ metric: 'm', aggregator: 'sum' }] },
  {
    start: 1000,
    end: 1e9,
    queries: [
      {
        metric: 'sys.cpu.user',
        aggregator: 'p95',
        downsample: { interval: 60_000, fn: 'avg', fill: 'zero' },
        filters: [{ tagk: 'host', type: 'regexp', filter: 'web[0-9]+', groupBy: true }],
        rate: { counter: true, dropResets: true },
      },
    ],
  },
];

function peerMessage(r: Rng): { kind: string; bytes: Uint8Array } {
  switch (r.int(0, 6)) {
    case 0: {
      const msgs = Array.from({ length: r.int(0, 4) }, () => ({
        shard: r.int(0, 8),
        message: raftMessage(r),
      }));
      return {
        kind: 'raft',
        bytes: toBinary(
          RaftRequestSchema,
          create(RaftRequestSchema, { frame: { from: 'a', to: 'b', messages: msgs } }),
        ),
      };
    }
    case 1: {
      const chunk = {
        shard: r.int(0, 8),
        header: raftMessage(r),
        meta: { index: BigInt(r.int(0, 100)), term: 1n, conf: { voters: ['a'], learners: [] } },
        offset: BigInt(r.int(0, 100)),
        total: BigInt(r.int(0, 100)),
        data: randomBytes(r, r.int(0, 16)),
        ...(r.chance(0.5) ? { checksum: r.int(0, 2 ** 31) } : {}),
      };
      return {
        kind: 'snapshot',
        bytes: toBinary(SnapshotRequestSchema, create(SnapshotRequestSchema, { chunk })),
      };
    }
    case 2:
      return {
        kind: 'forward',
        bytes: toBinary(
          ForwardRequestSchema,
          create(ForwardRequestSchema, {
            shard: r.int(0, 8),
            batch: entryData(r),
            deadlineUnixMs: BigInt(r.int(0, 2e12)),
          }),
        ),
      };
    case 3:
      return { kind: 'entry', bytes: entryData(r) };
    case 4: {
      const spec = r.pick(QUERY_SPECS);
      return { kind: 'shardQuery', bytes: encodeShardQuery(planQuery(spec)) };
    }
    default:
      return {
        kind: 'shardPartial',
        bytes: encodeShardPartial({
          queries: [],
          seriesScanned: r.int(0, 100),
          samplesScanned: r.int(0, 1e6),
        }),
      };
  }
}

/** Valid bytes, mutated bytes (sometimes spliced with another valid message) or random bytes. */
function variant(r: Rng, valid: () => Uint8Array): Uint8Array {
  const k = r.int(0, 10);
  if (k < 2) return valid();
  if (k < 9) return mutateBytes(r, valid(), r.chance(0.3) ? valid() : undefined);
  return randomBytes(r, r.int(0, 64));
}

// ------------------------------------------------------------------------------- checks

function checkBatch(b: SampleBatch): void {
  if (b.seriesRef.length < b.length || b.timestamps.length < b.length || b.values.length < b.length) {
    throw new Error('decoded batch arrays shorter than its length');
  }
  for (const s of b.series) canonicalKey(s);
  for (let i = 0; i < b.length; i++)
    if (b.seriesRef[i]! >= b.series.length) throw new Error('seriesRef out of range');
}

/**
 * Corpora of valid messages (from their own seeded generator): inputs mutate and splice these. Building a
 * fresh message per input would cost more than decoding it and add little variety.
 */
const POOL = 2000;
const poolRng = new Rng((BASE_SEED ^ 0x5eed) >>> 0);
const writePool = Array.from({ length: POOL }, () => writeRequest(poolRng));
const peerPool = Array.from({ length: POOL }, () => peerMessage(poolRng));

const guards = [
  new LimitGuard({ registry: new Registry() }),
  new LimitGuard({ registry: new Registry(), settings: { maxSamplesPerRequest: 3, maxSeriesPerRequest: 2 } }),
];

test(`WriteRequest: ${INPUTS} generated messages decode or are rejected with a reason`, () => {
  const stats = fuzz(
    FILE,
    INPUTS,
    (r) => ({ bytes: variant(r, () => r.pick(writePool)), guard: r.int(0, 2) }),
    ({ bytes, guard }) => {
      const g = guards[guard]!;
      const check = (n: number, s: number) => g.checkWriteSize(n, s, 'batch.series');
      // The server's own decoder (the gRPC path) first: the same contract on every input.
      let fast: ReturnType<typeof decodeWriteRequest> | undefined;
      let fastErr: unknown;
      try {
        fast = decodeWriteRequest(bytes, check);
        checkBatch(fast.batch);
      } catch (err) {
        checkError(err);
        fastErr = err;
      }
      const req = decode(WriteRequestSchema, bytes);
      const { batch, offsets } = batchFromWriteRequest(req, check);
      checkBatch(batch);
      if (offsets.length !== (req.batch?.series.length ?? 0)) throw new Error('offsets');
      // What protobuf-es accepts, the fast decoder accepts too, unless it refused the wire format
      // (test/transport/write-codec.test.ts compares the two in detail).
      if (fast === undefined && !(isTidemarkError(fastErr) && fastErr.reason === 'request_malformed')) {
        throw new Error(`decodeWriteRequest refused what protobuf-es accepted: ${String(fastErr)}`);
      }
      if (fast !== undefined && fast.batch.length !== batch.length) throw new Error('decoders disagree');
    },
    checkError,
  );
  console.log(summary('WriteRequest', stats));
  expect(stats.inputs).toBeGreaterThanOrEqual(process.env.FUZZ_ONLY === undefined ? 100_000 : 1);
  if (process.env.FUZZ_ONLY === undefined) {
    expect(stats.accepted).toBeGreaterThan(INPUTS / 10);
    expect(stats.rejected).toBeGreaterThan(INPUTS / 10);
  }
}, 120_000);

test(`peer messages and the batch codec: ${INPUTS} generated inputs decode or are rejected`, () => {
  const stats = fuzz(
    FILE,
    INPUTS,
    (r) => {
      const first = r.pick(peerPool);
      return {
        kind: first.kind,
        bytes: variant(r, () => (r.chance(0.5) ? first.bytes : r.pick(peerPool).bytes)),
      };
    },
    ({ kind, bytes }) => {
      switch (kind) {
        case 'raft': {
          // The node's own frame decoder first: a frame, or a typed refusal, on every input.
          try {
            for (const { m } of decodeRaftRequest(bytes).messages) {
              if (m instanceof Error && !isTidemarkError(m)) throw m;
            }
          } catch (err) {
            checkError(err);
          }
          const req = decode(RaftRequestSchema, bytes);
          for (const sm of req.frame?.messages ?? []) messageFromPb(sm.message);
          break;
        }
        case 'snapshot':
          chunkFromPb(decode(SnapshotRequestSchema, bytes).chunk);
          break;
        case 'forward':
          checkBatch(decodeBatch(decode(ForwardRequestSchema, bytes).batch).batch);
          break;
        case 'entry': {
          const cmd = entryCodec.decode(bytes);
          if (cmd.kind === 'batch') checkBatch(cmd.batch);
          break;
        }
        // These two wrap fromBinary's wire errors as DATA_CORRUPTION themselves: anything else escaping is a bug.
        case 'shardQuery':
          decodeShardQuery(bytes);
          break;
        default:
          decodeShardPartial(bytes);
      }
    },
    checkError,
  );
  console.log(summary('peer + batch codec', stats));
  expect(stats.inputs).toBeGreaterThanOrEqual(process.env.FUZZ_ONLY === undefined ? 100_000 : 1);
  if (process.env.FUZZ_ONLY === undefined) {
    expect(stats.accepted).toBeGreaterThan(INPUTS / 10);
    expect(stats.rejected).toBeGreaterThan(INPUTS / 10);
  }
}, 120_000);
