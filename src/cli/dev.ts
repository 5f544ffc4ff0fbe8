/**
 * `tidemark dev [--dir D] [--nodes N] [--base-port P] [--shards S] [--kafka] [--kafka-port K]`: a local
 * cluster of N node processes
 * (`tidemark start` children). Node i listens at P, P+1, P+2 (HTTP, gRPC, peer) + 10·i; data lives under
 * D/node-i (a temp dir, removed at exit, when --dir is not given). Waits for every shard to elect a leader,
 * writes a little demo data through the gRPC Write of node 0, prints the endpoints and runs until Ctrl-C,
 * which stops every node gracefully.
 *
 * `--kafka`: also starts a real single-node Kafka broker (scripts/kafka.sh; jars cached in
 * ~/.cache/tidemark) on 127.0.0.1:K (default 9092), creates topic `tidemark` with S partitions (format
 * `auto`) and its dead-letter topic `tidemark-dlq`, configures every node to consume it, produces a little
 * demo data through it and prints the bootstrap address (docs/kafka.md).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs, promisify } from 'node:util';
import { TidemarkService } from '../gen/tidemark/v1/client_pb.js';
import { createClient } from '../transport/grpc-adapter.js';

function int(value: string | undefined, name: string, lo: number, hi: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < lo || n > hi)
    throw new Error(`--${name} must be an integer in [${lo}, ${hi}]`);
  return n;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);

/** scripts/kafka.sh from src/cli (tsx) or dist/src/cli (built). */
function kafkaScript(): string {
  for (const up of ['../..', '../../..']) {
    const p = resolve(import.meta.dirname, up, 'scripts/kafka.sh');
    if (existsSync(p)) return p;
  }
  throw new Error('scripts/kafka.sh not found (--kafka needs a source checkout)');
}

interface DevKafka {
  bootstrap: string;
  stop(): Promise<void>;
}

