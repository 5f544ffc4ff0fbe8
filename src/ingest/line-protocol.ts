/**
 * InfluxDB line protocol parser (the body of `/write`, or a Kafka record). Pure: the default
 * timestamp is the injected `now`. Mapping, escaping and error policy: docs/ingest.md.
 *
 *   measurement[,tag=value...] field=value[,field=value...] [timestamp]
 *
 * Each numeric or boolean field becomes one sample of the series `<measurement><separator><field>` with
 * the line's tags. A line is atomic: any problem rejects the whole line (none of its fields are kept)
 * with a per-line error; the other lines still parse. Whole-request problems (too many lines or samples,
 * a bad option, a body that is not UTF-8) throw a TidemarkError instead.
 */
import { invalidArgument, isTidemarkError } from '../errors/index.js';
import {
  intern,
  keyString,
  MAX_TIMESTAMP_MS,
  MIN_TIMESTAMP_MS,
  type Series,
  validateMetric,
  validateTags,
  validateTimestamp,
} from '../model/index.js';
import type { SampleBatch } from '../storage/store.js';
import {
  BatchBuilder,
  type BatchLimits,
  canonicalKeyFast,
  limitExceeded,
  sized,
  tagsDedupSuffix,
} from './batch.js';

export type Precision = 'ns' | 'us' | 'ms' | 's' | 'm' | 'h';

export interface LineProtocolOptions {
  /** Default timestamp (ms since the epoch) for lines without one; truncated to `precision` if coarser than ms. */
  now: number;
  /** Unit of the timestamps in the body (default ns, as InfluxDB). Use parsePrecision for a query parameter. */
  precision?: Precision;
  /** Between measurement and field key in the metric name (default `_`). */
  separator?: string;
  /** Longest line, in UTF-16 code units of the decoded body (default 65,536). */
  maxLineLength?: number;
  /** Most points (non-blank, non-comment lines) per body (default 100,000); more → the request is rejected. */
  maxLines?: number;
  /** Most per-line errors kept in the result (default 100); all are counted in `rejected`. */
  maxErrors?: number;
  /** Add to this builder instead of a new one (several bodies into one batch). */
  builder?: BatchBuilder;
  /** Limits for the builder created when `builder` is not given. */
  limits?: BatchLimits;
}

export interface LineError {
  /** 1-based line number where the point starts. */
  line: number;
  /** Stable cause, e.g. `missing_fields`, `field_value_invalid`, `metric_name_invalid`. */
  reason: string;
  message: string;
  /** The field key, tag (`tags.<name>`) or `timestamp` concerned, when there is one. */
  field?: string;
}

export interface LineProtocolResult {
  batch: SampleBatch;
  /** Points seen (non-blank, non-comment lines). */
  lines: number;
  /** Points parsed and added. */
  accepted: number;
  /** Points rejected (each has an error, though only the first maxErrors are kept). */
  rejected: number;
  /** Samples added. */
  samples: number;
  /** String fields skipped in accepted points (Tidemark stores numbers only). */
  stringFieldsSkipped: number;
  /** Points rejected for passing maxLineLength (counted in `rejected` too; for the limit metric). */
  linesTooLong?: number;
  errors: LineError[];
}

export const DEFAULT_MAX_LINE_LENGTH = 65_536;
export const DEFAULT_MAX_LINES = 100_000;
export const DEFAULT_MAX_ERRORS = 100;

