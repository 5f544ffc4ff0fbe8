/** Selection requests: validation, regex compilation (once per request) and series matching. */
import { invalidArgument } from '../errors/index.js';
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, type Series } from '../model/index.js';
import { BoundedCache } from '../model/series-cache.js';
import type { Matcher, MatchOp, SelectRequest } from './store.js';

export interface CompiledMatcher {
  readonly name: string;
  readonly op: MatchOp;
  readonly value: string;
  /** For =~ and !~: the anchored regex. */
  readonly re: RegExp | null;
}

export interface CompiledSelect {
  readonly metric: string;
  readonly minT: number;
  readonly maxT: number;
  readonly matchers: readonly CompiledMatcher[];
}

const OPS: ReadonlySet<string> = new Set(['=', '!=', '=~', '!~']);

/**
 * Compiled regexes by source: a query compiles the same matchers once per shard (and a dashboard the same
 * query again and again), and compiling was ~12% of a select's CPU. Without the g/y flags a RegExp keeps no
 * state between test() calls, so one object can serve every caller. Bounded.
 */
const REGEXES = new BoundedCache<string, RegExp>(512);

function anchoredRegex(source: string): RegExp {
  let re = REGEXES.get(source);
  if (re === undefined) {
    re = new RegExp(`^(?:${source})$`, 'su');
    REGEXES.set(source, re);
  }
  return re;
}

function checkTime(v: unknown, field: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw invalidArgument('time_invalid', field, `${field} must be an integer number of ms`);
  }
  // Clamp to the representable range: a wider range selects the same samples.
  return Math.min(Math.max(v, MIN_TIMESTAMP_MS - 1), MAX_TIMESTAMP_MS + 1);
}

/** Validates a select/delete request; throws INVALID_ARGUMENT naming the field. */
export function compileSelect(req: SelectRequest): CompiledSelect {
  if (req === null || typeof req !== 'object') {
    throw invalidArgument('request_invalid', 'request', 'request must be an object');
  }
  if (typeof req.metric !== 'string' || req.metric.length === 0) {
    throw invalidArgument('metric_empty', 'metric', 'metric must be a non-empty string');
  }
  const minT = checkTime(req.minT, 'minT', MIN_TIMESTAMP_MS);
  const maxT = checkTime(req.maxT, 'maxT', MAX_TIMESTAMP_MS);
  const matchers: CompiledMatcher[] = [];
  const input = req.matchers ?? [];
  if (!Array.isArray(input))
    throw invalidArgument('matchers_invalid', 'matchers', 'matchers must be an array');
  for (let i = 0; i < input.length; i++) {
    const m = input[i] as Matcher;
    const field = `matchers[${i}]`;
    if (m === null || typeof m !== 'object')
      throw invalidArgument('matcher_invalid', field, `${field} must be an object`);
    if (typeof m.name !== 'string' || m.name.length === 0) {
      throw invalidArgument(
        'matcher_name_invalid',
        `${field}.name`,
        `${field}.name must be a non-empty string`,
      );
    }
    if (typeof m.op !== 'string' || !OPS.has(m.op)) {
      throw invalidArgument('matcher_op_invalid', `${field}.op`, `${field}.op must be one of = != =~ !~`);
    }
    if (typeof m.value !== 'string') {
      throw invalidArgument('matcher_value_invalid', `${field}.value`, `${field}.value must be a string`);
    }
    let re: RegExp | null = null;
    if (m.op === '=~' || m.op === '!~') {
      try {
        re = anchoredRegex(m.value);
      } catch (err) {
        throw invalidArgument(
          'matcher_regex_invalid',
          `${field}.value`,
          `${field}.value is not a valid regular expression: ${(err as Error).message}`,
        );
      }
    }
    matchers.push({ name: m.name, op: m.op, value: m.value, re });
  }
  return { metric: req.metric, minT, maxT, matchers };
}

/** Whether the series satisfies every matcher (the metric is checked by the caller). */
export function matchesAll(matchers: readonly CompiledMatcher[], series: Series): boolean {
  for (const m of matchers) {
    const v = Object.hasOwn(series.tags, m.name) ? series.tags[m.name]! : '';
    let ok: boolean;
    switch (m.op) {
      case '=':
        ok = v === m.value;
        break;
      case '!=':
        ok = v !== m.value;
        break;
      case '=~':
        ok = m.re!.test(v);
        break;
      default:
        ok = !m.re!.test(v);
    }
    if (!ok) return false;
  }
  return true;
}
