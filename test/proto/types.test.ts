import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { WriteBatchSchema } from '../../src/gen/tidemark/v1/types_pb.js';

describe('generated protobuf types', () => {
  it('round-trips a write batch with int64 timestamps and exact doubles', () => {
    const batch = create(WriteBatchSchema, {
      series: [
        {
          series: { metric: 'cpu', tags: { host: 'a' } },
          timestamps: [1_700_000_000_000n, 253_402_300_799_999n],
          values: [-0, Number.NaN],
        },
      ],
    });
    const back = fromBinary(WriteBatchSchema, toBinary(WriteBatchSchema, batch));
    expect(back.series[0]!.series!.tags).toEqual({ host: 'a' });
    expect(back.series[0]!.timestamps).toEqual([1_700_000_000_000n, 253_402_300_799_999n]);
    expect(Object.is(back.series[0]!.values[0], -0)).toBe(true);
    expect(Number.isNaN(back.series[0]!.values[1])).toBe(true);
  });
});
