/**
 * `npm run chaos -- --mode smoke|long --seed S --duration D [--nodes 3|5] [--no-reads] [--only a,b]
 *   [--kafka | --no-kafka]`
 * Runs the chaos suite (docs/chaos.md); exits 1 on any violation, printing the seed and the replay command.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runChaos, summary } from './lib/run.js';

function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (m === null) throw new Error(`--duration: ${s} is not a duration (e.g. 90s, 30m)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * unit;
}

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'smoke' },
    seed: { type: 'string' },
    duration: { type: 'string', default: '5m' },
    nodes: { type: 'string', default: '3' },
    shards: { type: 'string', default: '4' },
    'no-reads': { type: 'boolean', default: false },
    kafka: { type: 'boolean' },
    'no-kafka': { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
  },
});
const mode = values.mode;
if (mode !== 'smoke' && mode !== 'long') throw new Error('--mode: smoke or long');
const seed =
  values.seed === undefined
    ? Number(process.env.TIDEMARK_SEED ?? Date.now() % 1_000_000)
    : Number(values.seed);
const nodes = Number(values.nodes);
if (!Number.isInteger(nodes) || nodes < 3 || nodes > 7) throw new Error('--nodes: 3..7');
const dir =
  values.out ?? join('chaos-tests', 'runs', `${new Date().toISOString().replace(/[:.]/g, '-')}-${seed}`);
const report = await runChaos({
  mode,
  seed,
  durationMs: parseDuration(values.duration),
  nodes,
  shards: Number(values.shards),
  reads: !values['no-reads'],
  dir,
  // Kafka-ingest workload: --kafka forces it, --no-kafka turns it off; long mode runs it when the broker's
  // jars can be fetched.
  kafka: values['no-kafka'] ? 'off' : values.kafka ? 'on' : mode === 'long' ? 'auto' : 'off',
  // A long history has many more series for Porcupine.
  checkTimeoutMs: mode === 'long' ? 300_000 : 60_000,
  ...(values.only ? { only: values.only.split(',') } : {}),
});
console.log(summary(report, dir));
if (!report.ok) {
  console.error(`chaos: FAILED with seed ${seed}; replay with: ${report.replay}`);
  process.exit(1);
}
process.exit(0);