/** Parses a `precision` query parameter (InfluxDB 1.x and 2.x spellings); absent → ns. */
export function parsePrecision(p: string | null | undefined): Precision {
  switch (p) {
    case undefined:
    case null:
    case '':
    case 'n':
    case 'ns':
      return 'ns';
    case 'u':
    case 'us':
    case 'µ':
    case 'µs':
      return 'us';
    case 'ms':
      return 'ms';
    case 's':
      return 's';
    case 'm':
      return 'm';
    case 'h':
      return 'h';
    default:
      throw invalidArgument(
        'precision_invalid',
        'precision',
        `precision ${JSON.stringify(p)} is not one of ns, us (u), ms, s, m, h`,
      );
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The line's problem; carried by exception inside the parser only. */
class LineFail {
  constructor(
    readonly reason: string,
    readonly message: string,
    readonly field?: string,
  ) {}
}

/** A series section, parsed and validated: the same for every body that repeats it (see parsedSeries). */
interface ParsedSeries {
  readonly measurement: string;
  readonly tags: Readonly<Record<string, string>>;
  /** tagsDedupSuffix(tags): a field's batch dedup key is its metric + this. */
  readonly tagsKey: string;
  /**
   * The interned series of this section's fields, by metric (measurement + separator + field key): later
   * bodies hand the same object on, whose canonical key and id routing, entry encoding and apply then read
   * instead of recomputing them (src/model/intern.ts). At most MAX_FIELD_SERIES kept.
   */
  readonly fields: Map<string, Series>;
}

const MAX_FIELD_SERIES = 256;

/** The interned series `metric` with the section's tags (both validated). */
function fieldSeries(parsed: ParsedSeries, metric: string): Series {
  let s = parsed.fields.get(metric);
  if (s === undefined) {
    const made: Series = { metric, tags: parsed.tags };
    const key = canonicalKeyFast(made);
    s = intern(key, keyString(key), () => made);
    if (parsed.fields.size < MAX_FIELD_SERIES) parsed.fields.set(metric, s);
  }
  return s;
}

/**
 * Series sections parsed by earlier bodies (writers send the same series again and again): raw text → parsed.
 * Bounded: emptied when full, so it holds at most PARSED_SERIES_MAX entries (a few MB).
 */
const parsedSeries = new Map<string, ParsedSeries>();
const PARSED_SERIES_MAX = 8192;

interface SeriesInfo {
  parsed: ParsedSeries;
  /** field key → ref in the builder. */
  fieldRefs: Map<string, number>;
  /** The field keys (without escapes) of the last point of this series, in order, and their refs: a point with
   * the same keys in the same order (the common case) is resolved without slicing or hashing a key. */
  lastKeys: string[];
  lastRefs: number[];
}

const SPACE = 0x20;
const COMMA = 0x2c;
const EQ = 0x3d;
const BSLASH = 0x5c;
const QUOTE = 0x22;
const NL = 0x0a;
const CR = 0x0d;
const TAB = 0x09;
const HASH = 0x23;
const MINUS = 0x2d;
const DOT = 0x2e;
const D0 = 0x30;
const D9 = 0x39;

const INT64_MAX = '9223372036854775807';
const INT64_MIN_ABS = '9223372036854775808';
const UINT64_MAX = '18446744073709551615';

/** Parses a line-protocol body. */
export function parseLineProtocol(
  body: string | Uint8Array,
  options: LineProtocolOptions,
): LineProtocolResult {
  let text: string;
  if (typeof body === 'string') text = body;
  else {
    try {
      text = utf8.decode(body);
    } catch {
      throw invalidArgument('body_not_utf8', 'body', 'the body is not valid UTF-8');
    }
  }
  const precision = parsePrecision(options.precision);
  const now = validateTimestamp(options.now, 'now');
  const parser = new LineParser(
    text,
    precision,
    now,
    options.separator ?? '_',
    options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH,
    options.maxLines ?? DEFAULT_MAX_LINES,
    options.maxErrors ?? DEFAULT_MAX_ERRORS,
    options.builder ?? new BatchBuilder(sized(options.limits, text.length >> 5)),
  );
  parser.run();
  return {
    batch: parser.builder.build(),
    lines: parser.lines,
    accepted: parser.accepted,
    rejected: parser.rejected,
    samples: parser.samples,
    stringFieldsSkipped: parser.stringsSkipped,
    linesTooLong: parser.tooLong,
    errors: parser.errors,
  };
}

class LineParser {
  readonly len: number;
  readonly defaultTs: number;
  readonly seriesCache = new Map<string, SeriesInfo | LineFail>();
  fieldKeys: string[] = [];
  /** Ref of each field of the current point; -1 = not resolved yet, -2 = not resolved and the key had escapes. */
  fieldRefs = new Int32Array(16);
  fieldVals = new Float64Array(16);
  readonly errors: LineError[] = [];
  lines = 0;
  accepted = 0;
  rejected = 0;
  samples = 0;
  stringsSkipped = 0;
  tooLong = 0;
  /** Position of the next backslash at or after the current line (len: none left); see point(). */
  nextBackslash = -1;
  /** Cursor state of the point being parsed. */
  lineNo = 1;
  lineStart = 0;
  eol = 0;
  end = 0;

  constructor(
    readonly text: string,
    readonly precision: Precision,
    now: number,
    readonly sep: string,
    readonly maxLineLength: number,
    readonly maxLines: number,
    readonly maxErrors: number,
    readonly builder: BatchBuilder,
  ) {
    this.len = text.length;
    const unit = UNIT_MS[precision];
    this.defaultTs = unit > 1 ? Math.floor(now / unit) * unit : now;
  }

  run(): void {
    const text = this.text;
    const len = this.len;
    let pos = 0;
    while (pos < len) {
      // Leading whitespace, blank lines, comments.
      let c = text.charCodeAt(pos);
      while (c === SPACE || c === TAB) c = text.charCodeAt(++pos);
      if (pos >= len) break;
      if (c === NL) {
        pos++;
        this.lineNo++;
        continue;
      }
      if (c === CR && (pos + 1 >= len || text.charCodeAt(pos + 1) === NL)) {
        pos++;
        continue;
      }
      let eol = text.indexOf('\n', pos);
      if (eol < 0) eol = len;
      if (c === HASH) {
        pos = eol + 1;
        this.lineNo++;
        continue;
      }
      if (++this.lines > this.maxLines) {
        throw limitExceeded(
          'too_many_lines',
          'maxLines',
          this.maxLines,
          `the body has more than ${this.maxLines} lines (limit maxLines); split it`,
        );
      }
      const startLine = this.lineNo;
      if (eol - pos > this.maxLineLength) {
        this.fail(
          startLine,
          'line_too_long',
          `line is longer than ${this.maxLineLength} characters (limit maxLineLength)`,
        );
      } else {
        this.lineStart = pos;
        this.eol = eol;
        this.end = eol > pos && text.charCodeAt(eol - 1) === CR ? eol - 1 : eol;
        try {
          this.point();
        } catch (err) {
          if (!(err instanceof LineFail)) throw err;
          this.fail(startLine, err.reason, err.message, err.field);
          if (this.eol !== eol && (err.reason === 'string_unterminated' || err.reason === 'line_too_long')) {
            // A string that never closed: resume after the point's first physical line, not after the string.
            this.eol = eol;
            this.lineNo = startLine;
          }
        }
        eol = this.eol;
      }
      pos = eol + 1;
      this.lineNo++;
    }
  }

  private fail(line: number, reason: string, message: string, field?: string): void {
    this.rejected++;
    if (reason === 'line_too_long') this.tooLong++;
    if (this.errors.length < this.maxErrors) {
      const e: LineError = { line, reason, message: `line ${line}: ${message}` };
      if (field !== undefined) e.field = field;
      this.errors.push(e);
    }
  }

  /** Parses the point at lineStart (ending at `end`) and adds it; throws LineFail. */
  private point(): void {
    const text = this.text;
    let end = this.end;
    let nFields = 0;
    let lineStrings = 0;
    // --- series section: up to the first unescaped space. Without a backslash before it (the usual case) the
    // native search finds it; the next backslash of the body is looked up once and reused line after line.
    let i = text.indexOf(' ', this.lineStart);
    if (i < 0 || i > end) i = end;
    let escaped = false;
    if (this.nextBackslash < this.lineStart) {
      const b = text.indexOf('\\', this.lineStart);
      this.nextBackslash = b < 0 ? this.len : b;
    }
    if (this.nextBackslash < i) {
      for (i = this.lineStart; i < end; i++) {
        const ch = text.charCodeAt(i);
        if (ch === SPACE) break;
        if (ch === BSLASH) {
          escaped = true;
          i++;
        }
      }
    }
    if (i >= end) throw new LineFail('missing_fields', 'missing field set (no space after the series)');
    const raw = text.slice(this.lineStart, i);
    let info = this.seriesCache.get(raw);
    if (info === undefined) {
      const parsed = parsedSeries.get(raw) ?? parseSeries(raw, escaped);
      if (parsed instanceof LineFail) info = parsed;
      else {
        if (parsedSeries.size >= PARSED_SERIES_MAX) parsedSeries.clear();
        parsedSeries.set(raw, parsed);
        info = {
          parsed,
          fieldRefs: new Map(),
          lastKeys: [],
          lastRefs: [],
        };
      }
      this.seriesCache.set(raw, info);
    }
    if (info instanceof LineFail) throw info;
    // --- field set.
    while (i < end && text.charCodeAt(i) === SPACE) i++;
    if (i >= end) throw new LineFail('missing_fields', 'missing field set');
    const lastKeys = info.lastKeys;
    for (;;) {
      if (nFields === this.fieldVals.length) this.growFields();
      // Fast path: the same key as the same field of this series' previous point.
      const pk = lastKeys[nFields];
      let key: string;
      let ch = 0;
      if (pk !== undefined && textAt(text, i, pk) && text.charCodeAt(i + pk.length) === EQ) {
        key = pk;
        i += pk.length;
        this.fieldRefs[nFields] = info.lastRefs[nFields];
      } else {
        const ks = i;
        let kEsc = false;
        for (; i < end; i++) {
          ch = text.charCodeAt(i);
          if (ch === EQ || ch === COMMA || ch === SPACE) break;
          if (ch === BSLASH) {
            kEsc = true;
            i++;
          }
        }
        if (i >= end || ch !== EQ) {
          const k = unescapeKey(text.slice(ks, Math.min(i, end)), kEsc);
          throw new LineFail('field_invalid', `field ${JSON.stringify(k)} has no "=value"`, k || undefined);
        }
        if (i === ks) throw new LineFail('field_key_empty', 'empty field key');
        key = kEsc ? unescapeKey(text.slice(ks, i), true) : text.slice(ks, i);
        this.fieldRefs[nFields] = kEsc ? -2 : -1;
      }
      i++; // '='
      if (i >= end)
        throw new LineFail('field_value_missing', `field ${JSON.stringify(key)} has no value`, key);
      const vs = i;
      ch = text.charCodeAt(i);
      if (ch === QUOTE) {
        i = this.skipString(i + 1, key);
        end = this.end;
        lineStrings++;
      } else {
        for (; i < end; i++) {
          ch = text.charCodeAt(i);
          if (ch === COMMA || ch === SPACE) break;
        }
        const v = parseFieldValue(text, vs, i);
        if (typeof v !== 'number') {
          throw new LineFail(
            'field_value_invalid',
            v === undefined
              ? `field ${JSON.stringify(key)} has an invalid value ${JSON.stringify(text.slice(vs, i))}`
              : `field ${JSON.stringify(key)}: ${v}`,
            key,
          );
        }
        this.fieldKeys[nFields] = key;
        this.fieldVals[nFields++] = v;
      }
      if (i >= end) break;
      ch = text.charCodeAt(i);
      if (ch === COMMA) {
        i++;
        continue;
      }
      if (ch === SPACE) break;
      throw new LineFail(
        'field_invalid',
        `unexpected ${JSON.stringify(text[i])} after field ${JSON.stringify(key)}`,
        key,
      );
    }
    // --- timestamp.
    while (i < end && text.charCodeAt(i) === SPACE) i++;
    let t = this.defaultTs;
    if (i < end) {
      const ts = i;
      while (i < end && text.charCodeAt(i) !== SPACE) i++;
      const te = i;
      while (i < end && text.charCodeAt(i) === SPACE) i++;
      if (i < end)
        throw new LineFail('timestamp_invalid', 'unexpected text after the timestamp', 'timestamp');
      t = parseTimestamp(text, ts, te, this.precision);
    }
    this.commit(info, nFields, t);
    this.stringsSkipped += lineStrings;
  }

  /** Skips a quoted string starting after its opening quote; returns the index after the closing quote. */
  private skipString(i: number, key: string): number {
    const text = this.text;
    for (;;) {
      if (i >= this.end) {
        // String fields may span physical lines (as InfluxDB 1.x allows): extend over the newline.
        if (this.eol < this.len) {
          if (this.eol - this.lineStart >= this.maxLineLength) {
            throw new LineFail(
              'line_too_long',
              `line is longer than ${this.maxLineLength} characters (limit maxLineLength)`,
            );
          }
          let next = text.indexOf('\n', this.eol + 1);
          if (next < 0) next = this.len;
          this.eol = next;
          this.end = next > 0 && text.charCodeAt(next - 1) === CR ? next - 1 : next;
          this.lineNo++;
          if (next - this.lineStart > this.maxLineLength) {
            throw new LineFail(
              'line_too_long',
              `line is longer than ${this.maxLineLength} characters (limit maxLineLength)`,
            );
          }
          continue;
        }
        throw new LineFail('string_unterminated', `string field ${JSON.stringify(key)} is not closed`, key);
      }
      const sc = text.charCodeAt(i);
      if (sc === BSLASH) i += 2;
      else if (sc === QUOTE) return i + 1;
      else i++;
    }
  }

  private growFields(): void {
    const n = this.fieldVals.length * 2;
    const v = new Float64Array(n);
    v.set(this.fieldVals);
    this.fieldVals = v;
    const r = new Int32Array(n);
    r.set(this.fieldRefs);
    this.fieldRefs = r;
  }

  /** Resolves (and validates) every field's series first, so a bad field rejects the whole line; then adds. */
  private commit(info: SeriesInfo, nFields: number, t: number): void {
    const refs = info.fieldRefs;
    const keys = this.fieldKeys;
    const fieldRefs = this.fieldRefs;
    let missing = 0;
    for (let f = 0; f < nFields; f++) {
      if (fieldRefs[f] >= 0) continue;
      const k = keys[f];
      const r = refs.get(k);
      if (r !== undefined) {
        if (fieldRefs[f] === -1) {
          info.lastKeys[f] = k;
          info.lastRefs[f] = r;
        }
        fieldRefs[f] = r;
        continue;
      }
      missing++;
      try {
        validateMetric(info.parsed.measurement + this.sep + k, 'metric');
      } catch (err) {
        throw fromError(err, k);
      }
    }
    const builder = this.builder;
    for (let f = 0; missing > 0 && f < nFields; f++) {
      if (fieldRefs[f] >= 0) continue;
      const k = keys[f];
      let r = refs.get(k);
      if (r === undefined) {
        const metric = info.parsed.measurement + this.sep + k;
        r = builder.refKeyed(fieldSeries(info.parsed, metric), metric + info.parsed.tagsKey);
        refs.set(k, r);
      }
      if (fieldRefs[f] === -1) {
        info.lastKeys[f] = k;
        info.lastRefs[f] = r;
      }
      fieldRefs[f] = r;
    }
    builder.ensureRoom(nFields);
    const vals = this.fieldVals;
    for (let f = 0; f < nFields; f++) builder.addRef(fieldRefs[f], t, vals[f]);
    this.samples += nFields;
    this.accepted++;
  }
}

const UNIT_MS: Record<Precision, number> = { ns: 1, us: 1, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function fromError(err: unknown, field?: string): LineFail {
  if (isTidemarkError(err)) return new LineFail(err.reason, err.message, field ?? err.field);
  throw err;
}

/** Removes line-protocol escapes from a measurement, tag key/value or field key. */
function unescapeKey(s: string, escaped: boolean): string {
  if (!escaped) return s;
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) !== BSLASH || i + 1 >= s.length) continue;
    const n = s.charCodeAt(i + 1);
    if (n === COMMA || n === SPACE || n === EQ || n === BSLASH) {
      out += s.slice(from, i);
      from = i + 1; // keep the escaped character
      i++;
    }
  }
  return out + s.slice(from);
}

