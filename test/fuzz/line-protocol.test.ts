/**
 * Fuzz: the line-protocol parser (HTTP /write, Kafka influx records) with >= 100,000 generated bodies:
 * structure-aware (random valid points: escapes, every field type, precisions, comments, CRLF), the same
 * mutated at the byte and character level, random characters from the grammar's alphabet, and random
 * bytes. Options vary too (precision, small line/line-count/sample/series limits).
 *
 * Every input either parses, with the result's invariants holding (counts add up, every rejected line has
 * a reason and message, every accepted series is valid, every timestamp in range), or is refused with a
 * TidemarkError naming a reason and a field. Nothing else may escape.
 * Seeded: TIDEMARK_SEED=<n> [FUZZ_ONLY=<i>] npx vitest run test/fuzz/line-protocol.test.ts replays.
 */
import { expect, test } from 'vitest';
import {
  type LineProtocolOptions,
  type Precision,
  parseLineProtocol,
} from '../../src/ingest/line-protocol.js';
import { canonicalKey, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS } from '../../src/model/index.js';
import { Rng } from '../../src/util/random.js';
import { BASE_SEED, fuzz, INPUTS, mutateBytes, mutateString, randomBytes, summary } from './harness.js';

const FILE = 'line-protocol.test.ts';
const ALPHABET = ' ,=\\"\n\r\t#iuTFtfe.-+0123456789abcxyzé\u0000\u00ff\u2028\ud800';
const PRECISIONS: (Precision | undefined)[] = [undefined, 'ns', 'us', 'ms', 's', 'm', 'h'];

function ident(r: Rng, escapes: string): string {
  let s = '';
  const n = r.int(1, 7);
  for (let i = 0; i < n; i++) {
    const k = r.int(0, 20);
    if (k === 0) s += `\\${r.pick(escapes.split(''))}`;
    else if (k === 1) s += r.pick(['é', '_', '.', '-', '/', '😀']);
    else s += String.fromCharCode(97 + r.int(0, 26));
  }
  return s;
}

function fieldValue(r: Rng): string {
  switch (r.int(0, 7)) {
    case 0:
      return `${r.int(-1000, 1000)}i`;
    case 1:
      return `${r.int(0, 1000)}u`;
    case 2:
      return r.pick(['t', 'T', 'true', 'True', 'TRUE', 'f', 'F', 'false', 'False', 'FALSE']);
    case 3:
      return `"${r.pick(['', 'a', 'with \\"quotes\\"', 'back\\\\slash', 'multi\nline', 'comma, = space'])}"`;
    case 4:
      return r.pick(['1e10', '-1.5E-3', '0', '-0.0', '1e400', '.5', '9007199254740993']);
    default:
      return String(r.next() * 10 ** r.int(-5, 12) * (r.chance(0.3) ? -1 : 1));
  }
}

function timestamp(r: Rng, precision: Precision | undefined): string {
  if (r.chance(0.2)) return '';
  const base = 1_700_000_000_000; // ms
  const scale: Record<string, number> = { ns: 1e6, us: 1e3, ms: 1, s: 1e-3, m: 1 / 60_000, h: 1 / 3_600_000 };
  const t = Math.floor((base + r.int(-1e9, 1e9)) * scale[precision ?? 'ns']!);
  return ` ${r.chance(0.05) ? r.pick(['-1', '0', '99999999999999999999', '1.5', '1e9']) : BigInt(t).toString()}`;
}

function validLine(r: Rng, precision: Precision | undefined): string {
  let line = ident(r, ' ,');
  const tags = r.int(0, 3);
  for (let i = 0; i < tags; i++) line += `,${ident(r, ' ,=')}=${ident(r, ' ,=')}`;
  const fields = r.int(1, 3);
  const fs: string[] = [];
  for (let i = 0; i < fields; i++) fs.push(`${ident(r, ' ,=')}=${fieldValue(r)}`);
  return `${line} ${fs.join(',')}${timestamp(r, precision)}`;
}

function validBody(r: Rng, precision: Precision | undefined): string {
  const lines: string[] = [];
  // Few, short lines: the parser's paths are per line, so small bodies reach them as well, faster.
  const n = r.int(1, 5);
  for (let i = 0; i < n; i++) {
    const k = r.int(0, 20);
    if (k === 0) lines.push('# a comment, with = signs');
    else if (k === 1) lines.push(r.pick(['', '   ', '\t']));
    else lines.push(validLine(r, precision));
  }
  return lines.join(r.chance(0.2) ? '\r\n' : '\n') + (r.chance(0.5) ? '\n' : '');
}

