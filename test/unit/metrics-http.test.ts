import { Agent, request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { Lifecycle } from '../../src/lifecycle.ts';
import { registerSecret } from '../../src/log.ts';
import { allReady, HttpServerError, resolveHttpPort, startHttpServer, type HttpServer, type Readiness } from '../../src/ops/http-server.ts';
import { TideMetrics } from '../../src/ops/metrics.ts';
import { registerSinkMetrics } from '../../src/ops/sink-metrics.ts';

/** The server is Tide's own code on node:http: these run it for real on a free port. */
const servers: HttpServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(opts: Partial<Parameters<typeof startHttpServer>[0]> = {}): Promise<HttpServer> {
  const server = await startHttpServer({ port: 0, metrics: new TideMetrics({ processMetrics: false }), ...opts });
  servers.push(server);
  return server;
}

async function get(url: string, method = 'GET'): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(url, { method });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

describe('the ops HTTP server', () => {
  it('serves /metrics in the Prometheus text format, /healthz, and 404 elsewhere, on 127.0.0.1 by default', async () => {
    const metrics = new TideMetrics({ processMetrics: false });
    registerSinkMetrics(
      {
        name: 'lake',
        stats: () => ({ flushes: 1, messages: 42, bronzeRows: 0, silverChanges: 0, deadLetters: 0, goldRefreshes: 0, newestCommitMs: {} }),
      },
      metrics,
    );
    const server = await start({ metrics });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/`);
    expect(server.port).toBeGreaterThan(0);
    const m = await get(`${server.url}metrics`);
    expect(m.status).toBe(200);
    expect(m.type).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(m.body).toContain('# TYPE tide_sink_messages_total counter');
    expect(m.body).toContain('tide_sink_messages_total{connector="lake"} 42');
    const h = await get(`${server.url}healthz`);
    expect(h.status).toBe(200);
    expect(JSON.parse(h.body)).toMatchObject({ status: 'alive' });
    const missing = await get(`${server.url}nope`);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body).message).toBe('nothing at /nope: try /metrics, /healthz or /readyz');
    expect((await get(`${server.url}metrics`, 'POST')).status).toBe(405);
    const head = await get(`${server.url}healthz`, 'HEAD');
    expect([head.status, head.body]).toEqual([200, '']);
  });

  it('/readyz is 503 with the JSON reason until the readiness check passes, then 200', async () => {
    let state: Readiness = { ready: false, component: 'sink lake', reason: 'its consumer group is Empty with 0 member(s)' };
    const server = await start({ ready: allReady([() => ({ ready: true, component: 'source s' }), () => state]) });
    const before = await get(`${server.url}readyz`);
    expect(before.status).toBe(503);
    expect(JSON.parse(before.body)).toEqual({
      status: 'not ready',
      ready: false,
      component: 'sink lake',
      reason: 'sink lake its consumer group is Empty with 0 member(s)',
      checks: [
        { component: 'source s', ready: true },
        { component: 'sink lake', ready: false, reason: 'its consumer group is Empty with 0 member(s)' },
      ],
    });
    state = { ready: true, component: 'sink lake' };
    const after = await get(`${server.url}readyz`);
    expect(after.status).toBe(200);
    expect(JSON.parse(after.body)).toMatchObject({ status: 'ready', ready: true });
  });

  it('a readiness check that throws is a 503 with its message, and secrets in it are scrubbed', async () => {
    registerSecret('Pa55-readyz-secret');
    const server = await start({
      ready: () => {
        throw new Error('cannot reach http://tide:Pa55-readyz-secret@127.0.0.1:1/ (password Pa55-readyz-secret)');
      },
    });
    const r = await get(`${server.url}readyz`);
    expect(r.status).toBe(503);
    expect(r.body).not.toContain('Pa55-readyz-secret');
    expect(JSON.parse(r.body).reason).toBe(
      'the readiness check failed: cannot reach http://tide:[redacted]@127.0.0.1:1/ (password [redacted])',
    );
  });

  it('mounts extension routes (the dashboard) after its own, and turns a failing route into a 500', async () => {
    const seen: string[] = [];
    const server = await start({
      routes: [
        async (_req, res, url) => {
          seen.push(url.pathname);
          if (url.pathname === '/api/pipeline') {
            res.writeHead(200, { 'content-type': 'application/json' }).end('{"sources":[]}');
            return true;
          }
          if (url.pathname === '/api/broken') throw new Error('the lake is gone');
          return false;
        },
      ],
    });
    expect(await get(`${server.url}api/pipeline?x=1`)).toMatchObject({ status: 200, body: '{"sources":[]}' });
    const broken = await get(`${server.url}api/broken`);
    expect(broken.status).toBe(500);
    expect(JSON.parse(broken.body)).toEqual({ error: 'Error', message: 'the lake is gone' });
    await get(`${server.url}metrics`);
    expect(seen).toEqual(['/api/pipeline', '/api/broken']); // built-in paths never reach the routes
  });

  it('a port in use is a typed error that says how to pick another', async () => {
    const first = await start();
    const err = await startHttpServer({ port: first.port, metrics: new TideMetrics({ processMetrics: false }) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpServerError);
    expect((err as Error).message).toBe(
      `http server: port ${first.port} on 127.0.0.1 is in use by another process: choose another with --http-port or TIDE_HTTP_PORT (0 picks a free port)`,
    );
  });

  it('closes with the Lifecycle, including idle keep-alive connections', async () => {
    const lifecycle = new Lifecycle();
    const server = await startHttpServer({ port: 0, metrics: new TideMetrics({ processMetrics: false }), lifecycle });
    // A keep-alive connection that stays open after its response.
    const agent = new Agent({ keepAlive: true });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${server.url}healthz`, { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(200);
    expect(Object.values(agent.freeSockets).flat()).toHaveLength(1); // the connection stays open
    const started = Date.now();
    await lifecycle.shutdown();
    expect(Date.now() - started).toBeLessThan(1500);
    await expect(fetch(`${server.url}healthz`)).rejects.toThrow();
    agent.destroy();
  });
});

describe('resolveHttpPort', () => {
  it('takes the flag, else TIDE_HTTP_PORT, else the fallback; refuses what is not a port', () => {
    expect(resolveHttpPort('9465', { TIDE_HTTP_PORT: '1' })).toBe(9465);
    expect(resolveHttpPort(undefined, { TIDE_HTTP_PORT: '0' })).toBe(0);
    expect(resolveHttpPort(undefined, {}, 9000)).toBe(9000);
    expect(() => resolveHttpPort('http', {})).toThrow(
      'http server: --http-port="http" is not a port: use a whole number 0-65535 (0 picks a free port)',
    );
    expect(() => resolveHttpPort(undefined, { TIDE_HTTP_PORT: '70000' })).toThrow(/TIDE_HTTP_PORT="70000" is not a port/);
  });
});
