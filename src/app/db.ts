import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/prisma/client.ts';

export { PrismaClient };
export type { Prisma } from './generated/prisma/client.ts';

/**
 * The order app's Prisma Client. Prisma 7 runs through the `pg` driver adapter,
 * with no native query engine.
 */
export function createPrisma(databaseUrl: string, poolSize = 10): PrismaClient {
  const adapter = new PrismaPg({ connectionString: databaseUrl, max: poolSize });
  return new PrismaClient({ adapter });
}
