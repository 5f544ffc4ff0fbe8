/**
 * One chaos run: Toxiproxy + a cluster of real node processes, workloads, a seeded schedule of nemeses,
 * a full heal, then the checkers. Writes into `dir`: history.json, report.json, summary.txt, logs/ (node
 * output) and, on a linearizability violation, linearizability.html (Porcupine's view).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Rng } from '../../src/util/random.js';
import {
  type Availability,
  availability,
  checkFinal,
  type FaultWindow,
  type FinalCheck,
  type FinalSeries,
  historyForLinearizability,
} from './checkers.js';
import { ChaosCluster } from './cluster.js';
import { CHAOS_METRIC, type History, HistoryRecorder } from './history.js';
import { type Ctx, NEMESES, nemesisByName, schedule } from './nemesis.js';
import { checkLinearizable, type LinearizabilityResult } from './porcupine.js';
import { ToxiproxyServer } from './toxiproxy.js';
import { Workload } from './workload.js';

export interface RunOptions {
  mode: 'smoke' | 'long';
  seed: number;
  /** Long mode: total fault schedule length (ms). */
  durationMs: number;
  nodes: number;
  shards: number;
  /** Record and check reads (linearizability); off: writes only. */
  reads: boolean;
  dir: string;
  /** Only these nemeses (smoke mode); default all supported. */
  only?: string[];
  /** Extra `tidemark start` flags. */
  nodeFlags?: string[];
  /** Time budget of the linearizability check (default 60 s). */
  checkTimeoutMs?: number;
  log?: (msg: string) => void;
}

