import { MemoryShardStore } from '../../src/storage/index.js';
import { describeShardStore } from './store-suite.js';

describeShardStore('MemoryShardStore', {
  create: async (options) => new MemoryShardStore(options),
  reopen: async () => {
    throw new Error('the memory store is not persistent');
  },
});
