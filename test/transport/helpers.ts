import type { TransportReport } from '../../src/raft/transport.js';
import { type Message, MessageType } from '../../src/raft/types.js';
import { PeerTransport, type PeerTransportOptions } from '../../src/transport/peer.js';
import { Rng } from '../../src/util/random.js';
import { poll } from '../helpers/wait.js';

export function msg(type: MessageType, from: string, to: string, extra: Partial<Message> = {}): Message {
  return {
    type,
    from,
    to,
    term: 1,
    index: 0,
    logTerm: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    ...extra,
  };
}

export function heartbeat(from: string, to: string, commit = 0): Message {
  return msg(MessageType.Heartbeat, from, to, { commit });
}

/** Records what each shard of one transport received and heard. */
export class Inbox {
  readonly messages = new Map<number, Message[]>();
  readonly reports = new Map<number, TransportReport[]>();

  attach(t: PeerTransport, shards: number[]): this {
    for (const s of shards) {
      this.messages.set(s, []);
      this.reports.set(s, []);
      t.register(
        s,
        (m) => this.messages.get(s)!.push(m),
        (r) => this.reports.get(s)!.push(r),
      );
    }
    return this;
  }

  count(): number {
    let n = 0;
    for (const ms of this.messages.values()) n += ms.length;
    return n;
  }
}

/** Starts `ids.length` transports on loopback and points them at each other. */
export async function startMesh(
  ids: string[],
  options: Partial<PeerTransportOptions> = {},
  seed = 1,
): Promise<PeerTransport[]> {
  const rng = new Rng(seed);
  const ts: PeerTransport[] = [];
  for (const id of ids) ts.push(await PeerTransport.start({ id, random: () => rng.next(), ...options }));
  const addresses = Object.fromEntries(ts.map((t) => [t.id, `127.0.0.1:${t.port}`]));
  for (const t of ts) t.setPeers(Object.fromEntries(Object.entries(addresses).filter(([id]) => id !== t.id)));
  return ts;
}

export function waitFor<T>(fn: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  return poll(fn, what, { timeoutMs });
}

/** A port that nothing listens on (bound, then released). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The protobuf varint bytes of an int64 (two's complement over 64 bits: a negative one takes 10 bytes). */
export function int64Bytes(v: bigint | number): number[] {
  let u = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  while (u >= 0x80n) {
    out.push(Number(u & 0x7fn) | 0x80);
    u >>= 7n;
  }
  out.push(Number(u));
  return out;
}
