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
import {
  CHAOS_KAFKA_METRIC,
  ChaosKafka,
  EndOffsets,
  KafkaWorkload,
  kafkaAvailable,
  LagMonitor,
} from './kafka.js';
import {
  type CatchUpResult,
  catchUp,
  type KafkaFaultAvailability,
  kafkaAvailability,
} from './kafka-checkers.js';
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
  /**
   * The Kafka-ingest workload (a real broker, nodes consuming its topic, producers): 'on' (a broker that
   * cannot be started is a harness error), 'auto' (on when the broker's jars can be fetched, else skipped
   * with a note), 'off' (default).
   */
  kafka?: 'on' | 'auto' | 'off';
  /** Kafka producer loops (default 2), pause between a producer's sends (default 50 ms), catch-up bound. */
  kafkaProducers?: number;
  kafkaPauseMs?: number;
  kafkaCatchUpTimeoutMs?: number;
  log?: (msg: string) => void;
}

/** The Kafka-ingest workload's part of the report (docs/chaos.md). */
export interface KafkaReport {
  ok: boolean;
  topic: string;
  partitions: number;
  producers: number;
  /** Sends (one record per partition each) and the samples in them by outcome. */
  operations: {
    sends: number;
    sendErrors: number;
    samples: number;
    ok: number;
    failed: number;
    unknown: number;
  };
  /** The topic's end offsets once the producers stopped. */
  endOffsets: number[];
  /** After the final heal: per partition, from the producers' stop until its shard applied the end offset. */
  catchUp: CatchUpResult;
  /** Final-state checks of the Kafka samples, one per node (checkers.ts's checkFinal on the Kafka history). */
  final: Record<string, FinalCheck>;
  /** Per fault: lag during it and catch-up after its heal. */
  availability: KafkaFaultAvailability[];
  /** Producer send errors (first few) and harness notes. */
  errors: string[];
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
  /** Present when the Kafka-ingest workload ran. */
  kafka?: KafkaReport;
  harnessErrors: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function replayCommand(
  o: Pick<RunOptions, 'mode' | 'seed' | 'durationMs' | 'nodes' | 'reads' | 'kafka' | 'only'>,
): string {
  const d = o.mode === 'long' ? ` --duration ${Math.round(o.durationMs / 1000)}s` : '';
  const k = o.kafka === 'on' ? ' --kafka' : o.kafka === 'off' && o.mode === 'long' ? ' --no-kafka' : '';
  const only = o.only === undefined ? '' : ` --only ${o.only.join(',')}`;
  return `npm run chaos -- --mode ${o.mode} --seed ${o.seed}${d} --nodes ${o.nodes}${o.reads ? '' : ' --no-reads'}${k}${only}`;
}

/** Reads every series of `metric` from one node (directly, no proxy), retrying until `deadline`. */
async function finalRead(
  cluster: ChaosCluster,
  id: string,
  baseMs: number,
  deadline: number,
  metric = CHAOS_METRIC,
  queryDeadlineMs = 10_000,
): Promise<FinalSeries[]> {
  for (;;) {
    try {
      const c = await cluster.directClient(id);
      const out: FinalSeries[] = [];
      for await (const s of c.query(
        { metric, start: baseMs, end: baseMs + 1_000_000 },
        { deadlineMs: queryDeadlineMs },
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
  // The Kafka history is kept apart: its writes are asynchronous (acked by Kafka, applied later), so they
  // are checked for durability/phantoms/duplicates but are no part of the linearizability check.
  const kafkaRecorder = new HistoryRecorder(nowUs);
  let kafka: ChaosKafka | undefined;
  let kafkaSkipped: string | undefined;
  if (o.kafka === 'on' || o.kafka === 'auto') {
    try {
      if (o.kafka === 'auto') await kafkaAvailable();
      kafka = await ChaosKafka.start(o.shards);
      log(`kafka broker at ${kafka.broker.bootstrap}, topic ${kafka.topic} with ${o.shards} partitions`);
    } catch (err) {
      if (o.kafka === 'on') throw err;
      kafkaSkipped = `the Kafka broker could not be fetched or started: ${err instanceof Error ? err.message : String(err)}`;
      log(`kafka workload skipped: ${kafkaSkipped}`);
    }
  }
  const toxi = await ToxiproxyServer.start(o.seed);
  const flags = [...(o.nodeFlags ?? []), ...(kafka?.nodeFlags() ?? [])];
  const cluster = new ChaosCluster(toxi.client, {
    nodes: o.nodes,
    shards: o.shards,
    dir: o.dir,
    ...(flags.length > 0 ? { flags } : {}),
    log,
  });
  let workload: Workload | undefined;
  let kafkaWorkload: KafkaWorkload | undefined;
  let endOffsets: EndOffsets | undefined;
  let lagMonitor: LagMonitor | undefined;
  const report: RunReport = {
    ok: false,
    seed: o.seed,
    mode: o.mode,
    nodes: o.nodes,
    shards: o.shards,
    startedAt: new Date().toISOString(),
    wallMs: 0,
    replay: replayCommand({
      ...o,
      kafka: kafka !== undefined ? 'on' : kafkaSkipped !== undefined ? 'auto' : (o.kafka ?? 'off'),
    }),
    operations: { writes: 0, ok: 0, failed: 0, unknown: 0, reads: 0, readsOk: 0 },
    faults,
    skipped,
    final: {},
    linearizability: { result: 'Skipped', why: 'not run' },
    availability: [],
    harnessErrors,
  };
  if (kafkaSkipped !== undefined) skipped.push({ nemesis: 'kafka-workload', why: kafkaSkipped });
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
    if (kafka !== undefined) {
      kafkaWorkload = new KafkaWorkload(
        {
          brokers: kafka.broker.brokers,
          topic: kafka.topic,
          shards: o.shards,
          producers: o.kafkaProducers ?? 2,
          pauseMs: o.kafkaPauseMs ?? 50,
          samplesPerRecord: 5,
          seriesSamples: 500,
          sendTimeoutMs: 10_000,
          baseMs,
          firstProcess: 10_000,
        },
        kafkaRecorder,
        rng.fork(),
      );
      kafkaWorkload.start();
      endOffsets = new EndOffsets(kafka.broker.brokers, kafka.topic, o.shards);
      lagMonitor = new LagMonitor(cluster, endOffsets, o.shards, nowUs);
      lagMonitor.start();
    }
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
    await Promise.all([workload.stop(), kafkaWorkload?.stop()]);
    workload = undefined;
    log('faults done; workload stopped; checking');
    let kafkaCatchUp: CatchUpResult | undefined;
    let finalEnds: number[] = [];
    if (kafkaWorkload !== undefined && lagMonitor !== undefined && endOffsets !== undefined) {
      // Every shard must apply its partition up to the topic's end, within a bound: a consumer that never
      // catches up is a failure naming the partition.
      const stopped = nowUs();
      await lagMonitor.stop();
      finalEnds = await endOffsets.read();
      const bound = Date.now() + (o.kafkaCatchUpTimeoutMs ?? 60_000);
      for (;;) {
        const s = await lagMonitor.sampleNow();
        if (finalEnds.every((e, p) => (s.applied[p] ?? -1) >= e) || Date.now() > bound) break;
        await sleep(100);
      }
      kafkaCatchUp = catchUp(lagMonitor.samples, finalEnds, stopped);
      log(
        `kafka: end offsets ${finalEnds.join(',')}; caught up: ${kafkaCatchUp.partitions.map((p) => `${p.partition}:${p.catchUpMs ?? 'never'}`).join(' ')}`,
      );
    }

    // Wait until every node reads the same final state (replicas catch up after the heal), then check each.
    const until = Date.now() + 30_000;
    let finals = new Map<string, FinalSeries[]>();
    let kafkaFinals = new Map<string, FinalSeries[]>();
    for (;;) {
      finals = new Map(
        await Promise.all(
          cluster.ids.map(async (id) => [id, await finalRead(cluster, id, baseMs, until)] as const),
        ),
      );
      if (kafka !== undefined) {
        kafkaFinals = new Map(
          await Promise.all(
            cluster.ids.map(
              async (id) =>
                [id, await finalRead(cluster, id, baseMs, until, CHAOS_KAFKA_METRIC, 60_000)] as const,
            ),
          ),
        );
      }
      const prints = new Set([...finals.values()].map(fingerprint));
      const kafkaPrints = new Set([...kafkaFinals.values()].map(fingerprint));
      if ((prints.size === 1 && kafkaPrints.size <= 1) || Date.now() > until) break;
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
    if (kafka !== undefined && kafkaWorkload !== undefined && lagMonitor !== undefined) {
      const kh = kafkaRecorder.history();
      writeFileSync(join(o.dir, 'kafka-history.json'), JSON.stringify(kh));
      writeFileSync(join(o.dir, 'kafka-lag.json'), JSON.stringify(lagMonitor.samples));
      const ops = {
        sends: kafkaWorkload.sends,
        sendErrors: kafkaWorkload.sendErrors,
        samples: 0,
        ok: 0,
        failed: 0,
        unknown: 0,
      };
      for (const op of kh.ops) {
        ops.samples++;
        ops[op.outcome]++;
      }
      const final: Record<string, FinalCheck> = {};
      for (const [id, f] of kafkaFinals) final[id] = checkFinal(kh, f);
      const cu = kafkaCatchUp ?? catchUp([], finalEnds, 0);
      report.kafka = {
        ok: cu.ok && Object.values(final).every((f) => f.ok),
        topic: kafka.topic,
        partitions: o.shards,
        producers: o.kafkaProducers ?? 2,
        operations: ops,
        endOffsets: finalEnds,
        catchUp: cu,
        final,
        availability: kafkaAvailability(lagMonitor.samples, faults, o.shards),
        errors: [...kafkaWorkload.errors],
      };
    }
    report.ok =
      harnessErrors.length === 0 &&
      Object.values(report.final).every((f) => f.ok) &&
      (report.kafka === undefined || report.kafka.ok) &&
      (report.linearizability.result === 'Ok' || report.linearizability.result === 'Skipped');
  } catch (err) {
    harnessErrors.push(err instanceof Error ? (err.stack ?? err.message) : String(err));
  } finally {
    await workload?.stop().catch(() => undefined);
    await kafkaWorkload?.stop().catch(() => undefined);
    await lagMonitor?.stop().catch(() => undefined);
    await endOffsets?.close();
    await cluster.close().catch(() => undefined);
    await toxi.stop();
    await kafka?.stop(join(o.dir, 'logs')).catch(() => undefined);
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
const fmtPlain = (v: number | null) => (v === null ? 'never' : String(v));

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
  const k = r.kafka;
  if (k !== undefined) {
    const ko = k.operations;
    lines.push(
      `kafka: ${k.ok ? 'ok' : 'FAIL'}  topic ${k.topic} (${k.partitions} partitions), ${k.producers} producers: ${ko.sends} sends (${ko.sendErrors} failed), samples ${ko.samples} (ok ${ko.ok}, failed ${ko.failed}, unknown ${ko.unknown}); end offsets ${k.endOffsets.join(',')}`,
    );
    lines.push(
      `  caught up after the producers stopped (ms, per partition): ${k.catchUp.partitions.map((p) => `${p.partition}: ${fmtPlain(p.catchUpMs)}`).join(', ')}`,
    );
    for (const v of k.catchUp.violations) lines.push(`  ${v}`);
    for (const [id, f] of Object.entries(k.final)) {
      lines.push(
        `  node ${id}: acknowledged ${f.acknowledged}, present ${f.present}, lost ${f.lost}, phantom ${f.phantoms}, duplicated ${f.duplicates}; unknown present ${f.unknownPresent} / absent ${f.unknownAbsent}`,
      );
      for (const v of f.violations.slice(0, 5)) lines.push(`    ${JSON.stringify(v)}`);
    }
    lines.push(
      '  kafka per fault (max lag in records during it; stall = longest time in it a lagging (target) partition applied nothing; catch-up = heal → every partition applied its end offset at the heal):',
    );
    for (const a of k.availability) {
      lines.push(
        `    ${a.name.padEnd(24)} max lag ${String(a.maxLag).padStart(6)}, stall ${fmt(a.longestStallMs)}, catch-up ${fmt(a.worstCatchUpMs)}`,
      );
    }
    for (const e of k.errors.slice(0, 5)) lines.push(`  producer error: ${e}`);
  }
  for (const s of r.skipped) lines.push(`skipped ${s.nemesis}: ${s.why}`);
  for (const e of r.harnessErrors) lines.push(`harness error: ${e}`);
  lines.push(`run folder: ${dir}`);
  if (!r.ok) lines.push(`replay: ${r.replay}`);
  return `${lines.join('\n')}\n`;
}
