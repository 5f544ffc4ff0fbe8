/**
 * Fuzz: OpenTSDB `/api/put` body parsing (parseOpenTsdbPut: UTF-8 + JSON + putDatapoints, the path of the
 * HTTP handler and Kafka opentsdb records) with >= 100,000 generated bodies: structure-aware datapoints
 * (every field with values of every JSON type, odd numbers and timestamps, tags with hostile keys such as
 * `__proto__`), their JSON text mutated at character and byte level, and random bytes. Options vary
 * (small maxPoints / maxSamples / maxSeries).
 *
 * Each body either parses — every datapoint is accounted for (success + failed = points), every failed
 * one is reported as sent with a message, every stored series is valid and every timestamp in range — or
 * the request is refused with a TidemarkError naming a reason and a field.
 * Seeded: TIDEMARK_SEED=<n> [FUZZ_ONLY=<i>] npx vitest run test/fuzz/opentsdb-put.test.ts replays.
 */
import { expect, test } from 'vitest';
import { type OpenTsdbPutOptions, parseOpenTsdbPut } from '../../src/ingest/opentsdb.js';
import { canonicalKey, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS } from '../../src/model/index.js';
import { Rng } from '../../src/util/random.js';
import {
  BASE_SEED,
  fuzz,
  INPUTS,
  mutateBytes,
  mutateString,
  NUMBERS,
  randomBytes,
  summary,
} from './harness.js';

const FILE = 'opentsdb-put.test.ts';
const ALPHABET = '{}[]:,"\\ \n\t-+.0123456789eEtrufalsn\u0000\u00ff\ud800é';
const KEYS = ['metric', 'timestamp', 'value', 'tags', '__proto__', 'constructor', 'x'];

function scalar(r: Rng): unknown {
  switch (r.int(0, 9)) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return r.pick([
        0,
        -1,
        1.5,
        2 ** 31,
        2 ** 53,
        1e308,
        -0,
        1346846400,
        1346846400123,
        253402300799999,
        1e21,
      ]);
    case 3:
      return r.pick(NUMBERS);
    case 4:
      return r.pick(['', 'sys.cpu.user', 'a b', 'é', '\u0000', 'x'.repeat(r.int(200, 300)), '1', '0x1']);
    case 5:
      return r.int(-1e9, 2e9);
    default:
      return r.next() * 10 ** r.int(0, 14);
  }
}

function tags(r: Rng): unknown {
  if (r.chance(0.1)) return r.pick([null, [], 'host=a', 1, { a: { b: 1 } }]);
  const out: Record<string, unknown> = {};
  const n = r.int(0, 4);
  for (let i = 0; i < n; i++) {
    const k = r.chance(0.1)
      ? r.pick(['__proto__', 'constructor', '', ' ', 'a=b', 'toString', 'é'])
      : `k${r.int(0, 5)}`;
    // defineProperty: a real own key even for __proto__ (as JSON.parse makes it).
    Object.defineProperty(out, k, {
      value: r.chance(0.8) ? `v${r.int(0, 5)}` : scalar(r),
      enumerable: true,
      configurable: true,
      writable: true,
    });
  }
  return out;
}

function datapoint(r: Rng): unknown {
  if (r.chance(0.05)) return scalar(r);
  const dp: Record<string, unknown> = {
    metric: r.chance(0.8) ? r.pick(['sys.cpu.user', 'm', 'net.bytes_in', 'a/b-c_d']) : scalar(r),
    timestamp: r.chance(0.7) ? 1_600_000_000 + r.int(0, 1e8) * (r.chance(0.5) ? 1000 : 1) : scalar(r),
    value: r.chance(0.7) ? r.pick([r.next() * 100, r.int(-100, 100), String(r.next())]) : scalar(r),
    tags: tags(r),
  };
  if (r.chance(0.1)) delete dp[r.pick(KEYS)];
  if (r.chance(0.05)) dp[r.pick(KEYS)] = scalar(r);
  return dp;
}

function body(r: Rng): unknown {
  if (r.chance(0.3)) return datapoint(r);
  const n = r.int(0, 8);
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) out.push(datapoint(r));
  return out;
}

/** A corpus of valid-shaped bodies (own seeded generator) that most inputs start from. */
const poolRng = new Rng((BASE_SEED ^ 0x75db) >>> 0);
const POOL = Array.from({ length: 2000 }, () => JSON.stringify(body(poolRng)) ?? 'null');

interface Input {
  body: string | Uint8Array;
  options: OpenTsdbPutOptions;
}

function gen(r: Rng): Input {
  const options: OpenTsdbPutOptions = {
    ...(r.chance(0.15) ? { maxPoints: r.int(1, 6) } : {}),
    ...(r.chance(0.15) ? { limits: { maxSamples: r.int(1, 6), maxSeries: r.int(1, 4) } } : {}),
  };
  const text = r.chance(0.2) ? (JSON.stringify(body(r)) ?? 'null') : r.pick(POOL);
  let b: string | Uint8Array;
  switch (r.int(0, 8)) {
    case 0:
    case 1:
    case 2:
      b = text;
      break;
    case 3:
    case 4:
      b = mutateString(r, text, ALPHABET);
      break;
    case 5:
    case 6:
      b = mutateBytes(r, Buffer.from(text, 'utf8'));
      break;
    default:
      b = r.chance(0.5)
        ? randomBytes(r, r.int(0, 120))
        : Array.from({ length: r.int(0, 80) }, () => ALPHABET[r.int(0, ALPHABET.length)]).join('');
  }
  return { body: b, options };
}

function check(input: Input): void {
  const res = parseOpenTsdbPut(input.body, input.options);
  // What the handler parsed, to compare the accounting with (the parser would have thrown if invalid).
  const text = typeof input.body === 'string' ? input.body : Buffer.from(input.body).toString('utf8');
  const json = JSON.parse(text) as unknown;
  const points = Array.isArray(json) ? json : [json];
  if (res.success + res.failed !== points.length) throw new Error('success + failed != datapoints');
  if (res.errors.length !== res.failed) throw new Error('errors.length != failed');
  for (const e of res.errors) {
    if (typeof e.error !== 'string' || e.error === '') throw new Error(`datapoint error without a message`);
  }
  const b = res.batch;
  if (b.length !== res.success) throw new Error('batch length != success');
  for (const s of b.series) canonicalKey(s);
  for (let i = 0; i < b.length; i++) {
    const t = b.timestamps[i]!;
    if (!Number.isInteger(t) || t < MIN_TIMESTAMP_MS || t > MAX_TIMESTAMP_MS)
      throw new Error(`timestamp ${t}`);
    if (!Number.isFinite(b.values[i]!) && !Number.isNaN(b.values[i]!)) {
      // ±Infinity is not representable in OpenTSDB's JSON; a finite or NaN value only.
      throw new Error(`value ${b.values[i]}`);
    }
  }
}

test(`OpenTSDB put: ${INPUTS} generated bodies parse or are rejected with a reason`, () => {
  const stats = fuzz(FILE, INPUTS, gen, check);
  console.log(summary('opentsdb put', stats));
  expect(stats.inputs).toBeGreaterThanOrEqual(process.env.FUZZ_ONLY === undefined ? 100_000 : 1);
  if (process.env.FUZZ_ONLY === undefined) {
    expect(stats.accepted).toBeGreaterThan(INPUTS / 10);
    expect(stats.rejected).toBeGreaterThan(INPUTS / 100);
  }
}, 120_000);
