/**
 * Protobuf codecs for ShardQuery and ShardPartial (proto/tidemark/v1/query.proto). Partials stay
 * columnar on the wire: packed arrays per group, timestamps as varint deltas, sketches flattened.
 */
import { create, type DescMessage, fromBinary, type MessageShape, toBinary } from '@bufbuild/protobuf';
import { dataCorruption, invalidArgument } from '../errors/index.js';
import {
  GroupPartialSchema,
  type GroupPartial as PbGroup,
  type RawSeriesPartial as PbRaw,
  QueryLimitsSchema,
  QueryMatcherSchema,
  QueryRatePlanSchema,
  RawSeriesPartialSchema,
  ShardPartialSchema,
  ShardQuerySchema,
  SubQueryPartialSchema,
  SubQueryPlanSchema,
} from '../gen/tidemark/v1/query_pb.js';
import { SeriesSchema } from '../gen/tidemark/v1/types_pb.js';
import type { MatchOp } from '../storage/index.js';
import {
  type AggFn,
  type Aggregator,
  checkAggregator,
  FILL_POLICIES,
  type FillPolicy,
  FUNCTIONS,
  type ShardQuery,
  type SubQueryPlan,
} from './model.js';
import type { GroupPartial, RawSeriesPartial, ShardPartial } from './partial.js';
import { Sketch } from './sketch.js';

/** Sorted, non-negative integer timestamps -> unsigned LEB128 varints of (first, deltas...). */
export function encodeTimestamps(ts: Float64Array): Uint8Array {
  const buf = new Uint8Array(ts.length * 10);
  let pos = 0;
  let prev = 0;
  for (let i = 0; i < ts.length; i++) {
    let n = ts[i]! - prev;
    prev = ts[i]!;
    if (!Number.isSafeInteger(n) || n < 0)
      throw new RangeError('timestamps must be sorted non-negative integers');
    while (n >= 0x80) {
      buf[pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    buf[pos++] = n;
  }
  return buf.slice(0, pos);
}

export function decodeTimestamps(buf: Uint8Array): Float64Array {
  let count = 0;
  for (let i = 0; i < buf.length; i++) if ((buf[i]! & 0x80) === 0) count++;
  const out = new Float64Array(count);
  let pos = 0;
  let prev = 0;
  for (let i = 0; i < count; i++) {
    let n = 0;
    let mul = 1;
    for (;;) {
      const b = buf[pos++]!;
      n += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) break;
      mul *= 128;
    }
    prev += n;
    out[i] = prev;
  }
  if (pos !== buf.length) throw dataCorruption('query_partial_invalid', 'truncated timestamp varints');
  return out;
}

export function encodeShardQuery(q: ShardQuery): Uint8Array {
  return toBinary(
    ShardQuerySchema,
    create(ShardQuerySchema, {
      startMs: BigInt(q.start),
      endMs: BigInt(q.end),
      withSeriesIds: q.withSeriesIds,
      limits: create(QueryLimitsSchema, {
        maxSeries: BigInt(q.limits.maxSeries),
        maxSamples: BigInt(q.limits.maxSamples),
        maxPoints: BigInt(q.limits.maxPoints),
      }),
      queries: q.queries.map((p) =>
        create(SubQueryPlanSchema, {
          metric: p.metric,
          matchers: p.matchers.map((m) =>
            create(QueryMatcherSchema, { name: m.name, op: m.op, value: m.value }),
          ),
          groupBy: p.groupBy,
          aggregator: p.aggregator,
          hasDownsample: p.downsampleMs !== undefined,
          downsampleMs: BigInt(p.downsampleMs ?? 0),
          downsampleFn: p.downsampleFn ?? '',
          fill: p.fill,
          ...(p.rate === undefined ? {} : { rate: create(QueryRatePlanSchema, p.rate) }),
        }),
      ),
    }),
  );
}

/**
 * protobuf-es throws plain Errors on malformed wire data (and TypeError on a non-UTF-8 string): a peer's
 * bytes that do not parse are DATA_CORRUPTION, never an untyped exception.
 */
function decodeWire<D extends DescMessage>(schema: D, bytes: Uint8Array, what: string): MessageShape<D> {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw dataCorruption('query_message_malformed', `malformed ${what}: ${String(err)}`, {}, err);
  }
}

