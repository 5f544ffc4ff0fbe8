/**
 * Linearizability through Porcupine: builds the Go checker (chaos-tests/porcupine, cached by source hash)
 * and runs it on a history file. The model and the JSON contract are described in porcupine/main.go.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const BUILD = fileURLToPath(new URL('../porcupine/build.sh', import.meta.url));

export interface LinearizabilityResult {
  result: 'Ok' | 'Illegal' | 'Unknown';
  series: number;
  operations: number;
  /** Series whose operations have no linearization. */
  illegal: string[];
  /** Series the checker ran out of time on (not a violation, not a pass). */
  unknown: string[];
  /** Porcupine's HTML view of the illegal series, when written. */
  html?: string;
}

/** Builds the checker if needed; resolves with the binary's path. */
export async function buildPorcupine(): Promise<string> {
  const { stdout } = await run('bash', [BUILD], { maxBuffer: 1 << 20 });
  return stdout.trim().split('\n').pop()!;
}

/** Checks `historyPath`; writes the HTML view to `htmlPath` on a violation. */
export async function checkLinearizable(
  historyPath: string,
  htmlPath: string,
  timeoutMs = 60_000,
): Promise<LinearizabilityResult> {
  const bin = await buildPorcupine();
  const args = ['-history', historyPath, '-html', htmlPath, '-timeout', `${timeoutMs}ms`];
  try {
    const { stdout } = await run(bin, args, { maxBuffer: 64 << 20 });
    return JSON.parse(stdout) as LinearizabilityResult;
  } catch (err) {
    // Exit 2 (illegal) and 3 (unknown) still print the report on stdout.
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if ((e.code === 2 || e.code === 3) && e.stdout) return JSON.parse(e.stdout) as LinearizabilityResult;
    throw new Error(`porcupine checker failed (exit ${e.code}): ${e.stderr ?? String(err)}`);
  }
}
