/**
 * A StatefulSet rolling restart on one machine, under a steady write load. Three real `tidemark start` processes
 * run the way the base manifest runs them: the rendered StatefulSet's args and environment (image ENV, ConfigMap,
 * container env: StatefulSet mode, 16 shards, R = 3), hostnames tidemark-0..2, and the headless Service's pod
 * names mapped to loopback addresses 127.0.0.11-13 by a preload (test/deploy/fixtures/pod-identity.ts). Two
 * settings differ, as they must on one machine: the listen addresses (the pod's loopback address, free ports; the
 * same three ports on every pod, since StatefulSet mode derives every peer's port from the node's own) and the data
 * directory (one temporary "volume" per pod).
 *
 * Like the StatefulSet controller, the test restarts one pod at a time, highest ordinal first: SIGTERM (the node
 * must exit 0 within the manifest's grace period), start it again on the same volume, and go on only once its
 * readiness probe passes. Like the client Service, the writer sends only to pods that are in service (started, not
 * being stopped). Every write the cluster acknowledged must be readable afterwards through every pod; the write
 * error rate during the restart is printed (not asserted: it depends on the machine's load).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TidemarkService, type WriteRequest } from '../../src/gen/tidemark/v1/client_pb.js';
import { type Series, seriesId, shardOf } from '../../src/model/index.js';
import { createClient, type ServiceClient } from '../../src/transport/grpc-adapter.js';
import { poll } from '../helpers/wait.js';
import { load, ordinalHost, podConfig, podEnv, probe } from './manifest.js';

type Client = ServiceClient<typeof TidemarkService>;

const t = load('base');
const env = podEnv(t);
const config = podConfig(t, 0);
const SHARDS = config.shards;
const service = t.sts.spec.serviceName as string;
const pods = Array.from({ length: t.replicas }, (_, i) => ordinalHost(t, i));
const ipOf = (i: number): string => `127.0.0.${11 + i}`;
/** The DNS names of the headless Service, as the pods resolve them. */
const hosts = Object.fromEntries(pods.map((p, i) => [`${p}.${service}`, ipOf(i)]));
const grace = t.pod.terminationGracePeriodSeconds as number;
const readyPath = probe(t, 'readinessProbe').path;

const waitFor = <T>(
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs: number,
  everyMs: number,
): Promise<T> => poll(fn, what, { timeoutMs, everyMs, retryErrors: true });

function listenOnce(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(undefined));
    s.listen(port, host, () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : undefined));
    });
  });
}

/** A port that was free a moment ago on every pod address. */
async function freePortOnPods(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await listenOnce(ipOf(0), 0);
    if (port === undefined || taken.has(port)) continue;
    let free = true;
    for (let i = 1; i < pods.length && free; i++) free = (await listenOnce(ipOf(i), port)) !== undefined;
    if (free) {
      taken.add(port);
      return port;
    }
  }
}

function seriesOnShard(shard: number): Series {
  for (let i = 0; ; i++) {
    const s = { metric: 'roll', tags: { host: `h${i}` } };
    if (shardOf(seriesId(s), SHARDS) === shard) return s;
  }
}

class Pod {
  proc: ChildProcess | undefined;
  readonly output: string[] = [];
  readonly client: Client;
  constructor(
    readonly ordinal: number,
    readonly ports: { http: number; grpc: number; peer: number },
    readonly volume: string,
  ) {
    this.client = createClient(TidemarkService, `${ipOf(ordinal)}:${ports.grpc}`);
  }

  get name(): string {
    return pods[this.ordinal]!;
  }

