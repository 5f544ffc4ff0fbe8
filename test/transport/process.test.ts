import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { type Message, MessageType } from '../../src/raft/types.js';
import { PeerTransport } from '../../src/transport/peer.js';
import { heartbeat, Inbox, msg, waitFor } from './helpers.js';

let child: ChildProcess | undefined;
let parent: PeerTransport | undefined;
afterEach(async () => {
  await parent?.close();
  parent = undefined;
  if (child && child.exitCode === null) child.kill('SIGKILL');
  child = undefined;
});

/** Starts the fixture node and resolves with its peer port. */
function startChild(id: string): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/transport/fixtures/peer-node.ts', id, '4'], {
    cwd: process.cwd(),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.once('line', (line) => resolve({ proc, port: (JSON.parse(line) as { port: number }).port }));
    proc.once('exit', (code) => reject(new Error(`peer-node exited early with ${code}`)));
  });
}

describe('PeerTransport across processes', () => {
  it('exchanges frames, a snapshot and a forward with a child process; notices it die', async () => {
    const started = await startChild('c1');
    child = started.proc;
    parent = await PeerTransport.start({
      id: 'p',
      backoffInitialMs: 20,
      backoffMaxMs: 100,
      snapshotChunkBytes: 4096,
    });
    parent.setPeer('c1', `127.0.0.1:${started.port}`);
    child.stdin!.write(`${JSON.stringify({ peers: { p: `127.0.0.1:${parent.port}` } })}\n`);
    const inbox = new Inbox().attach(parent, [0, 1, 2, 3]);

    const enc = new TextEncoder();
    for (let s = 0; s < 4; s++) {
      const batch: Message[] = [];
      for (let i = 0; i < 5; i++)
        batch.push({ ...heartbeat('p', 'c1', 100 * s + i), context: enc.encode(`${s}:${i}`) });
      parent.send(s, batch);
    }
    await waitFor(() => inbox.count() === 20, 20_000, 'echoes from the child');
    for (let s = 0; s < 4; s++) {
      const got = inbox.messages.get(s)!;
      expect(got.map((m) => m.commit)).toEqual([0, 1, 2, 3, 4].map((i) => 100 * s + i));
      expect(got.map((m) => new TextDecoder().decode(m.context))).toEqual(
        [0, 1, 2, 3, 4].map((i) => `${s}:${i}`),
      );
      expect(got.every((m) => m.type === MessageType.HeartbeatResp && m.from === 'c1')).toBe(true);
    }
    // Batching held across the process boundary too: far fewer frames than messages.
    expect(parent.stats.framesSent).toBeLessThan(parent.stats.messagesSent);

    // A snapshot of several chunks.
    const data = new Uint8Array(50_000).map((_, i) => i & 0xff);
    parent.send(2, [
      msg(MessageType.Snap, 'p', 'c1', {
        snapshot: { meta: { index: 77, term: 2, conf: { voters: ['p', 'c1'], learners: [] } }, data },
      }),
    ]);
    await waitFor(() => inbox.messages.get(2)!.some((m) => m.commit === 77), 20_000, 'snapshot echo');
    const echo = inbox.messages.get(2)!.find((m) => m.commit === 77)!;
    expect(new TextDecoder().decode(echo.context)).toBe('50000');
    // The ack may trail the child's echo (which comes back on the child's own Raft stream).
    await waitFor(() => inbox.reports.get(2)!.length > 0, 20_000, 'the snapshot report');
    expect(inbox.reports.get(2)).toEqual([{ kind: 'snapshot', to: 'c1', ok: true }]);

    // A forward.
    expect(await parent.forward('c1', 1, new Uint8Array(33), { timeoutMs: 10_000 })).toEqual({
      accepted: 33,
      rejected: [],
    });

    // The child dies: the parent's shards hear `unreachable`.
    child.kill('SIGKILL');
    await waitFor(
      () => {
        parent!.send(0, [heartbeat('p', 'c1')]);
        return inbox.reports.get(0)!.some((r) => r.kind === 'unreachable' && r.to === 'c1');
      },
      20_000,
      'unreachable after the child died',
    );
  });
});
