import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isTidemarkError, TidemarkError } from '../../src/errors/index.js';
import {
  BatchBuilder,
  type LineProtocolOptions,
  type LineProtocolResult,
  lineProtocolResponse,
  parseLineProtocol,
  parsePrecision,
} from '../../src/ingest/index.js';
import { MAX_TIMESTAMP_MS, makeSeries } from '../../src/model/index.js';
import { fcParams, nameArb, rng, samplesOf, seriesKeyOf, valueArb, withSeed } from './helpers.js';

const NOW = 1_700_000_000_123;

function parse(body: string, opts: Partial<LineProtocolOptions> = {}): LineProtocolResult {
  return parseLineProtocol(body, { now: NOW, ...opts });
}

/** [series, t, value] of every sample. */
function rows(r: LineProtocolResult): [string, number, number][] {
  const out: [string, number, number][] = [];
  for (let i = 0; i < r.batch.length; i++) {
    out.push([seriesKeyOf(r.batch.series[r.batch.seriesRef[i]]), r.batch.timestamps[i], r.batch.values[i]]);
  }
  return out;
}

describe('line protocol: syntax (InfluxDB docs examples)', () => {
  it('parses measurement, tags, fields and a ns timestamp', () => {
    const r = parse('weather,location=us-midwest temperature=82 1465839830100400200');
    expect(r.errors).toEqual([]);
    expect(rows(r)).toEqual([['weather_temperature{location=us-midwest}', 1465839830100, 82]]);
    expect(r).toMatchObject({ lines: 1, accepted: 1, rejected: 0, samples: 1, stringFieldsSkipped: 0 });
  });

  it('maps every numeric field to <measurement>_<field> with the line tags', () => {
    const r = parse('cpu,host=a,region=eu usage_idle=98.5,usage_user=1.25 1556813561098000000');
    expect(rows(r)).toEqual([
      ['cpu_usage_idle{host=a,region=eu}', 1556813561098, 98.5],
      ['cpu_usage_user{host=a,region=eu}', 1556813561098, 1.25],
    ]);
  });

  it('supports every field type; strings are skipped and counted', () => {
    const r = parse(
      'm f=1.5,neg=-0.5,exp=1e3,exp2=-2.5E-2,int=-42i,big=9223372036854775807i,u=42u,umax=18446744073709551615u,' +
        'b1=t,b2=T,b3=true,b4=True,b5=TRUE,b6=f,b7=F,b8=false,b9=False,b10=FALSE,s="hi \\"there\\" \\\\",z=0,dot=1.,lead=.5 1000000',
    );
    expect(r.errors).toEqual([]);
    const got = Object.fromEntries(rows(r).map(([s, , v]) => [s.replace(/\{\}$/, ''), v]));
    expect(got).toEqual({
      m_f: 1.5,
      m_neg: -0.5,
      m_exp: 1000,
      m_exp2: -0.025,
      m_int: -42,
      m_big: 2 ** 63,
      m_u: 42,
      m_umax: 2 ** 64,
      m_b1: 1,
      m_b2: 1,
      m_b3: 1,
      m_b4: 1,
      m_b5: 1,
      m_b6: 0,
      m_b7: 0,
      m_b8: 0,
      m_b9: 0,
      m_b10: 0,
      m_z: 0,
      m_dot: 1,
      m_lead: 0.5,
    });
    expect(r.stringFieldsSkipped).toBe(1);
    expect(r.batch.timestamps[0]).toBe(1);
  });

  it('accepts a line with only string fields (no samples)', () => {
    const r = parse('myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000');
    expect(r).toMatchObject({ accepted: 1, rejected: 0, samples: 0, stringFieldsSkipped: 1 });
  });

  it('unescapes commas, spaces and equals signs in tag values and keeps literal backslashes', () => {
    const r = parse('cpu,host=server\\ 01,region=us\\,west,eq=a\\=b,path=C:\\dir,bs=x\\\\y value=1 0');
    expect(r.errors).toEqual([]);
    expect(r.batch.series[0].tags).toEqual({
      host: 'server 01',
      region: 'us,west',
      eq: 'a=b',
      path: 'C:\\dir',
      bs: 'x\\y',
    });
  });

  it('allows spaces, commas and equals signs inside string fields, and newlines (InfluxDB 1.x)', () => {
    const r = parse('m s="a, b=c d",v=1 0\nm s="multi\nline \\" still",v=2 0\nm v=3 0');
    expect(r.errors).toEqual([]);
    expect(rows(r).map((x) => x[2])).toEqual([1, 2, 3]);
    expect(r.stringFieldsSkipped).toBe(2);
  });

  it('skips comments, blank lines, leading whitespace and CRLF line ends', () => {
    const r = parse('# a comment\n\n   \r\n  cpu v=1 0\r\n\t# indented comment\ncpu v=2 1000000\r\n');
    expect(r.errors).toEqual([]);
    expect(rows(r)).toEqual([
      ['cpu_v{}', 0, 1],
      ['cpu_v{}', 1, 2],
    ]);
    expect(r.lines).toBe(2);
  });

  it('tolerates runs of spaces between sections', () => {
    const r = parse('cpu,a=b   v=1   5000000   ');
    expect(r.errors).toEqual([]);
    expect(rows(r)).toEqual([['cpu_v{a=b}', 5, 1]]);
  });

  it('uses the separator option', () => {
    const r = parse('cpu v=1 0', { separator: '.' });
    expect(r.batch.series[0].metric).toBe('cpu.v');
  });

  it('deduplicates series across lines, whatever the tag order', () => {
    const r = parse('cpu,a=1,b=2 v=1 0\ncpu,b=2,a=1 v=2 1000000\ncpu,a=1,b=2 v=3,w=4 2000000');
    expect(r.batch.series.length).toBe(2);
    expect(Array.from(r.batch.seriesRef)).toEqual([0, 0, 0, 1]);
  });
});

