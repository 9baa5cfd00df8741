// Runs `prisma generate` (postinstall). Prisma's CLI insists that a schema engine
// binary exists even though generation never runs it, and the engine download
// host is unreachable on these machines, so point it at an empty placeholder file.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const placeholder = join(import.meta.dirname ?? '.', '..', '.cache', 'prisma-no-engine');
mkdirSync(join(placeholder, '..'), { recursive: true });
if (!existsSync(placeholder)) writeFileSync(placeholder, '');
execFileSync('npx', ['prisma', 'generate'], {
  stdio: 'inherit',
  env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? placeholder },
});
