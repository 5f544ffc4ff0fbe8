import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = ['--import', 'tsx', 'src/cli/entry.ts'];

async function tidemark(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [...CLI, ...args], { cwd: process.cwd() });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('tidemark CLI', () => {
  it('prints help and version', async () => {
    expect((await tidemark('help')).stdout).toContain('Usage: tidemark');
    expect((await tidemark('version')).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('runs the single-node demo: writes, reopens and queries a store', async () => {
    const r = await tidemark('demo', '--hosts', '2', '--hours', '3');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/wrote 6480 samples for 6 series/);
    expect(r.stdout).toMatch(/reopened: 6 series/);
    expect(r.stdout).toContain('cpu.usage{dc=eu-west,host=web-1,mode=user}');
  });

  it('rejects bad demo flags with a clear message', async () => {
    const r = await tidemark('demo', '--hosts', '0');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--hosts must be 1..10000');
  });

  it('exits 2 on an unknown command and says so', async () => {
    const r = await tidemark('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
  });
});