/** Fetches (first time: Maven download), starts a broker under `dir`, creates the topics. */
async function startKafka(dir: string, port: number, shards: number): Promise<DevKafka> {
  const script = kafkaScript();
  console.log('tidemark dev: fetching and starting Kafka (the first run downloads the jars)...');
  await run('bash', [script, 'fetch'], { timeout: 600_000, maxBuffer: 16 << 20 });
  const { stdout } = await run('bash', [script, 'start', String(port), dir], {
    env: { ...process.env, KAFKA_WATCH_PID: String(process.pid) },
    timeout: 180_000,
  });
  const bootstrap = stdout.trim().split('\n').pop() ?? `127.0.0.1:${port}`;
  const stop = async () => {
    await run('bash', [script, 'stop', dir], { timeout: 60_000 }).catch(() => undefined);
  };
  try {
    const { createTopic, PlatformaticKafkaIo } = await import('../ingest/kafka/client.js');
    const io = new PlatformaticKafkaIo({ brokers: [bootstrap], clientId: 'tidemark-dev' });
    try {
      // A kept --dir re-uses its topics.
      if ((await io.partitionCount(KAFKA_TOPIC)) === undefined)
        await createTopic([bootstrap], KAFKA_TOPIC, shards);
      if ((await io.partitionCount(KAFKA_DLQ)) === undefined)
        await createTopic([bootstrap], KAFKA_DLQ, 1, { 'cleanup.policy': 'compact' });
    } finally {
      await io.close();
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { bootstrap, stop };
}

const KAFKA_TOPIC = 'tidemark';
const KAFKA_DLQ = 'tidemark-dlq';

export async function dev(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' },
      nodes: { type: 'string', default: '3' },
      'base-port': { type: 'string', default: '4242' },
      shards: { type: 'string', default: '8' },
      kafka: { type: 'boolean', default: false },
      'kafka-port': { type: 'string', default: '9092' },
    },
  });
  const count = int(values.nodes, 'nodes', 1, 9);
  const base = int(values['base-port'], 'base-port', 1024, 65535 - 10 * count - 3);
  const shards = int(values.shards, 'shards', 1, 4096);
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'tidemark-dev-'));
  const keep = values.dir !== undefined;
  const kafkaPort = int(values['kafka-port'], 'kafka-port', 1024, 65534);
  let kafka: DevKafka | undefined;
  if (values.kafka) {
    try {
      kafka = await startKafka(join(dir, 'kafka'), kafkaPort, shards);
    } catch (err) {
      if (!keep) rmSync(dir, { recursive: true, force: true });
      console.error(`tidemark dev: Kafka did not start: ${err instanceof Error ? err.message : String(err)}`);
      return 1;
    }
  }
  const kafkaFlags =
    kafka === undefined
      ? []
      : [
          `--kafka-brokers=${kafka.bootstrap}`,
          `--kafka-topic=${KAFKA_TOPIC}`,
          '--kafka-format=auto',
          `--kafka-dead-letter-topic=${KAFKA_DLQ}`,
        ];
  const nodes = Array.from({ length: count }, (_, i) => ({
    id: `node-${i}`,
    http: `127.0.0.1:${base + 10 * i}`,
    grpc: `127.0.0.1:${base + 10 * i + 1}`,
    peer: `127.0.0.1:${base + 10 * i + 2}`,
    dataDir: join(dir, `node-${i}`),
  }));
  const peers = nodes.map((n) => `${n.id}=${n.peer}`).join(',');
  // Every node's client address, so the ShardMap RPC lets clients route straight to shard leaders.
  const peerClients = nodes.map((n) => `${n.id}=${n.grpc}`).join(',');
  // Re-run this same CLI (tsx in development, bin/tidemark.js when built) as `start`.
  const script = process.argv[1]!;
  const children: ChildProcess[] = [];
  let stopping = false;
  let failed: string | undefined;
  const exited: Promise<void>[] = [];
  for (const n of nodes) {
    mkdirSync(n.dataDir, { recursive: true });
    const child = spawn(
      process.execPath,
      [
        ...process.execArgv,
        script,
        'start',
        `--node-id=${n.id}`,
        `--http=${n.http}`,
        `--grpc=${n.grpc}`,
        `--peer-listen=${n.peer}`,
        `--peers=${peers}`,
        `--peer-clients=${peerClients}`,
        // A local development cluster on 127.0.0.1: the peer port runs in the clear (docs/security.md).
        '--insecure',
        `--shards=${shards}`,
        `--data-dir=${n.dataDir}`,
        ...kafkaFlags,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } },
    );
    children.push(child);
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => console.log(`[${n.id}] ${line}`));
    }
    exited.push(
      new Promise((resolve) =>
        child.once('exit', (code, sig) => {
          if (!stopping) failed ??= `${n.id} exited (${sig ?? code})`;
          resolve();
        }),
      ),
    );
  }

  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }, 15_000);
    await Promise.all(exited);
    clearTimeout(timer);
    await kafka?.stop();
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };

  let interrupted = false;
  const stopSignal = new Promise<void>((resolve) => {
    const on = () => {
      interrupted = true;
      resolve();
    };
    process.once('SIGINT', on);
    process.once('SIGTERM', on);
  });

  const clients = nodes.map((n) => createClient(TidemarkService, n.grpc));
  try {
    // Every node up and every local replica knowing its leader.
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (interrupted || failed !== undefined) break;
      const ready = await Promise.all(
        clients.map((c) =>
          c.status({}, { timeoutMs: 1000 }).then(
            (s) => s.replicas.length > 0 && s.replicas.every((r) => r.leader !== ''),
            () => false,
          ),
        ),
      );
      if (ready.every(Boolean)) break;
      if (Date.now() > deadline) {
        failed = 'the cluster did not become ready within 60 s';
        break;
      }
      await sleep(200);
    }
    if (!interrupted && failed === undefined) {
      const now = Math.floor(Date.now() / 1000) * 1000;
      const hosts = ['web-1', 'web-2', 'db-1', 'db-2'];
      const res = await clients[0]!.write(
        {
          batch: {
            series: hosts.map((host, h) => ({
              series: { metric: 'cpu.usage', tags: { host, dc: 'local' } },
              timestamps: Array.from({ length: 60 }, (_, i) => BigInt(now - (59 - i) * 10_000)),
              values: Array.from({ length: 60 }, (_, i) => 20 + 10 * h + 5 * Math.sin(i / 6)),
            })),
          },
        },
        { timeoutMs: 15_000 },
      );
      console.log(
        `tidemark dev: ${count} nodes, ${shards} shards, data in ${dir}${keep ? '' : ' (temporary)'}`,
      );
      for (const n of nodes) console.log(`  ${n.id}  HTTP http://${n.http}  gRPC ${n.grpc}  peer ${n.peer}`);
      console.log(
        `tidemark dev: wrote ${res.accepted} demo samples (cpu.usage, 4 hosts) through ${nodes[0]!.grpc}`,
      );
      if (kafka !== undefined) {
        const { TidemarkKafkaProducer } = await import('../client/kafka-producer.js');
        const producer = new TidemarkKafkaProducer({ brokers: kafka.bootstrap, topic: KAFKA_TOPIC, shards });
        try {
          const sent = await producer.send(
            hosts.map((host, h) => ({
              metric: 'kafka.demo',
              tags: { host },
              timestamp: now,
              value: h + 0.5,
            })),
          );
          console.log(
            `tidemark dev: Kafka at ${kafka.bootstrap}: topic ${KAFKA_TOPIC} (${shards} partitions, format auto), ` +
              `dead letters to ${KAFKA_DLQ}; produced ${sent.samples} demo samples (kafka.demo)`,
          );
        } finally {
          await producer.close();
        }
      }
      console.log('tidemark dev: running; Ctrl-C stops every node');
      await Promise.race([stopSignal, ...exited.map((p) => p.then(() => sleep(100)))]);
    }
  } catch (err) {
    failed ??= err instanceof Error ? err.message : String(err);
  } finally {
    for (const c of clients) c.close();
    await stopAll();
  }
  if (failed !== undefined && !interrupted) {
    console.error(`tidemark dev: ${failed}`);
    return 1;
  }
  console.log('tidemark dev: stopped');
  return 0;
}