/** Decodes and validates (a peer's bytes are input too): INVALID_ARGUMENT naming the field. */
export function decodeShardQuery(bytes: Uint8Array): ShardQuery {
  const m = decodeWire(ShardQuerySchema, bytes, 'shard query');
  const l = m.limits;
  const q: ShardQuery = {
    start: Number(m.startMs),
    end: Number(m.endMs),
    withSeriesIds: m.withSeriesIds,
    limits: {
      maxSeries: Number(l?.maxSeries ?? 0n),
      maxSamples: Number(l?.maxSamples ?? 0n),
      maxPoints: Number(l?.maxPoints ?? 0n),
    },
    queries: m.queries.map((p, i) => {
      const plan: SubQueryPlan = {
        metric: p.metric,
        matchers: p.matchers.map((x) => ({ name: x.name, op: x.op as MatchOp, value: x.value })),
        groupBy: p.groupBy,
        aggregator: checkAggregator(p.aggregator, `queries[${i}].aggregator`) as Aggregator,
        fill: (p.fill || 'none') as FillPolicy,
      };
      if (!(FILL_POLICIES as readonly string[]).includes(plan.fill)) {
        throw invalidArgument(
          'fill_invalid',
          `queries[${i}].fill`,
          `queries[${i}].fill is not a fill policy`,
        );
      }
      if (p.hasDownsample) {
        plan.downsampleMs = Number(p.downsampleMs);
        if (!Number.isSafeInteger(plan.downsampleMs) || plan.downsampleMs < 0) {
          throw invalidArgument(
            'downsample_invalid',
            `queries[${i}].downsampleMs`,
            `queries[${i}].downsampleMs must be >= 0`,
          );
        }
        if (!(FUNCTIONS as readonly string[]).includes(p.downsampleFn)) {
          throw invalidArgument(
            'function_invalid',
            `queries[${i}].downsampleFn`,
            `queries[${i}].downsampleFn is not a function`,
          );
        }
        plan.downsampleFn = p.downsampleFn as AggFn;
      }
      if (p.rate !== undefined) {
        plan.rate = {
          counter: p.rate.counter,
          counterMax: p.rate.counterMax,
          resetValue: p.rate.resetValue,
          dropResets: p.rate.dropResets,
        };
      }
      return plan;
    }),
  };
  if (!Number.isSafeInteger(q.start) || q.start < 0 || !Number.isSafeInteger(q.end) || q.end < q.start) {
    throw invalidArgument('time_range_invalid', 'end', 'the shard query time range is invalid');
  }
  for (const k of ['maxSeries', 'maxSamples', 'maxPoints'] as const) {
    if (!Number.isSafeInteger(q.limits[k]) || q.limits[k] <= 0) {
      throw invalidArgument('limits_invalid', `limits.${k}`, `limits.${k} must be a positive integer`);
    }
  }
  return q;
}

function encodeGroup(g: GroupPartial): PbGroup {
  const out = create(GroupPartialSchema, {
    key: g.key,
    commonTags: g.commonTags,
    aggregateTags: g.aggregateTags,
    timestamps: encodeTimestamps(g.ts),
    count: Array.from(g.count),
  });
  if (g.sumHi !== undefined) {
    out.sumHi = Array.from(g.sumHi);
    out.sumLo = Array.from(g.sumLo!);
  }
  if (g.min !== undefined) out.min = Array.from(g.min);
  if (g.max !== undefined) out.max = Array.from(g.max);
  if (g.first !== undefined) {
    out.first = Array.from(g.first);
    out.firstIds = g.firstId!;
  }
  if (g.last !== undefined) {
    out.last = Array.from(g.last);
    out.lastIds = g.lastId!;
  }
  if (g.sketches !== undefined) {
    for (const s of g.sketches) {
      const { codes, counts } = s.sortedBins();
      out.sketchBins.push(codes.length);
      out.sketchCodes.push(...codes);
      out.sketchCounts.push(...counts);
      out.sketchZeros.push(s.zeroCount);
    }
  }
  if (g.seriesIds !== undefined) {
    out.hasSeriesIds = true;
    out.seriesIds = g.seriesIds;
  }
  return out;
}

