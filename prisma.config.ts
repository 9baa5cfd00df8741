import { defineConfig } from 'prisma/config';

// DATABASE_URL comes from the environment or from .stack/env (written by `tide stack up`).
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://tide:tide@127.0.0.1:55432/orders' },
});
