/** Free loopback ports (bind port 0, read it, release it), never the same one twice per allocator. */
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export class PortAllocator {
  private readonly seen = new Set<number>();

  async next(): Promise<number> {
    for (;;) {
      const p = await freePort();
      if (!this.seen.has(p)) {
        this.seen.add(p);
        return p;
      }
    }
  }
}