/** Splits `s` at unescaped `ch` (0x2c or 0x3d). */
function splitUnescaped(s: string, ch: number): string[] {
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === BSLASH) i++;
    else if (c === ch) {
      parts.push(s.slice(from, i));
      from = i + 1;
    }
  }
  parts.push(s.slice(from));
  return parts;
}

/** Measurement and tags of a series section (the cold path: once per distinct raw text, see parsedSeries). */
function parseSeries(raw: string, escaped: boolean): ParsedSeries | LineFail {
  const parts = escaped ? splitUnescaped(raw, COMMA) : raw.split(',');
  const measurement = unescapeKey(parts[0], escaped);
  if (measurement === '') return new LineFail('measurement_missing', 'missing measurement');
  try {
    validateMetric(measurement, 'measurement');
  } catch (err) {
    return fromError(err);
  }
  const pairs: [string, string][] = [];
  for (let p = 1; p < parts.length; p++) {
    const kv = escaped ? splitUnescaped(parts[p], EQ) : parts[p].split('=');
    if (kv.length !== 2) {
      return new LineFail(
        'tag_invalid',
        kv.length < 2
          ? `tag ${JSON.stringify(unescapeKey(parts[p], escaped))} has no "=value"`
          : `tag ${JSON.stringify(unescapeKey(kv[0], escaped))} has an unescaped "=" in its value`,
      );
    }
    const k = unescapeKey(kv[0], escaped);
    if (k === '') return new LineFail('tag_name_empty', 'empty tag key');
    const v = unescapeKey(kv[1], escaped);
    if (v === '')
      return new LineFail('tag_value_empty', `tag ${JSON.stringify(k)} has an empty value`, `tags.${k}`);
    pairs.push([k, v]);
  }
  let tags: Record<string, string>;
  try {
    tags = validateTags(pairs, 'tags');
  } catch (err) {
    return fromError(err);
  }
  Object.freeze(tags);
  return { measurement, tags, tagsKey: tagsDedupSuffix(tags), fields: new Map() };
}

