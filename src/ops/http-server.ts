import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TideError } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import { log as rootLog, scrubSecrets, type Logger } from '../log.ts';
import { tideMetrics, type TideMetrics } from './metrics.ts';

/**
 * One HTTP server per Tide process (issue 5, "Metrics and health"), on node:http:
 *
 *   GET /metrics   Prometheus text exposition format (prom-client), collectors run at each scrape
 *   GET /healthz   200 while the process runs (liveness)
 *   GET /readyz    200 when connected and making progress, else 503 with a JSON reason (readiness;
 *                  the caller supplies the check, e.g. sourceReadiness / sinkReadiness)
 *
 * (liveness vs readiness as Kubernetes probes use them:
 * https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/;
 * text format: https://prometheus.io/docs/instrumenting/exposition_formats/)
 * plus an extension point: `routes` are asked in order for every other request and return true when
 * they handled it (the live dashboard mounts `/` and `/api/*` there). Bound to 127.0.0.1 by default.
 * Every body the server writes itself goes through `scrubSecrets`, so a reason or error message that
 * quotes a credential does not leak it.
 */
export type Routes = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>;

export interface ReadinessDetail {
  component?: string | undefined;
  ready: boolean;
  reason?: string;
}
export type Readiness =
  | { ready: true; component?: string; checks?: ReadinessDetail[] }
  | { ready: false; component?: string; reason: string; checks?: ReadinessDetail[] };
export type ReadinessCheck = () => Readiness | Promise<Readiness>;

export const HTTP_PORT_ENV = 'TIDE_HTTP_PORT';
export const HTTP_HOST_ENV = 'TIDE_HTTP_HOST';
export const DEFAULT_HTTP_HOST = '127.0.0.1';

export class HttpServerError extends TideError {
  constructor(message: string, options: { cause?: unknown; retriable?: boolean } = {}) {
    super(`http server: ${message}`, options);
    this.name = 'HttpServerError';
  }
}

export interface HttpServerOptions {
  /** Default 127.0.0.1 (only this machine can connect). */
  host?: string;
  /** 0 picks a free port (see `url`). */
  port: number;
  /** Default: the process-wide metrics (`tideMetrics()`). */
  metrics?: TideMetrics;
  /** Readiness; without one, /readyz answers 200 as soon as the server listens. */
  ready?: ReadinessCheck;
  routes?: Routes | Routes[];
  /** When given, the server closes with it (registered as a closer). */
  lifecycle?: Lifecycle;
  log?: Logger;
}

