import { describe, expect, it } from 'vitest';
import { MemoryLogStorage } from '../../src/raft/storage-memory.js';
import { ent, logStorageSuite } from './storage-suite.js';

logStorageSuite('memory', {
  create: async (conf) => new MemoryLogStorage({ conf }),
});

describe('MemoryLogStorage (synchronous API)', () => {
  it('applies saveSync before returning and save() resolves immediately', async () => {
    const s = new MemoryLogStorage();
    s.saveSync({ term: 1, vote: 'a', commit: 0 }, [ent(1, 1), ent(2, 1)]);
    expect(s.lastIndex()).toBe(2);
    const p = s.save(undefined, [ent(3, 1)]);
    // Visible before the promise is awaited: the deterministic simulation relies on this.
    expect(s.lastIndex()).toBe(3);
    await p;
    s.compactSync(2, { voters: ['a'], learners: [] });
    expect(s.firstIndex()).toBe(3);
    await s.close();
    await expect(s.save(undefined, [ent(4, 1)])).rejects.toMatchObject({ code: 'CLOSED' });
  });
});
