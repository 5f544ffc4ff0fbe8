import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores in CI: process-level parallelism beyond that only adds contention.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