/** `text.startsWith(s, i)`, without the builtin's cost per call on a large body (3× this loop, measured). */
function textAt(text: string, i: number, s: string): boolean {
  const n = s.length;
  if (i + n > text.length) return false;
  for (let k = 0; k < n; k++) if (text.charCodeAt(i + k) !== s.charCodeAt(k)) return false;
  return true;
}

function isDigit(c: number): boolean {
  return c >= D0 && c <= D9;
}

/** Compares a digit run (no sign, leading zeros allowed) with a maximum given as a digit string. */
function digitsAtMost(s: string, a: number, b: number, max: string): boolean {
  while (a < b - 1 && s.charCodeAt(a) === D0) a++;
  const n = b - a;
  if (n !== max.length) return n < max.length;
  for (let i = 0; i < n; i++) {
    const d = s.charCodeAt(a + i) - max.charCodeAt(i);
    if (d !== 0) return d < 0;
  }
  return true;
}

/** Exact powers of ten (every 10^k for k <= 22 is a float64 exactly). */
const POW10 = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
  1e20, 1e21, 1e22,
];

/**
 * A field value at s[a, b): number | undefined (invalid syntax) | string (a specific problem).
 * float: -?(digits)(.digits)?([eE][+-]?digits)? or -?.digits...; integer: -?digits `i`; unsigned: digits `u`;
 * boolean: t T true True TRUE f F false False FALSE.
 */
