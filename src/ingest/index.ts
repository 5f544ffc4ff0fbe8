export * from './batch.js';
export * from './batch-codec.js';
export * from './line-protocol.js';
export * from './opentsdb.js';
