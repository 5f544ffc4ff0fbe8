/**
 * A real Apache Kafka broker for a test file: fetched on demand by scripts/kafka.sh (the first run on a
 * fresh machine downloads the jars from Maven Central; later runs use ~/.cache/tidemark), started on free
 * loopback ports in a temp dir, stopped and deleted after. Use with a long hookTimeout:
 *
 *   let kafka: TestKafka;
 *   beforeAll(async () => { kafka = await startKafka(); }, KAFKA_HOOK_TIMEOUT_MS);
 *   afterAll(() => kafka?.stop(), 60_000);
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SCRIPT = resolve(import.meta.dirname, '../../scripts/kafka.sh');

/** Fetch (first run: a Maven download) + format + start, on a slow 2-core CI machine. */
export const KAFKA_HOOK_TIMEOUT_MS = 300_000;

export interface TestKafka {
  /** host:port */
  bootstrap: string;
  brokers: string[];
  dataDir: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return await new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

export async function fetchKafka(): Promise<void> {
  await run('bash', [SCRIPT, 'fetch'], { timeout: KAFKA_HOOK_TIMEOUT_MS, maxBuffer: 16 << 20 });
}

export async function startKafka(): Promise<TestKafka> {
  await fetchKafka();
  const dataDir = await mkdtemp(join(tmpdir(), 'tidemark-kafka-'));
  let lastErr: unknown;
  // Free ports can be taken between the probe and the broker's bind: try a few pairs.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const cport = await freePort();
    if (port === cport) continue;
    try {
      const { stdout } = await run('bash', [SCRIPT, 'start', String(port), dataDir], {
        env: {
          ...process.env,
          KAFKA_CONTROLLER_PORT: String(cport),
          KAFKA_HEAP_OPTS: '-Xms128m -Xmx512m',
          // A test process killed before afterAll takes its broker with it.
          KAFKA_WATCH_PID: String(process.pid),
        },
        timeout: 180_000,
      });
      const bootstrap = stdout.trim().split('\n').pop() ?? `127.0.0.1:${port}`;
      return {
        bootstrap,
        brokers: [bootstrap],
        dataDir,
        stop: async () => {
          await run('bash', [SCRIPT, 'stop', dataDir], { timeout: 60_000 }).catch(() => undefined);
          await rm(dataDir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      lastErr = err;
      await run('bash', [SCRIPT, 'stop', dataDir], { timeout: 60_000 }).catch(() => undefined);
      await rm(join(dataDir, 'logs'), { recursive: true, force: true });
    }
  }
  await rm(dataDir, { recursive: true, force: true });
  throw lastErr;
}