function parseFieldValue(s: string, a: number, b: number): number | string | undefined {
  if (a >= b) return undefined;
  const c0 = s.charCodeAt(a);
  const last = s.charCodeAt(b - 1);
  if (c0 === 0x74 || c0 === 0x54 || c0 === 0x66 || c0 === 0x46) {
    switch (s.slice(a, b)) {
      case 't':
      case 'T':
      case 'true':
      case 'True':
      case 'TRUE':
        return 1;
      case 'f':
      case 'F':
      case 'false':
      case 'False':
      case 'FALSE':
        return 0;
      default:
        return undefined;
    }
  }
  if (last === 0x69 /* i */ || last === 0x75 /* u */) {
    const neg = c0 === MINUS;
    if (neg && last === 0x75) return 'an unsigned integer cannot be negative';
    const ds = neg ? a + 1 : a;
    const de = b - 1;
    if (ds >= de) return undefined;
    let m = 0;
    for (let i = ds; i < de; i++) {
      const d = s.charCodeAt(i) - D0;
      if (d < 0 || d > 9) return undefined;
      m = m * 10 + d;
    }
    // Up to 15 digits the accumulated value is exact (< 2^53): no slice and reparse.
    if (de - ds <= 15) return neg ? -m : m;
    const max = last === 0x75 ? UINT64_MAX : neg ? INT64_MIN_ABS : INT64_MAX;
    if (!digitsAtMost(s, ds, de, max)) {
      return `${last === 0x75 ? 'unsigned' : 'integer'} value is out of range`;
    }
    return Number(s.slice(a, de));
  }
  // Float: validate the shape (Number() alone would accept "", "0x10", "Infinity", " 1").
  let i = a;
  if (c0 === MINUS) i++;
  let digits = 0;
  let m = 0;
  for (; i < b; i++, digits++) {
    const c = s.charCodeAt(i);
    if (c < D0 || c > D9) break;
    m = m * 10 + (c - D0);
  }
  let frac = 0;
  if (i < b && s.charCodeAt(i) === DOT) {
    i++;
    for (; i < b; i++, frac++) {
      const c = s.charCodeAt(i);
      if (c < D0 || c > D9) break;
      m = m * 10 + (c - D0);
    }
    digits += frac;
  }
  if (digits === 0) return undefined;
  // Clinger's fast path: an exact integer mantissa (< 2^53) divided by an exact power of ten is correctly rounded.
  if (i === b && digits <= 15) {
    const v = frac === 0 ? m : m / POW10[frac];
    return c0 === MINUS ? -v : v;
  }
  if (i < b) {
    const e = s.charCodeAt(i);
    if (e !== 0x65 && e !== 0x45) return undefined;
    i++;
    if (i < b && (s.charCodeAt(i) === 0x2b || s.charCodeAt(i) === MINUS)) i++;
    if (i >= b) return undefined;
    while (i < b && isDigit(s.charCodeAt(i))) i++;
    if (i < b) return undefined;
  }
  const v = Number(s.slice(a, b));
  if (!Number.isFinite(v)) return 'float value is out of range';
  return v;
}

