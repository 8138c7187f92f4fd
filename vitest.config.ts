// Vitest configuration: unit tests (pure logic, no PostgreSQL) first, then integration tests on one shared PostgreSQL cluster (globalSetup); one file at a time.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    reporters: ['default'],
    // Integration files share one cluster (and failover tests reshape it); 2 cores cannot run them in parallel anyway.
    // Vitest sets this for the whole run only, so unit files run one at a time too (a few seconds each).
    fileParallelism: false,
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/global-setup.ts'],
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
