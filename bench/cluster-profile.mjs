/**
 * CPU-profiling preload for the cluster benchmark's node processes (docs/benchmarks.md "Cluster"):
 *
 *   BENCH_PROFILE_DIR=/tmp/prof NODE_OPTIONS=--import=./bench/cluster-profile.mjs npm run bench:cluster
 *
 * In a `tidemark start` process it profiles while `$BENCH_PROFILE_DIR/on` exists (the benchmark writes it,
 * holding the phase name, for each timed phase) and writes `<phase>-<node>-<pid>.cpuprofile` there when the
 * file goes. `--cpu-prof` cannot be used: the benchmark SIGKILLs its nodes, so their profiles would never
 * be written. Other processes are left alone.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const dir = process.env.BENCH_PROFILE_DIR;
if (dir && process.argv.includes('start')) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  const node = (process.argv.find((a) => a.startsWith('--node-id=')) ?? '--node-id=node').slice(10);
  let phase = null;
  setInterval(() => {
    const on = existsSync(`${dir}/on`);
    if (on && phase === null) {
      phase = readFileSync(`${dir}/on`, 'utf8').trim() || 'phase';
      session.post('Profiler.start');
    } else if (!on && phase !== null) {
      const name = `${dir}/${phase}-${node}-${process.pid}.cpuprofile`;
      phase = null;
      session.post('Profiler.stop', (err, res) => {
        if (!err) writeFileSync(name, JSON.stringify(res.profile));
      });
    }
  }, 100).unref();
}