function decodeGroup(m: PbGroup): GroupPartial {
  const ts = decodeTimestamps(m.timestamps);
  const n = ts.length;
  const arr = (xs: number[], what: string): Float64Array => {
    if (xs.length !== n)
      throw dataCorruption(
        'query_partial_invalid',
        `group partial: ${what} has ${xs.length} entries, expected ${n}`,
      );
    return Float64Array.from(xs);
  };
  const g: GroupPartial = {
    key: m.key,
    commonTags: { ...m.commonTags },
    aggregateTags: m.aggregateTags,
    ts,
    count: arr(m.count, 'count'),
  };
  if (m.sumHi.length > 0) {
    g.sumHi = arr(m.sumHi, 'sum_hi');
    g.sumLo = arr(m.sumLo, 'sum_lo');
  }
  if (m.min.length > 0) g.min = arr(m.min, 'min');
  if (m.max.length > 0) g.max = arr(m.max, 'max');
  if (m.first.length > 0) {
    g.first = arr(m.first, 'first');
    g.firstId = m.firstIds;
  }
  if (m.last.length > 0) {
    g.last = arr(m.last, 'last');
    g.lastId = m.lastIds;
  }
  if (m.sketchBins.length > 0) {
    if (m.sketchBins.length !== n || m.sketchZeros.length !== n) {
      throw dataCorruption(
        'query_partial_invalid',
        'group partial: sketch arrays do not match the timestamps',
      );
    }
    const sketches: Sketch[] = [];
    let at = 0;
    for (let i = 0; i < n; i++) {
      const s = new Sketch();
      for (let k = 0; k < m.sketchBins[i]!; k++, at++) s.addBin(m.sketchCodes[at]!, m.sketchCounts[at]!);
      if (m.sketchZeros[i]! > 0) s.addZero(m.sketchZeros[i]!);
      sketches.push(s);
    }
    g.sketches = sketches;
  }
  if (m.hasSeriesIds) g.seriesIds = m.seriesIds;
  return g;
}

function encodeRaw(s: RawSeriesPartial): PbRaw {
  return create(RawSeriesPartialSchema, {
    series: create(SeriesSchema, { metric: s.series.metric, tags: { ...s.series.tags } }),
    id: s.id,
    timestamps: encodeTimestamps(s.ts),
    values: Array.from(s.vals),
  });
}

function decodeRaw(m: PbRaw): RawSeriesPartial {
  const ts = decodeTimestamps(m.timestamps);
  if (ts.length !== m.values.length)
    throw dataCorruption('query_partial_invalid', 'raw series: timestamps and values differ in length');
  return {
    series: { metric: m.series?.metric ?? '', tags: { ...(m.series?.tags ?? {}) } },
    id: m.id,
    ts,
    vals: Float64Array.from(m.values),
  };
}

export function encodeShardPartial(p: ShardPartial): Uint8Array {
  return toBinary(
    ShardPartialSchema,
    create(ShardPartialSchema, {
      seriesScanned: BigInt(p.seriesScanned),
      samplesScanned: BigInt(p.samplesScanned),
      queries: p.queries.map((q) =>
        create(SubQueryPartialSchema, { groups: q.groups.map(encodeGroup), series: q.series.map(encodeRaw) }),
      ),
    }),
  );
}

export function decodeShardPartial(bytes: Uint8Array): ShardPartial {
  const m = decodeWire(ShardPartialSchema, bytes, 'shard partial');
  return {
    seriesScanned: Number(m.seriesScanned),
    samplesScanned: Number(m.samplesScanned),
    queries: m.queries.map((q) => ({ groups: q.groups.map(decodeGroup), series: q.series.map(decodeRaw) })),
  };
}
