export * from './concurrency.js';
export * from './errors.js';
export * from './guard.js';
export * from './metrics.js';
export * from './series-limiter.js';
export * from './token-bucket.js';