  start(): void {
    const ip = ipOf(this.ordinal);
    this.proc = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--import',
        './test/deploy/fixtures/pod-identity.ts',
        'src/cli/entry.ts',
        ...t.container.args,
      ],
      {
        cwd: process.cwd(),
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          PATH: process.env.PATH,
          ...env,
          TIDEMARK_HTTP: `${ip}:${this.ports.http}`,
          TIDEMARK_GRPC: `${ip}:${this.ports.grpc}`,
          TIDEMARK_PEER_LISTEN: `${ip}:${this.ports.peer}`,
          TIDEMARK_DATA_DIR: this.volume,
          POD_NAME: this.name,
          POD_HOSTS: JSON.stringify(hosts),
        },
      },
    );
    const keep = (d: Buffer) => {
      this.output.push(d.toString());
      if (this.output.length > 40) this.output.shift();
    };
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
  }

  /** The readiness probe, as the kubelet runs it (200-399 = success). */
  async ready(): Promise<boolean> {
    try {
      const res = await fetch(`http://${ipOf(this.ordinal)}:${this.ports.http}${readyPath}`, {
        signal: AbortSignal.timeout(3000),
      });
      return res.status >= 200 && res.status < 400;
    } catch {
      return false;
    }
  }

  /** SIGTERM; resolves with the exit code and how long it took (SIGKILL at the grace period, like the kubelet). */
  stop(): Promise<{ code: number | null; ms: number }> {
    const proc = this.proc!;
    const started = Date.now();
    return new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve({ code: proc.exitCode, ms: 0 });
      const timer = setTimeout(() => proc.kill('SIGKILL'), grace * 1000);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, ms: Date.now() - started });
      });
      proc.kill('SIGTERM');
    });
  }

  kill(): Promise<void> {
    const proc = this.proc;
    return new Promise((resolve) => {
      if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  }
}

async function queryAll(c: Client): Promise<Map<string, Set<number>>> {
  const out = new Map<string, Set<number>>();
  for await (const m of c.query({ metric: 'roll' }, { timeoutMs: 15_000 })) {
    for (const s of m.series) {
      const set = out.get(s.series!.tags.host!) ?? new Set<number>();
      for (const ts of s.timestamps) set.add(Number(ts));
      out.set(s.series!.tags.host!, set);
    }
  }
  return out;
}

describe('rolling restart of the base StatefulSet', () => {
  const root = mkdtempSync(join(tmpdir(), 'tidemark-rolling-'));
  let cluster: Pod[] = [];
  afterAll(async () => {
    await Promise.all(cluster.map((p) => p.kill()));
    for (const p of cluster) p.client.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('restarts pods one at a time in reverse ordinal order without losing an acknowledged write', async () => {
    const taken = new Set<number>();
    const ports = {
      http: await freePortOnPods(taken),
      grpc: await freePortOnPods(taken),
      peer: await freePortOnPods(taken),
    };
    cluster = pods.map((_, i) => new Pod(i, ports, join(root, `data-${pods[i]}`)));
    for (const p of cluster) p.start();
    for (const p of cluster) {
      await waitFor(() => p.ready(), `${p.name} ready (${p.output.join('')})`, 90_000, 200);
    }

    // Steady writer: one sample per shard per write, to the pods in service in turn.
    const list = Array.from({ length: SHARDS }, (_, s) => seriesOnShard(s));
    const acked = new Map<string, number[]>();
    const inService = new Set(cluster.map((p) => p.ordinal));
    const counts = { attempts: 0, errors: 0, duringRestart: { attempts: 0, errors: 0 } };
    const reasons = new Map<string, number>();
    let restarting = false;
    let running = true;
    let ts = 1_000_000;
    const writer = (async () => {
      let turn = 0;
      while (running) {
        const targets = [...inService];
        const pod = cluster[targets[turn++ % targets.length]!]!;
        const at = ts++;
        const req = {
          batch: {
            series: list.map((s) => ({
              series: { metric: s.metric, tags: s.tags },
              timestamps: [BigInt(at)],
              values: [at / 10],
            })),
          },
        } as WriteRequest;
        counts.attempts++;
        if (restarting) counts.duringRestart.attempts++;
        try {
          const r = await pod.client.write(req, { timeoutMs: 10_000 });
          if (r.accepted !== BigInt(SHARDS) || r.rejected.length > 0) throw new Error('partial write');
          for (const s of list) {
            const a = acked.get(s.tags.host!) ?? [];
            a.push(at);
            acked.set(s.tags.host!, a);
          }
        } catch (err) {
          const why = (err instanceof Error ? err.message : String(err)).slice(0, 100);
          reasons.set(why, (reasons.get(why) ?? 0) + 1);
          counts.errors++;
          if (restarting) counts.duringRestart.errors++;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await waitFor(() => counts.attempts - counts.errors >= 20, 'writes before the restart', 30_000, 50);

    // The StatefulSet controller: highest ordinal first, the next only once the restarted pod is ready.
    restarting = true;
    const stops: { pod: string; code: number | null; ms: number; readyMs: number }[] = [];
    for (const p of [...cluster].reverse()) {
      inService.delete(p.ordinal);
      const { code, ms } = await p.stop();
      const restartedAt = Date.now();
      p.start();
      await waitFor(() => p.ready(), `restarted ${p.name} ready (${p.output.join('')})`, 90_000, 200);
      stops.push({ pod: p.name, code, ms, readyMs: Date.now() - restartedAt });
      inService.add(p.ordinal);
    }
    restarting = false;
    const before = counts.attempts - counts.errors;
    await waitFor(
      () => counts.attempts - counts.errors >= before + 20,
      'writes after the restart',
      30_000,
      50,
    );
    running = false;
    await writer;

    const rate = counts.duringRestart.errors / Math.max(1, counts.duringRestart.attempts);
    console.log(
      `rolling restart: ${JSON.stringify(stops)}; writes during the restart: ${counts.duringRestart.attempts}, ` +
        `failed ${counts.duringRestart.errors} (${(rate * 100).toFixed(1)}%); in all ${counts.attempts}, failed ${counts.errors}; errors: ${JSON.stringify(Object.fromEntries(reasons))}`,
    );
    for (const s of stops) {
      expect(s.code, `${s.pod} exits 0 on SIGTERM within ${grace} s`).toBe(0);
    }

    // Every acknowledged sample is readable through every pod.
    let total = 0;
    for (const a of acked.values()) total += a.length;
    expect(total).toBeGreaterThan(0);
    for (const p of cluster) {
      await waitFor(
        async () => {
          const got = await queryAll(p.client).catch(() => undefined);
          if (got === undefined) return false;
          let missing = 0;
          for (const [host, list] of acked) for (const x of list) if (!got.get(host)?.has(x)) missing++;
          return missing === 0;
        },
        `${p.name} returns every acknowledged sample`,
        30_000,
        500,
      );
    }

    const codes = await Promise.all(cluster.map((p) => p.stop()));
    expect(codes.map((c) => c.code)).toEqual(cluster.map(() => 0));
  }, 300_000);
});
