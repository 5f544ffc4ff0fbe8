import { invalidArgument } from '../errors/index.js';
import {
  MAX_NAME_BYTES,
  MAX_TAGS,
  MAX_TIMESTAMP_MS,
  MAX_VALUE_BYTES,
  MIN_TIMESTAMP_MS,
  RESERVED_TAG_PREFIX,
} from './limits.js';

// OpenTSDB's rule for metric and tag names: ASCII letters, digits, - _ . / and any Unicode letter.
const NAME_RE = /^[\p{L}0-9\-_./]+$/u;
// Tag values: any printable text; control characters would break logs, line protocol and URLs.
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

const utf8 = new TextEncoder();

function byteLength(s: string): number {
  // Fast path: ASCII-only strings are the common case and need no encoding.
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) {
      n = utf8.encode(s).length;
      break;
    }
  }
  return n;
}

export function validateMetric(metric: unknown, field = 'metric'): string {
  if (typeof metric !== 'string' || metric.length === 0) {
    throw invalidArgument('metric_empty', field, `${field}: metric name is empty`);
  }
  checkName(metric, field, 'metric');
  return metric;
}

function checkName(name: string, field: string, what: 'metric' | 'tag'): void {
  if (!name.isWellFormed()) {
    throw invalidArgument(`${what}_name_invalid`, field, `${field}: ${what} name is not valid Unicode`);
  }
  if (byteLength(name) > MAX_NAME_BYTES) {
    throw invalidArgument(
      `${what}_name_too_long`,
      field,
      `${field}: ${what} name is longer than ${MAX_NAME_BYTES} bytes`,
    );
  }
  if (!NAME_RE.test(name)) {
    throw invalidArgument(
      `${what}_name_invalid`,
      field,
      `${field}: ${what} name ${JSON.stringify(name)} has a character outside a-z A-Z 0-9 - _ . / and Unicode letters`,
    );
  }
}

export function validateTagName(name: unknown, field: string): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw invalidArgument('tag_name_empty', field, `${field}: tag name is empty`);
  }
  checkName(name, field, 'tag');
  if (name.startsWith(RESERVED_TAG_PREFIX)) {
    throw invalidArgument(
      'tag_name_reserved',
      field,
      `${field}: tag names starting with "${RESERVED_TAG_PREFIX}" are reserved`,
    );
  }
  return name;
}

export function validateTagValue(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalidArgument('tag_value_empty', field, `${field}: tag value is empty`);
  }
  if (!value.isWellFormed()) {
    throw invalidArgument('tag_value_invalid', field, `${field}: tag value is not valid Unicode`);
  }
  if (CONTROL_RE.test(value)) {
    throw invalidArgument('tag_value_invalid', field, `${field}: tag value contains a control character`);
  }
  if (byteLength(value) > MAX_VALUE_BYTES) {
    throw invalidArgument(
      'tag_value_too_long',
      field,
      `${field}: tag value is longer than ${MAX_VALUE_BYTES} bytes`,
    );
  }
  return value;
}

/**
 * Validates tags given as name/value pairs (so duplicate names in the input can be seen) or as a
 * record, and returns them as a plain record.
 */
export function validateTags(
  tags: Iterable<readonly [string, string]> | Readonly<Record<string, string>> | undefined,
  field = 'tags',
): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  if (tags === undefined || tags === null) return out;
  if (typeof tags !== 'object')
    throw invalidArgument('tags_invalid', field, `${field}: tags must be an object`);
  const pairs: Iterable<readonly [unknown, unknown]> =
    Symbol.iterator in tags ? (tags as Iterable<readonly [string, string]>) : Object.entries(tags);
  let n = 0;
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2) {
      throw invalidArgument('tags_invalid', field, `${field}: each tag must be a [name, value] pair`);
    }
    const [name, value] = pair;
    const name_ = validateTagName(name, `${field}.${String(name)}`);
    const value_ = validateTagValue(value, `${field}.${name_}`);
    if (Object.hasOwn(out, name_)) {
      throw invalidArgument(
        'tag_name_duplicate',
        `${field}.${name_}`,
        `${field}: tag ${name_} appears twice`,
      );
    }
    if (++n > MAX_TAGS) {
      throw invalidArgument('too_many_tags', field, `${field}: more than ${MAX_TAGS} tags`);
    }
    out[name_] = value_;
  }
  return out;
}

export function validateTimestamp(t: unknown, field = 'timestamp'): number {
  if (typeof t !== 'number' || !Number.isInteger(t)) {
    throw invalidArgument('timestamp_invalid', field, `${field}: timestamp must be an integer number of ms`);
  }
  if (t < MIN_TIMESTAMP_MS || t > MAX_TIMESTAMP_MS) {
    throw invalidArgument(
      'timestamp_out_of_range',
      field,
      `${field}: timestamp ${t} is outside [${MIN_TIMESTAMP_MS}, ${MAX_TIMESTAMP_MS}] ms (1970-01-01 .. 9999-12-31)`,
    );
  }
  return t;
}

/** Values: any float64. NaN (any payload) and ±Inf are stored bit-exactly; aggregations skip NaN. */
export function validateValue(v: unknown, field = 'value'): number {
  if (typeof v !== 'number')
    throw invalidArgument('value_invalid', field, `${field}: value must be a number`);
  return v;
}