/** A corpus of valid bodies (own seeded generator) that most inputs start from: cheaper than new ones. */
const poolRng = new Rng((BASE_SEED ^ 0x11e) >>> 0);
const POOL = Array.from({ length: 2000 }, () => validBody(poolRng, poolRng.pick(PRECISIONS)));

interface Input {
  body: string | Uint8Array;
  options: LineProtocolOptions;
}

function gen(r: Rng): Input {
  const precision = r.pick(PRECISIONS);
  const options: LineProtocolOptions = {
    now: 1_700_000_000_000 + r.int(0, 1e6),
    ...(precision === undefined ? {} : { precision }),
    ...(r.chance(0.3) ? { maxLineLength: r.int(1, 120) } : {}),
    ...(r.chance(0.2) ? { maxLines: r.int(1, 8) } : {}),
    ...(r.chance(0.3) ? { maxErrors: r.int(0, 4) } : {}),
    ...(r.chance(0.2) ? { limits: { maxSamples: r.int(1, 10), maxSeries: r.int(1, 5) } } : {}),
    ...(r.chance(0.1) ? { separator: r.pick(['.', '', '__']) } : {}),
  };
  const valid = r.chance(0.2) ? validBody(r, precision) : r.pick(POOL);
  let body: string | Uint8Array;
  switch (r.int(0, 10)) {
    case 0:
    case 1:
    case 2:
      body = valid;
      break;
    case 3:
    case 4:
    case 5:
      body = mutateString(r, valid, ALPHABET);
      break;
    case 6:
    case 7:
      body = mutateBytes(
        r,
        Buffer.from(valid, 'utf8'),
        r.chance(0.3) ? Buffer.from(r.pick(POOL)) : undefined,
      );
      break;
    case 8: {
      let s = '';
      const n = r.int(0, 120);
      for (let i = 0; i < n; i++) s += ALPHABET[r.int(0, ALPHABET.length)];
      body = s;
      break;
    }
    default:
      body = randomBytes(r, r.int(0, 160));
  }
  return { body, options };
}

function check(input: Input): void {
  const res = parseLineProtocol(input.body, input.options);
  const maxErrors = input.options.maxErrors ?? 100;
  if (res.accepted + res.rejected !== res.lines)
    throw new Error(`accepted + rejected != lines: ${JSON.stringify(res)}`);
  if (res.errors.length !== Math.min(res.rejected, maxErrors)) throw new Error('errors list length');
  if ((res.linesTooLong ?? 0) > res.rejected) throw new Error('linesTooLong > rejected');
  for (const e of res.errors) {
    if (!/^[a-z][a-z0-9_]*$/.test(e.reason) || e.message === '' || !(e.line >= 1)) {
      throw new Error(`bad line error ${JSON.stringify(e)}`);
    }
  }
  const b = res.batch;
  if (b.length !== res.samples) throw new Error('batch length != samples');
  for (const s of b.series) canonicalKey(s); // throws on an invalid series
  for (let i = 0; i < b.length; i++) {
    if (b.seriesRef[i]! >= b.series.length) throw new Error('seriesRef out of range');
    const t = b.timestamps[i]!;
    if (!Number.isInteger(t) || t < MIN_TIMESTAMP_MS || t > MAX_TIMESTAMP_MS)
      throw new Error(`timestamp ${t}`);
  }
}

test(`line protocol: ${INPUTS} generated bodies parse or are rejected with a reason`, () => {
  const stats = fuzz(FILE, INPUTS, gen, check);
  console.log(summary('line protocol', stats));
  expect(stats.inputs).toBeGreaterThanOrEqual(process.env.FUZZ_ONLY === undefined ? 100_000 : 1);
  if (process.env.FUZZ_ONLY === undefined) {
    // The generators reach both outcomes (a generator that only made garbage would test little).
    expect(stats.accepted).toBeGreaterThan(INPUTS / 10);
    expect(stats.rejected).toBeGreaterThan(INPUTS / 100);
  }
}, 120_000);