describe('line protocol: timestamps and precision', () => {
  const cases: [string, string, number][] = [
    ['ns', '1465839830100400200', 1465839830100],
    ['us', '1465839830100400', 1465839830100],
    ['ms', '1465839830100', 1465839830100],
    ['s', '1465839830', 1465839830000],
    ['m', '24430663', 24430663 * 60_000],
    ['h', '407177', 407177 * 3_600_000],
  ];
  for (const [p, ts, ms] of cases) {
    it(`precision=${p}`, () => {
      const r = parse(`m v=1 ${ts}`, { precision: parsePrecision(p) });
      expect(r.errors).toEqual([]);
      expect(r.batch.timestamps[0]).toBe(ms);
    });
  }

  it('floors ns and us to ms', () => {
    expect(parse('m v=1 1999999').batch.timestamps[0]).toBe(1);
    expect(parse('m v=1 999999').batch.timestamps[0]).toBe(0);
    expect(parse('m v=1 1999', { precision: 'us' }).batch.timestamps[0]).toBe(1);
  });

  it('accepts the 1.x and 2.x spellings of precision and rejects others', () => {
    expect(parsePrecision(undefined)).toBe('ns');
    expect(parsePrecision('n')).toBe('ns');
    expect(parsePrecision('u')).toBe('us');
    expect(parsePrecision('µs')).toBe('us');
    expect(() => parsePrecision('d')).toThrow(TidemarkError);
  });

  it('uses `now` when the timestamp is missing, truncated to a coarser precision', () => {
    expect(parse('m v=1').batch.timestamps[0]).toBe(NOW);
    expect(parse('m v=1', { precision: 'ms' }).batch.timestamps[0]).toBe(NOW);
    expect(parse('m v=1', { precision: 's' }).batch.timestamps[0]).toBe(1_700_000_000_000);
    expect(parse('m v=1', { precision: 'h' }).batch.timestamps[0]).toBe(
      Math.floor(NOW / 3_600_000) * 3_600_000,
    );
  });

  it('rejects timestamps Tidemark cannot store', () => {
    const r = parse(
      `m v=1 -1\nm v=1 ${MAX_TIMESTAMP_MS + 1}\nm v=1 99999999999999999999\nm v=1 12a\nm v=1 ${MAX_TIMESTAMP_MS}`,
      {
        precision: 'ms',
      },
    );
    expect(r.errors.map((e) => [e.line, e.reason, e.field])).toEqual([
      [1, 'timestamp_out_of_range', 'timestamp'],
      [2, 'timestamp_out_of_range', 'timestamp'],
      [3, 'timestamp_invalid', 'timestamp'],
      [4, 'timestamp_invalid', 'timestamp'],
    ]);
    expect(r.batch.timestamps[0]).toBe(MAX_TIMESTAMP_MS);
    // ns timestamps are int64, as in InfluxDB: the latest is 2262-04-11T23:47:16.854Z.
    expect(parse('m v=1 9223372036854775807').batch.timestamps[0]).toBe(9223372036854);
    expect(parse('m v=1 9223372036854775808').errors[0].reason).toBe('timestamp_invalid');
  });

  it('requires an injected, valid `now`', () => {
    expect(() => parseLineProtocol('m v=1', { now: Number.NaN })).toThrow(TidemarkError);
  });
});

