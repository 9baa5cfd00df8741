import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { StackServiceError } from '../errors.ts';
import { PORT_ENV } from './context.ts';
import { portOpen } from './process.ts';
import type { StackContext, StackPorts, StackService } from './service.ts';

/**
 * Before `stack up` starts a service, wait (bounded) until each of its ports can be bound.
 *
 * The default ports (55432, 59092, 58081, 59000, ...) lie in Linux's ephemeral range (32768-60999), so a
 * port can be busy for a while without anyone listening on it: a client retrying a stopped broker may
 * connect to itself (TCP simultaneous open: source port = destination port) and leave the port in
 * TIME-WAIT for about a minute; any outgoing connection may also get it as its source port. The services
 * then fail to bind ("Address already in use") although nothing serves there. Such a port frees itself,
 * so the start waits for it; one that stays busy fails with an error naming the port, the variable that
 * moves it and how to see who holds it. The default port numbers stay (README, connectors, compose).
 */
export const SERVICE_PORTS: Record<StackService['name'], (keyof StackPorts)[]> = {
  postgres: ['postgres'],
  kafka: ['kafka', 'kafkaController', 'kafkaSaslSsl', 'kafkaMtls'],
  registry: ['registry'],
  azurite: ['azurite'],
  s3: ['s3'],
};

/** How long a busy port may take to free itself (TIME-WAIT lasts 60 s on Linux). */
export const PORT_WAIT_MS = 90_000;

/**
 * Whether a listener can bind 127.0.0.1:port right now. Node's listen sets SO_REUSEADDR on Linux, as
 * Postgres, the JVM's server sockets and Go's listeners do, so this sees the port as the services will.
 */
export function portBindable(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * Resolve once every port of `service` can be bound; say once per busy port which port and why; after
 * `timeoutMs`, reject with a StackServiceError naming the port, its variable and `ss -tanp | grep <port>`.
 */
export async function waitForServicePorts(
  ctx: StackContext,
  service: Pick<StackService, 'name' | 'logPath'>,
  timeoutMs = PORT_WAIT_MS,
  intervalMs = 500,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const key of SERVICE_PORTS[service.name]) {
    const port = ctx.ports[key];
    let said = false;
    while (!(await portBindable(port))) {
      const listening = await portOpen(port);
      const why = listening
        ? 'another process listens on it'
        : 'no one listens on it, likely a connection in TIME-WAIT that used it as its source port, e.g. a client that connected to itself';
      if (Date.now() >= deadline) {
        throw new StackServiceError(
          service.name,
          service.logPath(ctx),
          `port ${port} (127.0.0.1) is still in use after ${Math.round(timeoutMs / 1000)} s: ${why}. ` +
            `See who holds it with \`ss -tanp | grep ${port}\`, stop it, or move the service with ${PORT_ENV[key]}=<another port>`,
        );
      }
      if (!said) {
        ctx.say(
          `${service.name}: port ${port} is in use: ${why}; waiting up to ${Math.round(timeoutMs / 1000)} s for it to free (who holds it: \`ss -tanp | grep ${port}\`; ${PORT_ENV[key]} moves it)`,
        );
        said = true;
      }
      await sleep(intervalMs);
    }
    if (said) ctx.say(`${service.name}: port ${port} is free`);
  }
}
