// Vitest configuration: one shared PostgreSQL cluster (globalSetup), test files run one at a time.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Files share one cluster (and failover tests reshape it); 2 cores cannot run them in parallel anyway.
    fileParallelism: false,
    teardownTimeout: 30_000,
    reporters: ['default'],
  },
});
