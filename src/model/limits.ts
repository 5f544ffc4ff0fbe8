/** Data-model limits. Changing one changes what the cluster accepts: document it in docs/model.md. */
export const MAX_TAGS = 64;
export const MAX_NAME_BYTES = 256;
export const MAX_VALUE_BYTES = 256;
/** Timestamps are int64 milliseconds since the Unix epoch, from 1970-01-01 to 9999-12-31T23:59:59.999Z. */
export const MIN_TIMESTAMP_MS = 0;
export const MAX_TIMESTAMP_MS = 253_402_300_799_999;
/** Tag names starting with this prefix are reserved for Tidemark (e.g. `__name__` in matchers). */
export const RESERVED_TAG_PREFIX = '__';
