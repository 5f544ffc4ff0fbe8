/**
 * The fuzz harness: seeded generators and mutators, and a loop that runs N inputs through a target and
 * checks each outcome. Every input gets its own seed (base seed + index), so a failure names the one input
 * to replay: `TIDEMARK_SEED=<base> FUZZ_ONLY=<index> npx vitest run test/fuzz/<file>`.
 *
 * No hang: inputs are bounded in size and every target is synchronous, so the loop finishing at all is the
 * check; the slowest input is logged (never asserted: tests do not assert timings).
 */
import { TidemarkError } from '../../src/errors/index.js';
import { Rng } from '../../src/util/random.js';

export const BASE_SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);
/** Replays one input by index (with the same base seed). */
export const ONLY = process.env.FUZZ_ONLY === undefined ? undefined : Number(process.env.FUZZ_ONLY);
/** Inputs per target: at least 100,000 in CI; FUZZ_INPUTS raises it for longer local runs. */
export const INPUTS = Math.max(100_000, Number(process.env.FUZZ_INPUTS ?? 0));

export function replay(file: string, index?: number): string {
  return `seed ${BASE_SEED}${index === undefined ? '' : ` input ${index}`} (replay: TIDEMARK_SEED=${BASE_SEED}${
    index === undefined ? '' : ` FUZZ_ONLY=${index}`
  } npx vitest run test/fuzz/${file})`;
}

export interface FuzzStats {
  inputs: number;
  accepted: number;
  rejected: number;
  reasons: Map<string, number>;
  slowestMs: number;
  slowestIndex: number;
  /** Time spent generating and running inputs (logged only). */
  genMs: number;
  runMs: number;
}

/**
 * Runs `n` inputs: `gen(rng, i)` makes input i from its own generator, `run` processes it and returns
 * 'accepted' or throws; `checkError` decides whether a throw is a proper rejection (returns its reason)
 * or a bug (throws). Any failure is rethrown with the replay line and the input.
 */
export function fuzz<T>(
  file: string,
  n: number,
  gen: (r: Rng, i: number) => T,
  run: (input: T) => void,
  checkError: (err: unknown, input: T) => string = expectRejection,
): FuzzStats {
  const stats: FuzzStats = {
    inputs: 0,
    accepted: 0,
    rejected: 0,
    reasons: new Map(),
    slowestMs: 0,
    slowestIndex: -1,
    genMs: 0,
    runMs: 0,
  };
  const from = ONLY ?? 0;
  const to = ONLY === undefined ? n : ONLY + 1;
  for (let i = from; i < to; i++) {
    const g0 = performance.now();
    const input = gen(new Rng((BASE_SEED + Math.imul(i, 0x9e3779b1)) >>> 0), i);
    const t0 = performance.now();
    stats.genMs += t0 - g0;
    try {
      try {
        run(input);
        stats.accepted++;
      } catch (err) {
        const reason = checkError(err, input);
        stats.rejected++;
        stats.reasons.set(reason, (stats.reasons.get(reason) ?? 0) + 1);
      }
    } catch (bug) {
      throw new Error(
        `fuzz ${file}: ${replay(file, i)}\ninput: ${show(input)}\n${bug instanceof Error ? (bug.stack ?? bug.message) : String(bug)}`,
        { cause: bug },
      );
    }
    const dt = performance.now() - t0;
    stats.runMs += dt;
    if (dt > stats.slowestMs) {
      stats.slowestMs = dt;
      stats.slowestIndex = i;
    }
    stats.inputs++;
  }
  return stats;
}

/** A proper rejection: a TidemarkError with a stable reason and the request field it is about. */
export function expectRejection(err: unknown): string {
  if (!(err instanceof TidemarkError)) throw err;
  if (typeof err.reason !== 'string' || !/^[a-z][a-z0-9_]*$/.test(err.reason)) {
    throw new Error(`rejection without a stable reason: ${JSON.stringify(err.toJSON())}`);
  }
  if (typeof err.details.field !== 'string' || err.details.field === '') {
    throw new Error(`rejection without a field: ${JSON.stringify(err.toJSON())}`);
  }
  if (err.message === '') throw new Error(`rejection without a message: ${err.reason}`);
  return err.reason;
}

export function summary(name: string, s: FuzzStats): string {
  const top = [...s.reasons]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 8)
    .map(([r, k]) => `${r}=${k}`)
    .join(' ');
  return `${name}: ${s.inputs} inputs, ${s.accepted} accepted, ${s.rejected} rejected (${top}); slowest input #${s.slowestIndex} ${s.slowestMs.toFixed(1)} ms; generate ${Math.round(s.genMs)} ms, run ${Math.round(s.runMs)} ms`;
}