describe('line protocol: malformed lines', () => {
  const bad: [string, string, string?][] = [
    ['cpu', 'missing_fields'],
    ['cpu,host=a', 'missing_fields'],
    ['cpu ', 'missing_fields'],
    ['cpu,host value=1', 'tag_invalid'],
    ['cpu,host= value=1', 'tag_value_empty', 'tags.host'],
    ['cpu,=a value=1', 'tag_name_empty'],
    ['cpu,a=b=c value=1', 'tag_invalid'],
    ['cpu,a=1,a=2 value=1', 'tag_name_duplicate', 'tags.a'],
    ['cpu,__name__=x value=1', 'tag_name_reserved', 'tags.__name__'],
    [',host=a value=1', 'measurement_missing'],
    ['cpu\\ load value=1', 'metric_name_invalid'],
    ['cpu,host=a va\\ lue=1', 'metric_name_invalid', 'va lue'],
    ['cpu value', 'field_invalid', 'value'],
    ['cpu value=', 'field_value_missing', 'value'],
    ['cpu =1', 'field_key_empty'],
    ['cpu value=1,', 'field_invalid'],
    ['cpu value=abc', 'field_value_invalid', 'value'],
    ['cpu value=1.2.3', 'field_value_invalid', 'value'],
    ['cpu value=0x10', 'field_value_invalid', 'value'],
    ['cpu value=NaN', 'field_value_invalid', 'value'],
    ['cpu value=Inf', 'field_value_invalid', 'value'],
    ['cpu value=+1', 'field_value_invalid', 'value'],
    ['cpu value=1e', 'field_value_invalid', 'value'],
    ['cpu value=1e999', 'field_value_invalid', 'value'],
    ['cpu value=1i2', 'field_value_invalid', 'value'],
    ['cpu value=1.5i', 'field_value_invalid', 'value'],
    ['cpu value=9223372036854775808i', 'field_value_invalid', 'value'],
    ['cpu value=-9223372036854775809i', 'field_value_invalid', 'value'],
    ['cpu value=-1u', 'field_value_invalid', 'value'],
    ['cpu value=18446744073709551616u', 'field_value_invalid', 'value'],
    ['cpu value=yes', 'field_value_invalid', 'value'],
    ['cpu value="unterminated', 'string_unterminated', 'value'],
    ['cpu value=1"x"', 'field_value_invalid', 'value'],
    ['cpu value="x"y', 'field_invalid', 'value'],
    ['cpu value=1 1 2', 'timestamp_invalid', 'timestamp'],
  ];
  for (const [line, reason, field] of bad) {
    it(`${JSON.stringify(line)} → ${reason}`, () => {
      const r = parse(`ok v=1 0\n${line}\nok v=2 0`);
      expect(r.errors.length).toBe(1);
      const e = r.errors[0];
      expect(e.line).toBe(2);
      expect(e.reason).toBe(reason);
      if (field !== undefined) expect(e.field).toBe(field);
      expect(e.message).toMatch(/^line 2: ./);
      // The valid lines around it still parse; the bad line adds nothing.
      expect(rows(r).map((x) => x[2])).toEqual([1, 2]);
      expect(r.batch.series.length).toBe(1);
      expect(r).toMatchObject({ lines: 3, accepted: 2, rejected: 1 });
    });
  }

  it('rejects a whole line when one of its fields is bad (no partial lines)', () => {
    const r = parse('cpu a=1,b=x,c=3 0\ncpu a=1,b\\ c=2 0');
    expect(r.samples).toBe(0);
    expect(r.batch.series.length).toBe(0);
    expect(r.errors.map((e) => e.line)).toEqual([1, 2]);
  });

  it('numbers lines by physical line, counting blank lines, comments and multi-line strings', () => {
    const r = parse('# c\n\nm s="a\nb" 0\nbad\n\nm v=1 0\nalso bad');
    expect(r.errors.map((e) => e.line)).toEqual([5, 8]);
  });

  it('an unterminated string does not swallow the following lines', () => {
    const r = parse('m s="oops,v=1 0\nm v=2 0\nm v=3 0');
    expect(r.errors.map((e) => [e.line, e.reason])).toEqual([[1, 'string_unterminated']]);
    expect(rows(r).map((x) => x[2])).toEqual([2, 3]);
  });

  it('answers 204, or 400 "partial write" listing the errors', () => {
    expect(lineProtocolResponse(parse('m v=1 0'))).toEqual({ status: 204 });
    const partial = lineProtocolResponse(parse('m v=1 0\nbad'));
    expect(partial.status).toBe(400);
    expect(partial.body?.error).toBe(
      'partial write: line 2: missing field set (no space after the series) dropped=1',
    );
    expect(partial.body?.errors.length).toBe(1);
    const none = lineProtocolResponse(parse('bad'));
    expect(none.body?.error).toMatch(/^line 1: .* dropped=1$/);
  });

  it('rejects a body that is not UTF-8, and parses bytes', () => {
    expect(() => parseLineProtocol(Uint8Array.from([0x6d, 0xff]), { now: NOW })).toThrow(/UTF-8/);
    const r = parseLineProtocol(new TextEncoder().encode('m,h=é v=1 0'), { now: NOW });
    expect(r.batch.series[0].tags.h).toBe('é');
  });
});