export interface RunReport {
  ok: boolean;
  seed: number;
  mode: string;
  nodes: number;
  shards: number;
  startedAt: string;
  wallMs: number;
  replay: string;
  operations: { writes: number; ok: number; failed: number; unknown: number; reads: number; readsOk: number };
  faults: (FaultWindow & { error?: string })[];
  skipped: { nemesis: string; why: string }[];
  /** Final-state checks, one per node (each node's own linearizable read of everything). */
  final: Record<string, Omit<FinalCheck, 'violations'> & { violations: FinalCheck['violations'] }>;
  linearizability: LinearizabilityResult | { result: 'Skipped'; why: string };
  availability: Availability[];
  harnessErrors: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function replayCommand(
  o: Pick<RunOptions, 'mode' | 'seed' | 'durationMs' | 'nodes' | 'reads'>,
): string {
  const d = o.mode === 'long' ? ` --duration ${Math.round(o.durationMs / 1000)}s` : '';
  return `npm run chaos -- --mode ${o.mode} --seed ${o.seed}${d} --nodes ${o.nodes}${o.reads ? '' : ' --no-reads'}`;
}

/** Reads every chaos series from one node (directly, no proxy), retrying until `deadline`. */
async function finalRead(
  cluster: ChaosCluster,
  id: string,
  baseMs: number,
  deadline: number,
): Promise<FinalSeries[]> {
  for (;;) {
    try {
      const c = await cluster.directClient(id);
      const out: FinalSeries[] = [];
      for await (const s of c.query(
        { metric: CHAOS_METRIC, start: baseMs, end: baseMs + 1_000_000 },
        { deadlineMs: 10_000 },
      )) {
        const samples: [number, number][] = s.timestamps.map((t, j) => [t, s.values[j]!]);
        out.push({ series: s.tags.s ?? '', samples });
      }
      return out;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

function fingerprint(f: FinalSeries[]): string {
  return JSON.stringify([...f].sort((a, b) => (a.series < b.series ? -1 : 1)));
}

export async function runChaos(o: RunOptions): Promise<RunReport> {
  const log = o.log ?? ((m: string) => console.log(`[chaos] ${m}`));
  mkdirSync(o.dir, { recursive: true });
  const t0 = performance.now();
  const nowUs = () => Math.round((performance.now() - t0) * 1000);
  const rng = new Rng(o.seed);
  const harnessErrors: string[] = [];
  const faults: RunReport['faults'] = [];
  const skipped: RunReport['skipped'] = [];
  const recorder = new HistoryRecorder(nowUs);
  const toxi = await ToxiproxyServer.start(o.seed);
  const cluster = new ChaosCluster(toxi.client, {
    nodes: o.nodes,
    shards: o.shards,
    dir: o.dir,
    ...(o.nodeFlags ? { flags: o.nodeFlags } : {}),
    log,
  });
  let workload: Workload | undefined;
  const report: RunReport = {
    ok: false,
    seed: o.seed,
    mode: o.mode,
    nodes: o.nodes,
    shards: o.shards,
    startedAt: new Date().toISOString(),
    wallMs: 0,
    replay: replayCommand(o),
    operations: { writes: 0, ok: 0, failed: 0, unknown: 0, reads: 0, readsOk: 0 },
    faults,
    skipped,
    final: {},
    linearizability: { result: 'Skipped', why: 'not run' },
    availability: [],
    harnessErrors,
  };
  try {
    await cluster.init();
    await cluster.startAll();
    log(`cluster of ${o.nodes} up; waiting for a leader of each of ${o.shards} shards`);
    const leadersBy = Date.now() + 60_000;
    while ((await cluster.leaders()).size < o.shards) {
      if (Date.now() > leadersBy) throw new Error('not every shard elected a leader within 60 s');
      await sleep(200);
    }
    const baseMs = Date.now() - 60_000;
    workload = new Workload(
      {
        endpoints: cluster.clientEndpoints(),
        shards: o.shards,
        // Two writers per shard (each stays on its shard), staggered by their own latencies.
        writers: 2 * o.shards,
        readers: o.reads ? 2 : 0,
        seriesWrites: 20,
        opTimeoutMs: 2000,
        sdkRetries: true,
        writePauseMs: 40,
        readPauseMs: 40,
        baseMs,
      },
      recorder,
      rng.fork(),
    );
    await workload.start();
    await sleep(2000);

    const all = o.only === undefined ? NEMESES : o.only.map(nemesisByName);
    for (const n of all)
      if (n.unsupported !== undefined) skipped.push({ nemesis: n.name, why: n.unsupported });
    const steps = schedule(o.mode, rng.fork(), o.durationMs).filter((s) =>
      all.some((n) => n.name === s.nemesis),
    );
    const ctx: Ctx = { cluster, rng: rng.fork(), log };
    for (const [i, step] of steps.entries()) {
      const nemesis = nemesisByName(step.nemesis);
      const window: RunReport['faults'][number] = {
        name: nemesis.name,
        detail: '',
        start: nowUs(),
        healed: null,
      };
      faults.push(window);
      try {
        const fault = await nemesis.start(ctx);
        // The fault is in effect from here (a kill or a partition is complete when start() resolves).
        if (fault.fromInvoke !== true) window.start = nowUs();
        window.detail = fault.detail;
        if (fault.shards !== undefined) window.shards = fault.shards;
        log(`[${i + 1}/${steps.length}] ${nemesis.name}: ${fault.detail}`);
        await sleep(step.faultMs);
        await fault.heal();
        window.healed = nowUs();
      } catch (err) {
        window.error = err instanceof Error ? err.message : String(err);
        harnessErrors.push(`${nemesis.name}: ${window.error}`);
        log(`nemesis ${nemesis.name} failed: ${window.error}`);
        await healEverything(cluster, toxi).catch((e) => harnessErrors.push(`heal: ${String(e)}`));
        window.healed = nowUs();
      }
      await sleep(step.quietMs);
    }
    await healEverything(cluster, toxi);
    await sleep(1000);
    await workload.stop();
    workload = undefined;
    log('faults done; workload stopped; checking');

    // Wait until every node reads the same final state (replicas catch up after the heal), then check each.
    const until = Date.now() + 30_000;
    let finals = new Map<string, FinalSeries[]>();
    for (;;) {
      finals = new Map(
        await Promise.all(
          cluster.ids.map(async (id) => [id, await finalRead(cluster, id, baseMs, until)] as const),
        ),
      );
      const prints = new Set([...finals.values()].map(fingerprint));
      if (prints.size === 1 || Date.now() > until) break;
      await sleep(500);
    }
    const history = recorder.history();
    summarizeOps(history, report);
    for (const [id, f] of finals) report.final[id] = checkFinal(history, f);
    report.availability = availability(history, faults, o.shards);
    writeFileSync(join(o.dir, 'history.json'), JSON.stringify(history));
    // Narrowed with a final state that every node agrees on (else the full history, unnarrowed).
    const converged = new Set([...finals.values()].map(fingerprint)).size === 1;
    const forCheck = converged ? historyForLinearizability(history, [...finals.values()][0]!) : history;
    const checkPath = join(o.dir, 'history-linearizability.json');
    writeFileSync(checkPath, JSON.stringify(forCheck));
    report.linearizability = o.reads
      ? await checkLinearizable(checkPath, join(o.dir, 'linearizability.html'), o.checkTimeoutMs ?? 60_000)
      : { result: 'Skipped', why: '--no-reads' };
    report.ok =
      harnessErrors.length === 0 &&
      Object.values(report.final).every((f) => f.ok) &&
      (report.linearizability.result === 'Ok' || report.linearizability.result === 'Skipped');
  } catch (err) {
    harnessErrors.push(err instanceof Error ? (err.stack ?? err.message) : String(err));
  } finally {
    await workload?.stop().catch(() => undefined);
    await cluster.close().catch(() => undefined);
    await toxi.stop();
    report.wallMs = Math.round(performance.now() - t0);
    writeFileSync(join(o.dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(o.dir, 'summary.txt'), summary(report, o.dir));
  }
  return report;
}

/** Removes every toxic, re-enables every proxy, resumes paused nodes and restarts dead ones. */
async function healEverything(cluster: ChaosCluster, toxi: ToxiproxyServer): Promise<void> {
  await toxi.client.reset();
  for (const id of cluster.ids) cluster.signal(id, 'SIGCONT');
  for (const id of cluster.ids) if (!cluster.alive(id)) cluster.start(id);
  await Promise.all(cluster.ids.map((id) => cluster.waitReady(id)));
}

function summarizeOps(h: History, r: RunReport): void {
  for (const op of h.ops) {
    if (op.type === 'write') {
      r.operations.writes++;
      r.operations[op.outcome]++;
    } else {
      r.operations.reads++;
      if (op.outcome === 'ok') r.operations.readsOk++;
    }
  }
}

const fmt = (v: number | null) => (v === null ? '—' : `${v} ms`);

export function summary(r: RunReport, dir: string): string {
  const lines: string[] = [];
  lines.push(
    `chaos ${r.mode}: ${r.ok ? 'PASS' : 'FAIL'}  seed ${r.seed}  ${r.nodes} nodes  ${r.shards} shards  ${Math.round(r.wallMs / 1000)} s`,
  );
  const op = r.operations;
  lines.push(
    `writes ${op.writes} (ok ${op.ok}, failed ${op.failed}, unknown ${op.unknown}); reads ${op.reads} (ok ${op.readsOk})`,
  );
  for (const [id, f] of Object.entries(r.final)) {
    lines.push(
      `node ${id}: acknowledged ${f.acknowledged}, present ${f.present}, lost ${f.lost}, phantom ${f.phantoms}, duplicated ${f.duplicates}; unknown present ${f.unknownPresent} / absent ${f.unknownAbsent}`,
    );
    for (const v of f.violations.slice(0, 5)) lines.push(`  ${JSON.stringify(v)}`);
  }
  const lin = r.linearizability;
  lines.push(
    'illegal' in lin
      ? `linearizability: ${lin.result} (${lin.series} series, ${lin.operations} ops${lin.illegal.length ? `; illegal: ${lin.illegal.slice(0, 5).join(', ')}` : ''}${lin.unknown.length ? `; timed out: ${lin.unknown.length}` : ''})${lin.html ? ` view: ${lin.html}` : ''}`
      : `linearizability: skipped (${lin.why})`,
  );
  lines.push(
    'faults (gap = longest time in the fault without an ok write to a (target) shard; recovery = heal → first later write ok; failover = fault start → write to the target shard ok):',
  );
  for (const a of r.availability) {
    lines.push(
      `  ${a.name.padEnd(24)} ${String(a.durationMs).padStart(6)} ms  gap ${fmt(a.longestGapMs)}, recovery ${fmt(a.recoveryMs)}, worst shard ${fmt(a.worstShardRecoveryMs)}${a.failoverMs !== null || a.name.includes('leader') ? `, failover ${fmt(a.failoverMs)}` : ''}, ok during ${a.okDuringFault}  (${a.detail})`,
    );
  }
  for (const s of r.skipped) lines.push(`skipped ${s.nemesis}: ${s.why}`);
  for (const e of r.harnessErrors) lines.push(`harness error: ${e}`);
  lines.push(`run folder: ${dir}`);
  if (!r.ok) lines.push(`replay: ${r.replay}`);
  return `${lines.join('\n')}\n`;
}
