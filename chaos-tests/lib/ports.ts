/** Free loopback ports, never the same one twice per allocator. */
import { freePort } from '../../test/helpers/ports.js';

export { freePort };

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
