/**
 * Codec benchmark (`npm run bench:codec`): the hot wire formats in one process, the hand-written codecs
 * (src/transport/write-codec.ts, raft-frame.ts) against the generic protobuf-es path they replaced, and the
 * line-protocol parser. Alternating rounds (A B A B …, BENCH_ROUNDS, default 3, each ~BENCH_MS ms, default
 * 400) so both sides see the same machine; the best round of each is reported.
 *
 * Inputs: a 1,000-sample WriteRequest (10 series × 100 samples, as bench:cluster writes); a Raft frame of
 * 8 appends with 2 entries of 16 KiB each plus 8 heartbeats (what a leader sends a peer in one turn); 1,000
 * TSBS cpu-only lines (10 fields each) and 1,000 one-field lines.
 * Last line: {"bench":"codec","writeEncode":{"protobufEs":…,"hand":…},"writeDecode":{…},
 * "raftEncode":{…},"raftDecode":{…},"lineProtocol":{"tsbs":…,"oneField":…}} — samples/s for writes and lines,
 * messages/s for Raft frames.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { batchFromWriteRequest } from '../src/api/grpc-service.js';
import { WriteRequestSchema } from '../src/gen/tidemark/v1/client_pb.js';
import { RaftRequestSchema } from '../src/gen/tidemark/v1/peer_pb.js';
import { parseLineProtocol } from '../src/ingest/line-protocol.js';
import { EntryType, type Message, MessageType } from '../src/raft/types.js';
import { messageFromPb, messageToPb } from '../src/transport/raft-codec.js';
import { decodeRaftRequest, encodeRaftRequest, type FrameItem } from '../src/transport/raft-frame.js';
import { decodeWriteRequest, encodeWriteRequest } from '../src/transport/write-codec.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MS = Number(process.env.BENCH_MS ?? 400);

/** Best rate (units/s) of `fn` (which handles `units` per call) over alternating rounds. */
function measure(pairs: [string, () => unknown][], units: number): Record<string, number> {
  const best: Record<string, number> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of pairs) {
      const t0 = performance.now();
      let n = 0;
      while (performance.now() - t0 < MS) {
        fn();
        n++;
      }
      const rate = Math.round((n * units * 1000) / (performance.now() - t0));
      best[name] = Math.max(best[name] ?? 0, rate);
    }
  }
  return best;
}

const series = Array.from({ length: 10 }, (_, s) => ({
  metric: 'bench_sdk',
  tags: { writer: 'w1', host: `h${s}` },
  timestamps: Array.from({ length: 100 }, (_, i) => 1_700_000_000_000 + i),
  values: Array.from({ length: 100 }, (_, i) => ((i * 7 + s) % 101) + 0.25),
}));
const viaPb = () =>
  toBinary(
    WriteRequestSchema,
    create(WriteRequestSchema, {
      batch: {
        series: series.map((s) => ({
          series: { metric: s.metric, tags: { ...s.tags } },
          timestamps: s.timestamps.map((t) => BigInt(t)),
          values: s.values,
        })),
      },
    }),
  );
const writeBytes = encodeWriteRequest(series);

const data = new Uint8Array(16 << 10).fill(7);
const items: FrameItem[] = [];
for (let shard = 0; shard < 8; shard++) {
  const base: Message = {
    type: MessageType.App,
    from: 'a',
    to: 'b',
    term: 7,
    index: 1_000_000 + shard,
    logTerm: 7,
    entries: [],
    commit: 1_000_000,
    reject: false,
    rejectHint: 0,
  };
  items.push({
    shard,
    m: {
      ...base,
      entries: [1, 2].map((k) => ({ term: 7, index: base.index + k, type: EntryType.Normal, data })),
    },
  });
  items.push({ shard, m: { ...base, type: MessageType.Heartbeat, index: 0, logTerm: 0 } });
}
const raftPb = () =>
  toBinary(
    RaftRequestSchema,
    create(RaftRequestSchema, {
      frame: {
        from: 'a',
        to: 'b',
        messages: items.map((i) => ({ shard: i.shard, message: messageToPb(i.m) })),
      },
    }),
  );
const raftBytes = encodeRaftRequest('a', 'b', items);

const tsbs: string[] = [];
for (let h = 0; h < 100; h++) {
  for (let i = 0; i < 10; i++) {
    tsbs.push(
      `cpu,hostname=host_${h},region=eu-west-1,datacenter=eu-west-1a,rack=${h % 7},os=Ubuntu16.04LTS,arch=x64,` +
        `team=SF,service=${h % 19},service_version=1,service_environment=production usage_user=${h},` +
        `usage_system=${i},usage_idle=12.5,usage_nice=3,usage_iowait=7,usage_irq=1,usage_softirq=0,` +
        `usage_steal=0,usage_guest=0,usage_guest_nice=0 ${1_700_000_000_000_000_000 + i * 10_000_000_000}`,
    );
  }
}
const tsbsBody = Buffer.from(tsbs.join('\n'));
const oneField: string[] = [];
for (let s = 0; s < 10; s++) {
  for (let i = 0; i < 100; i++)
    oneField.push(`bench_lp,writer=w3,host=h${s} value=${i % 101} ${1_700_000_000_000 + i}`);
}
const oneFieldBody = Buffer.from(oneField.join('\n'));

const writeEncode = measure(
  [
    ['protobufEs', viaPb],
    ['hand', () => encodeWriteRequest(series)],
  ],
  1000,
);
const writeDecode = measure(
  [
    ['protobufEs', () => batchFromWriteRequest(fromBinary(WriteRequestSchema, writeBytes))],
    ['hand', () => decodeWriteRequest(writeBytes)],
  ],
  1000,
);
const raftEncode = measure(
  [
    ['protobufEs', raftPb],
    ['hand', () => encodeRaftRequest('a', 'b', items)],
  ],
  items.length,
);
const raftDecode = measure(
  [
    [
      'protobufEs',
      () => fromBinary(RaftRequestSchema, raftBytes).frame!.messages.map((m) => messageFromPb(m.message)),
    ],
    ['hand', () => decodeRaftRequest(raftBytes)],
  ],
  items.length,
);
const lineProtocol = {
  ...measure(
    [['tsbs', () => parseLineProtocol(tsbsBody, { precision: 'ns', now: 1_700_000_000_000 })]],
    10_000,
  ),
  ...measure(
    [['oneField', () => parseLineProtocol(oneFieldBody, { precision: 'ms', now: 1_700_000_000_000 })]],
    1000,
  ),
};
for (const [name, r] of Object.entries({ writeEncode, writeDecode, raftEncode, raftDecode, lineProtocol })) {
  console.log(name, JSON.stringify(r));
}
console.log(
  JSON.stringify({ bench: 'codec', writeEncode, writeDecode, raftEncode, raftDecode, lineProtocol }),
);