export function show(input: unknown): string {
  let text: string;
  if (input instanceof Uint8Array) text = `hex:${Buffer.from(input).toString('hex')}`;
  else if (typeof input === 'string') text = JSON.stringify(input);
  else {
    try {
      text = JSON.stringify(input, (_k, v) =>
        v instanceof Uint8Array
          ? `hex:${Buffer.from(v).toString('hex')}`
          : typeof v === 'bigint'
            ? `${v}n`
            : v,
      );
    } catch {
      text = String(input);
    }
  }
  return text.length > 4000 ? `${text.slice(0, 4000)}… (${text.length} chars)` : text;
}

// ---------------------------------------------------------------------------------------------- mutators

export function randomBytes(r: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = r.int(0, 256);
  return out;
}

/** Interesting bytes for varints, lengths, UTF-8 and separators. */
const MAGIC = [
  0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x0a, 0x0d, 0x20, 0x2c, 0x3d, 0x5c, 0x22, 0xc3, 0xe2, 0xf0,
];

/** 1..k byte-level edits: flip, set to a magic byte, insert, delete, duplicate a slice, truncate, splice. */
export function mutateBytes(r: Rng, input: Uint8Array, other?: Uint8Array): Uint8Array {
  let b = Array.from(input);
  const edits = r.int(1, 5);
  for (let e = 0; e < edits; e++) {
    const at = r.int(0, b.length + 1);
    switch (r.int(0, 8)) {
      case 0:
        if (b.length > 0) b[at % b.length] = b[at % b.length]! ^ (1 << r.int(0, 8));
        break;
      case 1:
        if (b.length > 0) b[at % b.length] = r.pick(MAGIC);
        break;
      case 2:
        b.splice(at, 0, ...Array.from(randomBytes(r, r.int(1, 8))));
        break;
      case 3:
        b.splice(at, r.int(1, 8));
        break;
      case 4: {
        const len = r.int(1, 16);
        b.splice(at, 0, ...b.slice(at, at + len));
        break;
      }
      case 5:
        b = b.slice(0, at);
        break;
      case 6:
        if (other !== undefined && other.length > 0) {
          const o = r.int(0, other.length);
          b = [...b.slice(0, at), ...Array.from(other.subarray(o))];
        }
        break;
      default:
        // A large varint-looking run (length fields that overflow).
        b.splice(at, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
    }
  }
  return Uint8Array.from(b);
}

/** 1..k string edits with characters from `alphabet` and numbers. */
export function mutateString(r: Rng, s: string, alphabet: string): string {
  let t = s;
  const edits = r.int(1, 6);
  for (let e = 0; e < edits; e++) {
    const at = r.int(0, t.length + 1);
    switch (r.int(0, 7)) {
      case 0:
        t = t.slice(0, at) + t.slice(at + r.int(1, 6));
        break;
      case 1:
        t = t.slice(0, at) + alphabet[r.int(0, alphabet.length)] + t.slice(at);
        break;
      case 2:
        t = t.slice(0, at);
        break;
      case 3:
        t = t.slice(0, at) + t.slice(r.int(0, t.length + 1), r.int(0, t.length + 1)) + t.slice(at);
        break;
      case 4:
        t = t.slice(0, at) + r.pick(NUMBERS) + t.slice(at);
        break;
      case 5: {
        const len = r.int(1, 12);
        t = t.slice(0, at) + t.slice(at, at + len).repeat(r.int(2, 5)) + t.slice(at + len);
        break;
      }
      default:
        if (t.length > 0) {
          const i = at % t.length;
          t = t.slice(0, i) + String.fromCharCode(t.charCodeAt(i) ^ (1 << r.int(0, 7))) + t.slice(i + 1);
        }
    }
  }
  return t;
}

export const NUMBERS = [
  '0',
  '-0',
  '1',
  '-1',
  '1.5',
  '1e308',
  '1e309',
  '-1e309',
  '4.9e-324',
  '9007199254740991',
  '9007199254740993',
  '18446744073709551615',
  '18446744073709551616',
  '-9223372036854775808',
  '9223372036854775807',
  '99999999999999999999999',
  'NaN',
  'Infinity',
  '0x10',
  '1_000',
  '.5',
  '5.',
  '+7',
  '',
];
