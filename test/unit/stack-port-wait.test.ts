import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { StackServiceError } from '../../src/errors.ts';
import { stackContext } from '../../src/stack/context.ts';
import { portBindable, waitForServicePorts } from '../../src/stack/port-wait.ts';

/**
 * `stack up` waits for a service's busy port instead of failing (src/stack/port-wait.ts). Real loopback
 * sockets: a listener holds a port, the wait sees it busy, says so once, and goes on when it is released;
 * a port held past the bound fails with the port, its variable and the `ss` command. No timing asserted.
 */
const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A listener on a free loopback port (the port the kernel picks). */
async function hold(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer();
  servers.push(server);
  await new Promise<void>((r) => server.listen({ port: 0, host: '127.0.0.1' }, r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

function context(port: number, said: string[]) {
  return stackContext({ TIDE_PG_PORT: String(port), TIDE_STACK_DIR: '/tmp/tide-port-wait-test' }, (m) => said.push(m));
}
const postgres = { name: 'postgres' as const, logPath: () => '/tmp/tide-port-wait-test/postgres.log' };

describe('stack up: waiting for a busy port', () => {
  it('waits while the port is held, says once which port and why, and goes on once it is released', async () => {
    const { server, port } = await hold();
    expect(await portBindable(port)).toBe(false);
    const said: string[] = [];
    let released = false;
    // Released once the wait has seen the port busy (it says so first), not after a set time.
    const say = (m: string) => {
      said.push(m);
      if (!released) {
        released = true;
        server.close();
      }
    };
    await waitForServicePorts({ ...context(port, said), say }, postgres, 60_000, 50);
    expect(released).toBe(true);
    expect(said[0]).toContain(`postgres: port ${port} is in use: another process listens on it`);
    expect(said[0]).toContain(`ss -tanp | grep ${port}`);
    expect(said[0]).toContain('TIDE_PG_PORT');
    expect(said.filter((m) => m.includes('is in use'))).toHaveLength(1);
    expect(said.at(-1)).toBe(`postgres: port ${port} is free`);
    expect(await portBindable(port)).toBe(true);
  });

  it('goes on at once, silently, when the port is free', async () => {
    const { server, port } = await hold();
    await new Promise((r) => server.close(r));
    const said: string[] = [];
    await waitForServicePorts(context(port, said), postgres, 60_000, 50);
    expect(said).toEqual([]);
  });

  it('fails with the port, the variable that moves it and the ss command when the port stays busy', async () => {
    const { port } = await hold();
    const said: string[] = [];
    const err = await waitForServicePorts(context(port, said), postgres, 300, 50).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StackServiceError);
    const message = (err as Error).message;
    expect(message).toContain(`port ${port} (127.0.0.1) is still in use`);
    expect(message).toContain('another process listens on it');
    expect(message).toContain(`ss -tanp | grep ${port}`);
    expect(message).toContain('TIDE_PG_PORT=<another port>');
    expect(said).toHaveLength(1);
  });
});
