export * from './head.js';
export * from './iterator.js';
export * from './keys.js';
export { LmdbShardStore, type LmdbStoreOptions, openShardStore, STORE_FORMAT_VERSION } from './lmdb-store.js';
export * from './matchers.js';
export { MemoryShardStore } from './memory-store.js';
export * from './options.js';
export type * from './store.js';
export * from './wal.js';