describe('line protocol: limits', () => {
  it('rejects the request past maxLines (comments and blank lines do not count)', () => {
    expect(parse('# x\n\nm v=1\nm v=2', { maxLines: 2 }).accepted).toBe(2);
    let err: unknown;
    try {
      parse('m v=1\nm v=2\nm v=3', { maxLines: 2 });
    } catch (e) {
      err = e;
    }
    expect(isTidemarkError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as TidemarkError).reason).toBe('too_many_lines');
    expect((err as TidemarkError).field).toBe('maxLines');
  });

  it('a line longer than maxLineLength is an error for that line only', () => {
    const long = `m,t=${'x'.repeat(200)} v=1 0`;
    const r = parse(`m v=1 0\n${long}\nm v=2 0`, { maxLineLength: 100 });
    expect(r.errors.map((e) => [e.line, e.reason])).toEqual([[2, 'line_too_long']]);
    expect(r.samples).toBe(2);
    // A string spanning lines counts towards the limit too.
    const r2 = parse(`m s="${'a\n'.repeat(100)}" 0\nm v=3 0`, { maxLineLength: 50 });
    expect(r2.errors[0]).toMatchObject({ line: 1, reason: 'line_too_long' });
  });

  it('enforces the batch limits (whole request) and keeps at most maxErrors errors', () => {
    expect(() => parse('m a=1,b=2,c=3 0', { limits: { maxSamples: 2 } })).toThrow(/maxSamples/);
    expect(() => parse('m,h=1 v=1 0\nm,h=2 v=1 0', { limits: { maxSeries: 1 } })).toThrow(/maxSeries/);
    const r = parse('bad\n'.repeat(50), { maxErrors: 3 });
    expect(r.errors.length).toBe(3);
    expect(r.rejected).toBe(50);
  });

  it('adds to a given builder', () => {
    const builder = new BatchBuilder();
    parse('m v=1 0', { builder });
    const r = parse('m v=2 0\nn v=3 0', { builder });
    expect(r.batch.length).toBe(3);
    expect(r.batch.series.length).toBe(2);
  });
});

