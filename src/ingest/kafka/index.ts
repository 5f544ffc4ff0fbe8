export * from './client.js';
export * from './config.js';
export * from './formats.js';
export * from './ingester.js';
export * from './kafka-ingester.js';
export * from './topic.js';
export * from './types.js';