/** A timestamp in `precision` units at s[a, b) → ms (ns and us floor to ms). */
function parseTimestamp(s: string, a: number, b: number, precision: Precision): number {
  const neg = s.charCodeAt(a) === MINUS;
  const ds = neg ? a + 1 : a;
  if (ds >= b) throw new LineFail('timestamp_invalid', 'invalid timestamp', 'timestamp');
  // One pass: every character a digit, and the value of the leading ones (the ms part).
  const drop = precision === 'ns' ? 6 : precision === 'us' ? 3 : 0;
  const keep = b - drop;
  let lead = 0;
  for (let i = ds; i < b; i++) {
    const d = s.charCodeAt(i) - D0;
    if (d < 0 || d > 9) {
      throw new LineFail(
        'timestamp_invalid',
        `invalid timestamp ${JSON.stringify(s.slice(a, b))}`,
        'timestamp',
      );
    }
    if (i < keep) lead = lead * 10 + d;
  }
  // 19 digits and more may exceed int64 (and leading zeros may hide a short one).
  if (b - ds >= 19 && !digitsAtMost(s, ds, b, neg ? INT64_MIN_ABS : INT64_MAX)) {
    throw new LineFail(
      'timestamp_invalid',
      `timestamp ${s.slice(a, b)} is out of the int64 range`,
      'timestamp',
    );
  }
  let ms: number;
  if (neg) ms = -1;
  else {
    // At most 19 significant digits: the leading (19 - drop) stay below 2^53, so the sum is exact.
    ms = lead * UNIT_MS[precision];
  }
  if (!(ms >= MIN_TIMESTAMP_MS && ms <= MAX_TIMESTAMP_MS)) {
    throw new LineFail(
      'timestamp_out_of_range',
      `timestamp ${s.slice(a, b)} (${precision}) is outside 1970-01-01 .. 9999-12-31`,
      'timestamp',
    );
  }
  return ms;
}

/**
 * The HTTP answer to a parsed body, InfluxDB 1.x style: 204 when every line was stored; otherwise 400
 * with `partial write: <first error> dropped=<rejected>` (the valid lines are still written) and the
 * per-line errors (first maxErrors).
 */
export function lineProtocolResponse(result: LineProtocolResult): {
  status: 204 | 400;
  body?: { error: string; errors: LineError[]; accepted: number; rejected: number };
} {
  if (result.rejected === 0) return { status: 204 };
  const first = result.errors[0]?.message ?? 'invalid line';
  const prefix = result.accepted > 0 ? 'partial write: ' : '';
  return {
    status: 400,
    body: {
      error: `${prefix}${first} dropped=${result.rejected}`,
      errors: result.errors,
      accepted: result.accepted,
      rejected: result.rejected,
    },
  };
}
