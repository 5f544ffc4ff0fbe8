/**
 * Concurrent queries per client: a count per client key (the authenticated principal when auth is on, else
 * the remote address). acquire() either takes a slot and returns its release, or throws RESOURCE_EXHAUSTED
 * naming the limit with a retry hint. Keys whose count drops to 0 are forgotten, so the map holds only
 * clients with queries in flight.
 */
import { limitExhausted } from './errors.js';

export class ClientConcurrency {
  private readonly inflight = new Map<string, number>();

  constructor(
    /** Most queries in flight per client; 0 = unlimited. */
    readonly max: number,
    /** Retry hint of a rejection, ms. */
    readonly retryAfterMs = 1000,
  ) {}

  /** Takes a slot for `client`; the returned function gives it back (idempotent). */
  acquire(client: string): () => void {
    if (this.max <= 0) return noop;
    const n = this.inflight.get(client) ?? 0;
    if (n >= this.max) {
      throw limitExhausted(
        'maxConcurrentQueriesPerClient',
        this.max,
        'too_many_concurrent_queries',
        `client ${JSON.stringify(client)} already has ${n} queries in flight (limit limits.maxConcurrentQueriesPerClient = ${this.max}); retry when one finishes`,
        this.retryAfterMs,
        { client },
      );
    }
    this.inflight.set(client, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const m = (this.inflight.get(client) ?? 1) - 1;
      if (m <= 0) this.inflight.delete(client);
      else this.inflight.set(client, m);
    };
  }

  /** Queries in flight for `client`. */
  count(client: string): number {
    return this.inflight.get(client) ?? 0;
  }

  /** Clients with queries in flight. */
  get clients(): number {
    return this.inflight.size;
  }
}

const noop = (): void => {};

/** The client key of a connection address: the host without the port (`[::1]:5000` → `::1`). */
export function clientOfAddress(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  let a = address;
  // grpc-js peers may carry a scheme (`ipv4:1.2.3.4:5`, `ipv6:[::1]:5`).
  a = a.replace(/^(ipv4|ipv6|unix):/, '');
  const v6 = /^\[([^\]]*)\](?::\d+)?$/.exec(a);
  if (v6 !== null) return v6[1]!;
  const colon = a.lastIndexOf(':');
  // One colon: host:port. Several without brackets: a bare IPv6 address (no port).
  if (colon > 0 && a.indexOf(':') === colon) return a.slice(0, colon);
  return a.replace(/^::ffff:/, '');
}
