/**
 * The Toxiproxy server for a run: installed by scripts/toxiproxy.sh (pinned, cached), started as a child
 * process on a free port, driven with toxiproxy-node-client.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Toxiproxy } from 'toxiproxy-node-client';
import { freePort } from './ports.js';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../scripts/toxiproxy.sh', import.meta.url));

export async function installToxiproxy(): Promise<string> {
  const { stdout } = await run('bash', [SCRIPT, 'install'], { maxBuffer: 1 << 20 });
  return stdout.trim().split('\n').pop()!;
}

export class ToxiproxyServer {
  private constructor(
    readonly proc: ChildProcess,
    readonly address: string,
    readonly client: Toxiproxy,
  ) {}

  /** Installs (once) and starts a server; `seed` seeds its toxics' randomness (jitter, toxicity). */
  static async start(seed: number): Promise<ToxiproxyServer> {
    const bin = await installToxiproxy();
    const port = await freePort();
    const proc = spawn(bin, ['-host', '127.0.0.1', '-port', String(port), '-seed', String(seed)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    proc.stderr!.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-4000);
    });
    const address = `http://127.0.0.1:${port}`;
    const client = new Toxiproxy(address);
    const end = Date.now() + 15_000;
    for (;;) {
      try {
        await client.getVersion();
        break;
      } catch (err) {
        if (proc.exitCode !== null || Date.now() > end) {
          proc.kill('SIGKILL');
          throw new Error(`toxiproxy did not start: ${String(err)}\n${log}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    return new ToxiproxyServer(proc, address, client);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      this.proc.once('exit', () => resolve());
      this.proc.kill('SIGKILL');
    });
  }
}
