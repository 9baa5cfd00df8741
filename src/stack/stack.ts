import { mkdirSync, writeFileSync } from 'node:fs';
import { postgresService } from './postgres.ts';
import { kafkaService } from './kafka.ts';
import { registryService } from './registry.ts';
import { azuriteService } from './azurite.ts';
import { s3Service } from './s3.ts';
import { stackEnvPath } from './context.ts';
import { ensureStackCerts } from './certs.ts';
import { waitForServicePorts } from './port-wait.ts';
import type { StackContext, StackService } from './service.ts';

/**
 * Start order matters only for readability; the services are independent. Azurite is the lake's
 * Azure Blob Storage, s3 (versitygw) the lake's S3.
 */
export const SERVICES: readonly StackService[] = [postgresService, kafkaService, registryService, azuriteService, s3Service];
const READY_TIMEOUT_MS = 180_000;

/** Install, start and wait for every service not already up; then write `.stack/env`. Idempotent. */
export async function stackUp(ctx: StackContext): Promise<void> {
  mkdirSync(ctx.stackDir, { recursive: true });
  // The secured listeners (Kafka SASL_SSL and mutual TLS, Postgres TLS, S3) use the stack's own throwaway CA.
  ensureStackCerts(ctx);
  // Installs run one at a time (apt and Maven both print), starts overlap: JVM start-up dominates.
  for (const service of SERVICES) await service.install(ctx);
  await Promise.all(
    SERVICES.map(async (service) => {
      const started = Date.now();
      if (await service.isUp(ctx)) {
        await service.ensure?.(ctx);
        ctx.say(`${service.name}: already up`);
        return;
      }
      // A port busy for a short while (TIME-WAIT after a self-connect: the defaults are ephemeral ports) must not fail the start.
      await waitForServicePorts(ctx, service);
      ctx.say(`${service.name}: starting ...`);
      await service.start(ctx);
      await service.waitReady(ctx, READY_TIMEOUT_MS);
      ctx.say(`${service.name}: ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }),
  );
  writeStackEnv(ctx);
}

export function writeStackEnv(ctx: StackContext): void {
  const env = Object.assign({}, ...SERVICES.map((s) => s.env(ctx))) as Record<string, string>;
  const body = Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n');
  writeFileSync(stackEnvPath(ctx), `# Written by \`tide stack up\`. Read by the CLI and the tests.\n${body}\n`);
}

export async function stackDown(ctx: StackContext): Promise<void> {
  for (const service of [...SERVICES].reverse()) {
    ctx.say(`${service.name}: stopping`);
    await service.stop(ctx);
  }
}

export interface ServiceStatus {
  name: string;
  up: boolean;
  port: number;
  log: string;
  /** Further listeners of the service (Kafka's SASL_SSL and mTLS), each checked for real. */
  listeners?: { name: string; address: string; up: boolean; detail: string }[];
}

export async function stackStatus(ctx: StackContext): Promise<ServiceStatus[]> {
  const ports = {
    postgres: ctx.ports.postgres,
    kafka: ctx.ports.kafka,
    registry: ctx.ports.registry,
    azurite: ctx.ports.azurite,
    s3: ctx.ports.s3,
  };
  return Promise.all(
    SERVICES.map(async (s) => {
      const up = await s.isUp(ctx);
      const listeners = s.listeners && up ? await s.listeners(ctx) : undefined;
      return { name: s.name, up, port: ports[s.name], log: s.logPath(ctx), ...(listeners ? { listeners } : {}) };
    }),
  );
}
