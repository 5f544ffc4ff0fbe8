/**
 * Kafka ingestion config: validated once, at startup, into a normalized object; every error names the
 * field (dotted, under `prefix`) so a bad config file points at its own line.
 */
import { invalidArgument } from '../../errors/index.js';
import type { Precision } from '../line-protocol.js';

/**
 * Record formats a topic may carry. `auto` detects each record's format (see detectFormat in
 * formats.ts): for topics several kinds of producers share.
 */
export const KAFKA_FORMATS = ['influx', 'opentsdb', 'protobuf', 'auto'] as const;
export type KafkaFormat = (typeof KAFKA_FORMATS)[number];

export interface KafkaBatchLimits {
  /** Flush after this many records (default 10,000). */
  maxRecords: number;
  /** Flush once the batch holds this many samples (default 50,000; a single record may exceed it). */
  maxSamples: number;
  /** Flush once the records' value bytes reach this (default 4 MiB). */
  maxBytes: number;
  /** Flush at most this long after the batch's first record, even if the partition keeps trickling (default 50). */
  lingerMs: number;
}

export interface KafkaIngestConfig {
  brokers: string[];
  topic: string;
  format: KafkaFormat;
  /** Topic for records that cannot be decoded; null drops them (still counted and logged). */
  deadLetterTopic: string | null;
  clientId: string;
  batch: KafkaBatchLimits;
  /** Longest a fetch waits on the broker for new data (default 500 ms; also bounds how long stop takes). */
  fetchMaxWaitMs: number;
  /** Most bytes one fetch returns for the partition (default 8 MiB). */
  fetchMaxBytes: number;
  /** Proposals awaiting commit at once (default 2): the backpressure bound. */
  maxInFlight: number;
  /** Line protocol: timestamp unit (default ns, as Telegraf) and measurement/field separator (default `_`). */
  precision: Precision;
  separator: string;
  /** Consumer group to which applied offsets are committed, for monitoring only (null: none). */
  monitorGroup: string | null;
}

export type KafkaIngestConfigInput = {
  brokers: string[] | string;
  topic: string;
  format: KafkaFormat;
  deadLetterTopic?: string | null;
  clientId?: string;
  batch?: Partial<KafkaBatchLimits>;
  fetchMaxWaitMs?: number;
  fetchMaxBytes?: number;
  maxInFlight?: number;
  precision?: Precision;
  separator?: string;
  monitorGroup?: string | null;
};

const PRECISIONS: readonly Precision[] = ['ns', 'us', 'ms', 's', 'm', 'h'];
// Kafka's own topic name rule (Topic.java): at most 249 of [a-zA-Z0-9._-].
const TOPIC_RE = /^[a-zA-Z0-9._-]{1,249}$/;
const BROKER_RE = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+):([0-9]{1,5})$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function int(v: unknown, field: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidArgument(
      'config_invalid',
      field,
      `${field} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

function topicName(v: unknown, field: string): string {
  if (typeof v !== 'string' || !TOPIC_RE.test(v) || v === '.' || v === '..') {
    throw invalidArgument(
      'config_invalid',
      field,
      `${field} must be a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -), got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

function optionalString(v: unknown, field: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v === '') {
    throw invalidArgument('config_invalid', field, `${field} must be a non-empty string or null`);
  }
  return v;
}

