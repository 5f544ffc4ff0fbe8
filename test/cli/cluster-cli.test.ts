import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = ['--import', 'tsx', 'src/cli/entry.ts'];

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A base port P with P, P+1, P+2 (+10·i for i < nodes) all free. */
async function freeBase(nodes: number): Promise<number> {
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * 3000) * 10;
    let ok = true;
    for (let i = 0; i < nodes && ok; i++)
      for (let k = 0; k < 3 && ok; k++) ok = await canBind(base + 10 * i + k);
    if (ok) return base;
  }
}

describe('tidemark start / dev', () => {
  it('start refuses a bad setting and names it', async () => {
    const err = await run(process.execPath, [...CLI, 'start', '--shards', '0'], { cwd: process.cwd() }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toContain('--shards');
  });

  it('help lists start and dev', async () => {
    const { stdout } = await run(process.execPath, [...CLI, 'help'], { cwd: process.cwd() });
    expect(stdout).toContain('start [flags]');
    expect(stdout).toContain('dev [--dir DIR]');
  });

  it('dev runs three node processes, writes demo data, and stops cleanly on SIGINT', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidemark-devtest-'));
    try {
      const base = await freeBase(3);
      const proc = spawn(
        process.execPath,
        [...CLI, 'dev', '--dir', dir, '--base-port', String(base), '--shards', '4'],
        {
          cwd: process.cwd(),
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      proc.stderr!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
      const end = Date.now() + 90_000;
      while (!out.includes('running; Ctrl-C') && proc.exitCode === null && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(out).toContain('wrote 240 demo samples');
      expect(out).toContain(`node-1  HTTP http://127.0.0.1:${base + 10}  gRPC 127.0.0.1:${base + 11}`);
      const health = await fetch(`http://127.0.0.1:${base + 20}/healthz`);
      expect(health.status).toBe(200);
      proc.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(out).toContain('tidemark dev: stopped');
      expect(readdirSync(dir).sort()).toEqual(['node-0', 'node-1', 'node-2']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
