/** The limits.* settings: flags, variables, file keys, validation, defaults (src/cluster/config.ts). */
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, loadConfig, SETTINGS } from '../../src/cluster/config.js';
import type { TidemarkError } from '../../src/errors/index.js';
import { DEFAULT_LIMIT_SETTINGS, LIMIT_NAMES, limitSettingsOf } from '../../src/limits/index.js';

const NEW = [
  ['maxSamplesPerRequest', '--max-samples-per-request', 'TIDEMARK_MAX_SAMPLES_PER_REQUEST'],
  ['maxSeriesPerRequest', '--max-series-per-request', 'TIDEMARK_MAX_SERIES_PER_REQUEST'],
  ['maxLineBytes', '--max-line-bytes', 'TIDEMARK_MAX_LINE_BYTES'],
  ['maxNewSeriesPerMinute', '--max-new-series-per-minute', 'TIDEMARK_MAX_NEW_SERIES_PER_MINUTE'],
  ['maxSeriesPerMetric', '--max-series-per-metric', 'TIDEMARK_MAX_SERIES_PER_METRIC'],
  [
    'maxConcurrentQueriesPerClient',
    '--max-concurrent-queries-per-client',
    'TIDEMARK_MAX_CONCURRENT_QUERIES_PER_CLIENT',
  ],
] as const;

describe('limits settings', () => {
  it('every limit is a setting with a flag and a variable, and a metric label', () => {
    for (const [name, flag, env] of NEW) {
      expect(SETTINGS.find((s) => s.key === `limits.${name}`)).toMatchObject({ flag: flag.slice(2), env });
    }
    expect([...LIMIT_NAMES].sort()).toEqual([...NEW.map((n) => n[0]), 'maxRequestBytes'].sort());
  });

  it('defaults come from the one defaults object', () => {
    const c = loadConfig();
    expect(limitSettingsOf(c)).toEqual(DEFAULT_LIMIT_SETTINGS);
    expect(DEFAULT_LIMIT_SETTINGS.maxConcurrentQueriesPerClient).toBe(
      DEFAULT_CONFIG.limits.maxConcurrentQueriesPerClient,
    );
  });

  it('reads flags, variables and the config file (flags win)', () => {
    const c = loadConfig({
      argv: ['--max-line-bytes', '1000', '--max-series-per-metric', '50000'],
      env: { TIDEMARK_MAX_LINE_BYTES: '2000', TIDEMARK_MAX_NEW_SERIES_PER_MINUTE: '600' },
      file: 'f.json',
      readFile: () =>
        JSON.stringify({ limits: { maxConcurrentQueriesPerClient: 3, maxSamplesPerRequest: 10 } }),
    });
    expect(limitSettingsOf(c)).toMatchObject({
      maxLineBytes: 1000,
      maxSeriesPerMetric: 50_000,
      maxNewSeriesPerMinute: 600,
      maxConcurrentQueriesPerClient: 3,
      maxSamplesPerRequest: 10,
    });
  });

  it('rejects out-of-range values naming the setting and the source', () => {
    const bad = (argv: string[]): TidemarkError => {
      try {
        loadConfig({ argv });
      } catch (e) {
        return e as TidemarkError;
      }
      throw new Error('expected an error');
    };
    let e = bad(['--max-line-bytes', '10']);
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.details).toMatchObject({ field: 'limits.maxLineBytes', source: '--max-line-bytes' });
    e = bad(['--max-samples-per-request', '0']);
    expect(e.details.field).toBe('limits.maxSamplesPerRequest');
    e = bad(['--max-new-series-per-minute', '-1']);
    expect(e.details.field).toBe('limits.maxNewSeriesPerMinute');
    e = bad(['--max-concurrent-queries-per-client', 'many']);
    expect(e.details.field).toBe('limits.maxConcurrentQueriesPerClient');
  });
});
