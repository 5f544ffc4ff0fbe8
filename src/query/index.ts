/** The query engine: model and planning, per-shard execution, mergeable partials, coordinator, OpenTSDB API. */
export * from './codec.js';
export * from './engine.js';
export * from './executor.js';
export * from './model.js';
export * from './opentsdb.js';
export * from './partial.js';
export * from './sketch.js';