export interface HttpServer {
  readonly host: string;
  readonly port: number;
  /** e.g. `http://127.0.0.1:9465/` */
  readonly url: string;
  close(): Promise<void>;
}

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const host = opts.host ?? DEFAULT_HTTP_HOST;
  const metrics = opts.metrics ?? tideMetrics();
  const routes = opts.routes === undefined ? [] : Array.isArray(opts.routes) ? opts.routes : [opts.routes];
  const log = (opts.log ?? rootLog).child({ component: 'http' });
  const started = Date.now();

  const builtIn: Record<string, (res: ServerResponse) => Promise<void>> = {
    '/metrics': async (res) => {
      const body = scrubSecrets(await metrics.scrape());
      res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
      res.end(res.req.method === 'HEAD' ? undefined : body);
    },
    '/healthz': async (res) => send(res, 200, { status: 'alive', uptimeSeconds: Math.round((Date.now() - started) / 1000) }),
    '/readyz': async (res) => {
      let r: Readiness;
      try {
        r = opts.ready ? await opts.ready() : { ready: true };
      } catch (err) {
        log.warn({ err }, 'readiness check failed');
        r = { ready: false, reason: `the readiness check failed: ${(err as Error).message}` };
      }
      send(res, r.ready ? 200 : 503, r.ready ? { status: 'ready', ...r } : { status: 'not ready', ...r });
    },
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://tide.invalid');
    void handle(req, res, url).catch((err: unknown) => {
      log.error({ err, path: url.pathname }, 'http request failed');
      if (res.headersSent) res.destroy(err as Error);
      else send(res, 500, { error: (err as Error).name ?? 'Error', message: (err as Error).message ?? String(err) });
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const own = builtIn[url.pathname];
    if (own) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        return send(res, 405, { error: 'method', message: `${req.method} is not supported on ${url.pathname}: use GET` });
      }
      return own(res);
    }
    for (const route of routes) if (await route(req, res, url)) return;
    send(res, 404, { error: 'not found', message: `nothing at ${url.pathname}: try /metrics, /healthz or /readyz` });
  }

  await listen(server, host, opts.port);
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  let closing: Promise<void> | undefined;
  const running: HttpServer = {
    host,
    port,
    url,
    close: () => (closing ??= close(server)),
  };
  opts.lifecycle?.onClose(`http server ${url}`, () => running.close());
  log.info({ url, endpoints: ['/metrics', '/healthz', '/readyz'] }, 'http server listening');
  return running;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = scrubSecrets(JSON.stringify(body));
  res.writeHead(status, { ...JSON_HEADERS, 'content-length': String(Buffer.byteLength(text)) });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const fix = `choose another with --http-port or ${HTTP_PORT_ENV} (0 picks a free port)`;
      const why =
        err.code === 'EADDRINUSE'
          ? `port ${port} on ${host} is in use by another process: ${fix}`
          : err.code === 'EACCES'
            ? `not allowed to listen on port ${port} on ${host} (ports below 1024 need privileges): ${fix}`
            : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND'
              ? `${host} is not an address of this machine: set --http-host or ${HTTP_HOST_ENV} (default ${DEFAULT_HTTP_HOST})`
              : `cannot listen on ${host}:${port}: ${err.message}`;
      reject(new HttpServerError(why, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Stop accepting, end idle keep-alive connections now and busy ones after 2 s. */
function close(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(new HttpServerError(`closing failed: ${err.message}`, { cause: err })) : resolve()));
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 2000).unref();
  });
}

/** The port from a flag, else the environment, else `fallback`; an integer 0–65535 (0: any free port). */
export function resolveHttpPort(flag: string | number | undefined, env: NodeJS.ProcessEnv = process.env, fallback = 0): number {
  const [text, from] =
    flag !== undefined
      ? [String(flag), '--http-port']
      : env[HTTP_PORT_ENV] !== undefined
        ? [env[HTTP_PORT_ENV]!, HTTP_PORT_ENV]
        : [undefined, ''];
  if (text === undefined) return fallback;
  const n = Number(text.trim());
  if (text.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535)
    throw new HttpServerError(`${from}=${JSON.stringify(text)} is not a port: use a whole number 0-65535 (0 picks a free port)`);
  return n;
}

/** Ready when every check is; the first one that is not gives the reason (all are reported). */
export function allReady(checks: ReadinessCheck[]): ReadinessCheck {
  return async () => {
    const results = await Promise.all(checks.map((c) => c()));
    const notReady = results.find((r): r is Extract<Readiness, { ready: false }> => !r.ready);
    const detail = results.map((r) => ({ component: r.component, ready: r.ready, ...(r.ready ? {} : { reason: r.reason }) }));
    return notReady
      ? { ...notReady, reason: `${notReady.component ?? ''} ${notReady.reason}`.trim(), checks: detail }
      : { ready: true, checks: detail };
  };
}

/** Whether a value that should keep growing moved within the last `stallMs` (read at each call). */
export class ProgressWatch {
  private last: number | undefined;
  private changedAt = 0;

  constructor(
    private readonly stallMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Record the current value; true when it changed within the window (the first reading counts as a change). */
  observe(value: number): boolean {
    const t = this.now();
    if (value !== this.last) {
      this.last = value;
      this.changedAt = t;
    }
    return t - this.changedAt < this.stallMs;
  }

  get stalledMs(): number {
    return this.now() - this.changedAt;
  }
}
