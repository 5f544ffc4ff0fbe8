export * from './intern.js';
export * from './limits.js';
export * from './series.js';
export * from './series-cache.js';
export * from './shard.js';
export * from './validate.js';
