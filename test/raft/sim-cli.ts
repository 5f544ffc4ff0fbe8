/**
 * Runs the deterministic Raft simulation over a range of seeds.
 *
 *   npm run sim -- --seeds N [--start S] [--steps K] [--trace]
 *
 * A failing seed is printed with the command that replays it. The last line of output is a JSON summary:
 * {"bench":"raft-sim","seeds":N,"steps":<total steps>,"violations":<count>}
 */
import { DEFAULT_STEPS, replayCommand, runSeed } from './sim.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 0) {
    console.error(`--${name} must be a non-negative integer`);
    process.exit(2);
  }
  return v;
}

const seeds = arg('seeds', 100);
const start = arg('start', 1);
const steps = arg('steps', DEFAULT_STEPS);
const trace = process.argv.includes('--trace');

const totals: Record<string, number> = {};
let totalSteps = 0;
let violations = 0;
const t0 = Date.now();
for (let seed = start; seed < start + seeds; seed++) {
  const res = runSeed(seed, { steps, trace: trace ? (l) => console.log(`  [${seed}] ${l}`) : undefined });
  totalSteps += res.steps;
  for (const [k, v] of Object.entries(res.stats)) totals[k] = (totals[k] ?? 0) + v;
  if (res.violations.length > 0) {
    violations += res.violations.length;
    for (const v of res.violations) console.log(`seed ${seed}: VIOLATION ${v}`);
    console.log(`  replay: ${replayCommand(seed)}${steps !== DEFAULT_STEPS ? ` --steps ${steps}` : ''}`);
  }
}
const secs = (Date.now() - t0) / 1000;
console.log(`# ${seeds} seeds, ${totalSteps} steps in ${secs.toFixed(1)}s`);
console.log(`# totals ${JSON.stringify(totals)}`);
console.log(JSON.stringify({ bench: 'raft-sim', seeds, steps: totalSteps, violations }));
process.exitCode = violations > 0 ? 1 : 0;