// ---- Round-trip property: structured points, serialized with escaping, parse back exactly.

const escKey = (s: string) => s.replace(/[\\, =]/g, (c) => `\\${c}`);
const escMeasurement = (s: string) => s.replace(/[\\, ]/g, (c) => `\\${c}`);
const escString = (s: string) => s.replace(/[\\"]/g, (c) => `\\${c}`);

type FieldArb = {
  key: string;
  kind: 'float' | 'int' | 'uint' | 'bool' | 'string';
  text: string;
  value?: number;
};
const fieldArb: fc.Arbitrary<FieldArb> = fc
  .tuple(nameArb, fc.nat(4))
  .chain(([key, k]): fc.Arbitrary<FieldArb> => {
    switch (k) {
      case 0:
        return fc.double({ noNaN: true, noDefaultInfinity: true }).map((v) => ({
          key,
          kind: 'float' as const,
          text: String(v),
          value: Number(String(v)),
        }));
      case 1:
        return fc
          .bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
          .map((v) => ({ key, kind: 'int' as const, text: `${v}i`, value: Number(v) }));
      case 2:
        return fc
          .bigInt({ min: 0n, max: 2n ** 64n - 1n })
          .map((v) => ({ key, kind: 'uint' as const, text: `${v}u`, value: Number(v) }));
      case 3:
        return fc
          .constantFrom('t', 'T', 'true', 'True', 'TRUE', 'f', 'F', 'false', 'False', 'FALSE')
          .map((t) => ({ key, kind: 'bool' as const, text: t, value: t[0] === 't' || t[0] === 'T' ? 1 : 0 }));
      default:
        return fc
          .string({ maxLength: 10 })
          .map((s) => ({ key, kind: 'string' as const, text: `"${escString(s)}"` }));
    }
  });
const pointArb = fc.record({
  measurement: nameArb,
  tags: fc.dictionary(nameArb, valueArb, { maxKeys: 4 }),
  fields: fc.array(fieldArb, { minLength: 1, maxLength: 4 }),
  ts: fc.option(fc.bigInt({ min: 0n, max: 2n ** 63n - 1n })), // ns timestamps are int64 (to 2262)
});

describe('line protocol: round trip', () => {
  it('parses any escaped point back exactly', () => {
    fc.assert(
      fc.property(fc.array(pointArb, { minLength: 1, maxLength: 5 }), (points) => {
        const lines: string[] = [];
        const expected: [string, number, number][] = [];
        let strings = 0;
        for (const p of points) {
          let line = escMeasurement(p.measurement);
          for (const [k, v] of Object.entries(p.tags)) line += `,${escKey(k)}=${escKey(v)}`;
          line += ` ${p.fields.map((f) => `${escKey(f.key)}=${f.text}`).join(',')}`;
          if (p.ts !== null) line += ` ${p.ts}`;
          lines.push(line);
          const t = p.ts === null ? NOW : Number(p.ts / 1_000_000n);
          for (const f of p.fields) {
            if (f.kind === 'string') strings++;
            else {
              const s = makeSeries(`${p.measurement}_${f.key}`, p.tags);
              expected.push([seriesKeyOf(s), t, f.value!]);
            }
          }
        }
        const r = parse(lines.join('\n'));
        expect(r.errors).toEqual([]);
        expect(rows(r)).toEqual(expected);
        expect(r.stringFieldsSkipped).toBe(strings);
      }),
      fcParams(1000),
    );
  });
});

// ---- Fuzz: generated and mutated bodies never crash, hang or break the result's invariants.

const corpus = [
  'cpu,host=a,region=us-west usage_idle=98.2,usage_user=1.3 1700000000000000000',
  'weather,location=us-midwest temperature=82i,ok=t,s="x \\" y" 1465839830100400200',
  'm,t=a\\ b\\,c\\=d f\\ x=1,g=2u',
  '# comment',
  '',
  'm s="multi\nline",v=1',
  'bad line here',
  'm v=1e3 -5',
  'm,a=1,a=2 v=1',
];
const noise = [
  ' ',
  ',',
  '=',
  '\\',
  '"',
  '\n',
  '\r',
  '#',
  'i',
  'u',
  't',
  'e',
  '-',
  '.',
  '0',
  '9',
  'é',
  '\u0000',
  '\ud800',
  'x',
];

function check(body: string): void {
  let r: LineProtocolResult;
  try {
    r = parseLineProtocol(body, { now: NOW, maxLineLength: 200, maxLines: 50 });
  } catch (err) {
    if (isTidemarkError(err)) return;
    throw new Error(`body ${JSON.stringify(body)} threw ${String(err)}`);
  }
  const physical = body.split('\n').length;
  const fail = (why: string) => {
    throw new Error(`body ${JSON.stringify(body)}: ${why}`);
  };
  if (r.accepted + r.rejected !== r.lines) fail('accepted + rejected != lines');
  if (r.batch.length !== r.samples) fail('batch length != samples');
  if (r.errors.length !== Math.min(r.rejected, 100)) fail('errors kept != rejected');
  for (const e of r.errors) {
    if (!(e.line >= 1 && e.line <= physical) || typeof e.message !== 'string' || e.message === '') {
      fail(`bad error ${JSON.stringify(e)}`);
    }
  }
  for (let i = 0; i < r.batch.length; i++) {
    const t = r.batch.timestamps[i];
    if (!Number.isInteger(t) || t < 0 || t > MAX_TIMESTAMP_MS) fail(`bad timestamp ${t}`);
    if (!Number.isFinite(r.batch.values[i])) fail('non-finite value');
  }
  for (const s of r.batch.series) makeSeries(s.metric, s.tags);
}

describe('line protocol: fuzz', () => {
  it('100,000 generated and mutated bodies: results or per-line errors, never a crash', () => {
    withSeed('line protocol fuzz', () => {
      const r = rng(0x11e);
      const generated = fc.sample(
        fc.array(pointArb, { minLength: 1, maxLength: 3 }).map((ps) =>
          ps
            .map(
              (p) =>
                `${escMeasurement(p.measurement)}${Object.entries(p.tags)
                  .map(([k, v]) => `,${escKey(k)}=${escKey(v)}`)
                  .join(
                    '',
                  )} ${p.fields.map((f) => `${escKey(f.key)}=${f.text}`).join(',')}${p.ts === null ? '' : ` ${p.ts}`}`,
            )
            .join('\n'),
        ),
        { seed: r.nextU32(), numRuns: 500 },
      );
      const bases = [...corpus, ...generated];
      for (let iter = 0; iter < 100_000; iter++) {
        let body = r.pick(bases);
        if (r.chance(0.2)) body += `\n${r.pick(bases)}`;
        const muts = r.int(0, 5);
        for (let k = 0; k < muts; k++) {
          const at = r.int(0, body.length + 1);
          const op = r.int(0, 3);
          if (op === 0) body = body.slice(0, at) + r.pick(noise) + body.slice(at);
          else if (op === 1) body = body.slice(0, at) + body.slice(at + r.int(1, 4));
          else body = body.slice(0, at) + r.pick(noise) + body.slice(at + 1);
        }
        check(body);
      }
      // Pathological shapes stay linear.
      check('\\'.repeat(10_000));
      check('"'.repeat(10_000));
      check(`m s="${'\\'.repeat(5000)}`);
      check('m v=1\n'.repeat(60));
      check(`${'a'.repeat(100_000)} v=1`);
    });
  });
});

// Keep samplesOf referenced for bit-level debugging in failing runs.
void samplesOf;
