import { defineConfig } from 'vitest/config';

// `npm test` runs both projects. Integration tests need the local stack (`npm run stack:up`).
export default defineConfig({
  test: {
    projects: [
      {
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], environment: 'node' },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/support/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Two cores: files that each drive Postgres, Kafka and the registry run one at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