/** Validates a raw config object (e.g. the `kafka` section of the node config). */
export function parseKafkaConfig(input: unknown, prefix = 'kafka'): KafkaIngestConfig {
  const f = (name: string) => (prefix === '' ? name : `${prefix}.${name}`);
  if (!isRecord(input)) throw invalidArgument('config_invalid', prefix, `${prefix} must be an object`);
  const known = new Set([
    'brokers',
    'topic',
    'format',
    'deadLetterTopic',
    'clientId',
    'batch',
    'fetchMaxWaitMs',
    'fetchMaxBytes',
    'maxInFlight',
    'precision',
    'separator',
    'monitorGroup',
  ]);
  for (const k of Object.keys(input)) {
    if (!known.has(k)) {
      throw invalidArgument(
        'config_invalid',
        f(k),
        `${f(k)} is not a Kafka setting (known: ${[...known].join(', ')})`,
      );
    }
  }

  const rawBrokers = typeof input.brokers === 'string' ? input.brokers.split(',') : input.brokers;
  if (!Array.isArray(rawBrokers) || rawBrokers.length === 0) {
    throw invalidArgument(
      'config_invalid',
      f('brokers'),
      `${f('brokers')} must list at least one broker as host:port (an array or a comma-separated string)`,
    );
  }
  const brokers = rawBrokers.map((b, i) => {
    const s = typeof b === 'string' ? b.trim() : b;
    const m = typeof s === 'string' ? BROKER_RE.exec(s) : null;
    if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      throw invalidArgument(
        'config_invalid',
        `${f('brokers')}[${i}]`,
        `${f('brokers')}[${i}] must be host:port, got ${JSON.stringify(b)}`,
      );
    }
    return s as string;
  });

  const topic = topicName(input.topic, f('topic'));
  const format = input.format;
  if (typeof format !== 'string' || !(KAFKA_FORMATS as readonly string[]).includes(format)) {
    throw invalidArgument(
      'config_invalid',
      f('format'),
      `${f('format')} must be one of ${KAFKA_FORMATS.join(', ')}, got ${JSON.stringify(format)}`,
    );
  }
  const deadLetterTopic =
    input.deadLetterTopic === undefined || input.deadLetterTopic === null
      ? null
      : topicName(input.deadLetterTopic, f('deadLetterTopic'));
  if (deadLetterTopic === topic) {
    throw invalidArgument(
      'config_invalid',
      f('deadLetterTopic'),
      `${f('deadLetterTopic')} must differ from ${f('topic')} (bad records would be read again)`,
    );
  }
  const clientId = optionalString(input.clientId, f('clientId')) ?? 'tidemark';
  const rawBatch = input.batch ?? {};
  if (!isRecord(rawBatch))
    throw invalidArgument('config_invalid', f('batch'), `${f('batch')} must be an object`);
  for (const k of Object.keys(rawBatch)) {
    if (!['maxRecords', 'maxSamples', 'maxBytes', 'lingerMs'].includes(k)) {
      throw invalidArgument(
        'config_invalid',
        `${f('batch')}.${k}`,
        `${f('batch')}.${k} is not a batch setting (known: maxRecords, maxSamples, maxBytes, lingerMs)`,
      );
    }
  }
  const batch: KafkaBatchLimits = {
    maxRecords: int(rawBatch.maxRecords, `${f('batch')}.maxRecords`, 10_000, 1, 1_000_000),
    maxSamples: int(rawBatch.maxSamples, `${f('batch')}.maxSamples`, 50_000, 1, 1_000_000),
    maxBytes: int(rawBatch.maxBytes, `${f('batch')}.maxBytes`, 4 << 20, 1024, 256 << 20),
    lingerMs: int(rawBatch.lingerMs, `${f('batch')}.lingerMs`, 50, 0, 60_000),
  };
  const precision = input.precision ?? 'ns';
  if (typeof precision !== 'string' || !PRECISIONS.includes(precision as Precision)) {
    throw invalidArgument(
      'config_invalid',
      f('precision'),
      `${f('precision')} must be one of ${PRECISIONS.join(', ')}, got ${JSON.stringify(precision)}`,
    );
  }
  const separator = input.separator ?? '_';
  if (typeof separator !== 'string' || separator.length > 8) {
    throw invalidArgument(
      'config_invalid',
      f('separator'),
      `${f('separator')} must be a string of at most 8 characters`,
    );
  }
  return {
    brokers,
    topic,
    format: format as KafkaFormat,
    deadLetterTopic,
    clientId,
    batch,
    fetchMaxWaitMs: int(input.fetchMaxWaitMs, f('fetchMaxWaitMs'), 500, 1, 30_000),
    fetchMaxBytes: int(input.fetchMaxBytes, f('fetchMaxBytes'), 8 << 20, 1024, 256 << 20),
    maxInFlight: int(input.maxInFlight, f('maxInFlight'), 2, 1, 64),
    precision: precision as Precision,
    separator,
    monitorGroup: optionalString(input.monitorGroup, f('monitorGroup')),
  };
}
