import { readFileSync } from 'node:fs';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';
import { ConfigError, ConnectionError, TideError } from '../errors.ts';

/**
 * The narrow slice of Confluent's Schema Registry REST API that Tide uses.
 * Plain fetch rather than @kafkajs/confluent-schema-registry: Tide must ask
 * "is this compatible?" before registering (the library only registers), and
 * the library's register() trips over Apicurio's answer to GET /config/<subject>.
 */
export interface SchemaRegistry {
  /** True if `schema` may be registered under `subject` (true when the subject is new). */
  isCompatible(subject: string, schema: object): Promise<{ compatible: boolean; messages: string[] }>;
  /** Register (or find) `schema` under `subject`; returns its global id. */
  register(subject: string, schema: object): Promise<number>;
  /** The latest schema registered under `subject`, if any. */
  latest(subject: string): Promise<object | undefined>;
  /** The schema with global id `id` (what a consumer needs to read a framed message). */
  schemaById(id: number): Promise<object>;
}

export class SchemaRegistryError extends TideError {
  constructor(
    readonly subject: string,
    message: string,
    options: { cause?: unknown; retriable?: boolean } = {},
  ) {
    super(`schema registry, subject ${subject}: ${message}`, options);
    this.name = 'SchemaRegistryError';
  }
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';
/** Where Apicurio Registry serves Confluent's API: the most common mistake is a URL without it. */
const APICURIO_CCOMPAT_PATH = '/apis/ccompat/v7';

/**
 * How to authenticate, as Confluent's clients are configured (the connector keys
 * `schema.registry.basic.auth.credentials.source`, `schema.registry.basic.auth.user.info`,
 * `schema.registry.bearer.auth.token`, `schema.registry.ssl.ca.location`).
 */
export interface RegistryAuthOptions {
  /** `USER_INFO`: basic auth from `basicAuthUserInfo`; `URL`: from `user:password@` in the URL. Unset: whichever is given. */
  basicAuthCredentialsSource?: 'USER_INFO' | 'URL';
  /** `key:secret` (e.g. a Confluent Cloud Schema Registry API key and its secret). */
  basicAuthUserInfo?: string;
  bearerToken?: string;
  /** A PEM file with the CA(s) to trust for an https registry, instead of Node's built-in roots. */
  caLocation?: string;
}

/** The registry client for a source or sink connector's configuration. */
export function registryFromConfig(config: {
  'schema.registry.url': string;
  'schema.registry.basic.auth.credentials.source'?: 'USER_INFO' | 'URL';
  'schema.registry.basic.auth.user.info'?: string;
  'schema.registry.bearer.auth.token'?: string;
  'schema.registry.ssl.ca.location'?: string;
}): HttpSchemaRegistry {
  return new HttpSchemaRegistry(config['schema.registry.url'], {
    basicAuthCredentialsSource: config['schema.registry.basic.auth.credentials.source'],
    basicAuthUserInfo: config['schema.registry.basic.auth.user.info'],
    bearerToken: config['schema.registry.bearer.auth.token'],
    caLocation: config['schema.registry.ssl.ca.location'],
  });
}

/**
 * Requests go through undici (the library behind Node's own fetch) rather than the global fetch,
 * because only undici's Agent takes a CA for one client (`connect.ca`) without touching the
 * process-wide trust store.
 */
export class HttpSchemaRegistry implements SchemaRegistry {
  private readonly ids = new Map<string, number>();
  /** The URL without credentials: what requests go to and messages show. */
  private readonly baseUrl: string;
  /** Basic or bearer; never in a message. (fetch refuses URLs with credentials anyway.) */
  private readonly authorization: string | undefined;
  private readonly authKind: 'none' | 'basic' | 'bearer';
  private readonly dispatcher: Dispatcher | undefined;

  constructor(url: string, auth: RegistryAuthOptions = {}) {
    const u = new URL(url);
    const fromUrl = u.username || u.password ? `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}` : undefined;
    u.username = '';
    u.password = '';
    this.baseUrl = u.toString().replace(/\/$/, '');
    const source = auth.basicAuthCredentialsSource;
    const userInfo = source === 'URL' ? fromUrl : source === 'USER_INFO' ? auth.basicAuthUserInfo : (auth.basicAuthUserInfo ?? fromUrl);
    if (source === 'URL' && fromUrl === undefined)
      throw new ConfigError(
        'schema.registry.basic.auth.credentials.source',
        `is URL, but schema.registry.url (${this.baseUrl}) carries no user:password@; put them in the URL or use USER_INFO`,
      );
    if (auth.bearerToken) {
      this.authorization = `Bearer ${auth.bearerToken}`;
      this.authKind = 'bearer';
    } else if (userInfo !== undefined) {
      this.authorization = `Basic ${Buffer.from(userInfo).toString('base64')}`;
      this.authKind = 'basic';
    } else {
      this.authorization = undefined;
      this.authKind = 'none';
    }
    if (auth.caLocation) {
      let ca: string;
      try {
        ca = readFileSync(auth.caLocation, 'utf8');
      } catch (err) {
        throw new ConfigError('schema.registry.ssl.ca.location', `cannot read ${auth.caLocation}: ${(err as Error).message}`);
      }
      this.dispatcher = new Agent({ connect: { ca } });
    }
  }

  private async call(subject: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    let res: Awaited<ReturnType<typeof undiciFetch>>;
    try {
      res = await undiciFetch(`${this.baseUrl.replace(/\/$/, '')}${path}`, {
        method,
        headers: {
          'content-type': CONTENT_TYPE,
          accept: CONTENT_TYPE,
          ...(this.authorization ? { authorization: this.authorization } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
    } catch (err) {
      const tls = tlsProblem(err);
      if (tls)
        throw new ConnectionError(
          'schema registry',
          this.baseUrl,
          `the TLS handshake failed: ${tls}`,
          "Set schema.registry.ssl.ca.location to a PEM file with the CA that signed the registry's certificate, and check that the URL's host name is one the certificate names",
          { cause: err, code: 'tls' },
        );
      throw new SchemaRegistryError(
        subject,
        `cannot reach ${this.baseUrl}: ${(err as Error).message}. Is the registry up (tide stack status)?`,
        {
          cause: err,
          retriable: true,
        },
      );
    }
    const text = await res.text();
    let json: unknown = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    this.checkAccess(res.status, method, path, json);
    return { status: res.status, json };
  }

  /**
   * Answers that no dead-letter topic can fix end the connector here, as a ConnectionError: refused
   * credentials (401, 403), rate limiting (429, retriable: retried for errors.retry.timeout first), and a URL that does not serve Confluent's API
   * (a 404 without Confluent's `error_code`: a registry's own 404s, such as an unknown subject or
   * schema id, always carry one).
   */
  private checkAccess(status: number, method: string, path: string, json: unknown): void {
    if (status === 401) {
      throw new ConnectionError(
        'schema registry',
        this.baseUrl,
        this.authKind === 'none'
          ? 'the registry requires authentication (HTTP 401 Unauthorized) and none is configured'
          : `the registry refused the ${this.authKind === 'basic' ? 'basic-auth credentials' : 'bearer token'} (HTTP 401 Unauthorized)`,
        this.authKind === 'bearer'
          ? 'Check schema.registry.bearer.auth.token (is it expired?)'
          : 'Set schema.registry.basic.auth.credentials.source to USER_INFO and schema.registry.basic.auth.user.info to key:secret (the registry API key and secret), or schema.registry.bearer.auth.token',
        { code: 'auth' },
      );
    }
    if (status === 403) {
      throw new ConnectionError(
        'schema registry',
        this.baseUrl,
        `the credentials are not allowed to ${method} ${path.split('?')[0]} (HTTP 403 Forbidden)`,
        'Grant the API key read access to the subjects (the source also needs write access to register schemas)',
        { code: 'forbidden' },
      );
    }
    if (status === 429) {
      // Confluent's own client retries 429 as it does 5xx (RestService's retriable codes); so does Tide, for
      // errors.retry.timeout, then stops. Never a reason to dead-letter a message.
      throw new ConnectionError(
        'schema registry',
        this.baseUrl,
        `${method} ${path.split('?')[0]} answered HTTP 429 Too Many Requests: the registry is rate-limiting this client`,
        "Wait, or raise the registry's request quota (Confluent Cloud: the Schema Registry cluster's limits); Tide retries for errors.retry.timeout",
        { code: 'rate-limited', retriable: true },
      );
    }
    if (status === 404 && !hasConfluentErrorCode(json)) {
      const suggestion = this.baseUrl.endsWith(APICURIO_CCOMPAT_PATH) ? '' : ` (e.g. ${this.baseUrl}${APICURIO_CCOMPAT_PATH})`;
      throw new ConnectionError(
        'schema registry',
        this.baseUrl,
        `${method} ${path.split('?')[0]} answered HTTP 404 without a Schema Registry error code: this URL does not serve Confluent's Schema Registry API`,
        `Check schema.registry.url: for Apicurio Registry it ends in ${APICURIO_CCOMPAT_PATH}${suggestion}; for Confluent's registry it is the registry's base URL`,
        { code: 'not-a-registry' },
      );
    }
  }

  async isCompatible(subject: string, schema: object): Promise<{ compatible: boolean; messages: string[] }> {
    const path = `/compatibility/subjects/${encodeURIComponent(subject)}/versions/latest?verbose=true`;
    const { status, json } = await this.call(subject, 'POST', path, { schemaType: 'AVRO', schema: JSON.stringify(schema) });
    if (status === 404) return { compatible: true, messages: [] }; // no version yet
    if (status !== 200)
      throw new SchemaRegistryError(subject, `compatibility check failed with HTTP ${status}: ${JSON.stringify(json)}`, {
        retriable: status >= 500,
      });
    const body = json as { is_compatible: boolean; messages?: string[] };
    return { compatible: body.is_compatible, messages: body.messages ?? [] };
  }

  async latest(subject: string): Promise<object | undefined> {
    const { status, json } = await this.call(subject, 'GET', `/subjects/${encodeURIComponent(subject)}/versions/latest`);
    if (status === 404) return undefined;
    if (status !== 200)
      throw new SchemaRegistryError(subject, `reading the latest version failed with HTTP ${status}: ${JSON.stringify(json)}`, {
        retriable: status >= 500,
      });
    return JSON.parse((json as { schema: string }).schema) as object;
  }

  async schemaById(id: number): Promise<object> {
    const subject = `(schema id ${id})`;
    const { status, json } = await this.call(subject, 'GET', `/schemas/ids/${id}`);
    if (status === 404)
      throw new SchemaRegistryError(subject, 'no such schema: the message was written against another registry, or the schema was deleted');
    if (status !== 200)
      throw new SchemaRegistryError(subject, `reading the schema failed with HTTP ${status}: ${JSON.stringify(json)}`, {
        retriable: status >= 500,
      });
    return JSON.parse((json as { schema: string }).schema) as object;
  }

  async register(subject: string, schema: object): Promise<number> {
    const text = JSON.stringify(schema);
    const cacheKey = `${subject}\u0000${text}`;
    const cached = this.ids.get(cacheKey);
    if (cached !== undefined) return cached;
    const { status, json } = await this.call(subject, 'POST', `/subjects/${encodeURIComponent(subject)}/versions`, {
      schemaType: 'AVRO',
      schema: text,
    });
    if (status === 409) {
      throw new SchemaRegistryError(subject, `the registry refused the new schema as incompatible: ${JSON.stringify(json)}`);
    }
    if (status !== 200)
      throw new SchemaRegistryError(subject, `register failed with HTTP ${status}: ${JSON.stringify(json)}`, { retriable: status >= 500 });
    const id = (json as { id: number }).id;
    this.ids.set(cacheKey, id);
    return id;
  }
  /** The registry's base URL (without credentials). */
  get url(): string {
    return this.baseUrl;
  }

  /**
   * One request with this client's credentials and TLS settings to `url` (absolute, e.g. Apicurio's native API
   * beside /apis/ccompat/v7). Refused credentials are ConnectionErrors as for every call; the rest is the caller's.
   */
  async request(method: string, url: string, body?: unknown, contentType = CONTENT_TYPE): Promise<{ status: number; json: unknown }> {
    let res: Awaited<ReturnType<typeof undiciFetch>>;
    try {
      res = await undiciFetch(url, {
        method,
        headers: { 'content-type': contentType, accept: contentType, ...(this.authorization ? { authorization: this.authorization } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
    } catch (err) {
      throw new ConnectionError(
        'schema registry',
        this.baseUrl,
        `${method} ${url} failed: ${(err as Error).message}`,
        'Is the registry up (tide stack status)?',
        {
          cause: err,
          retriable: true,
        },
      );
    }
    const text = await res.text();
    let json: unknown = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    if (res.status === 401 || res.status === 403) this.checkAccess(res.status, method, new URL(url).pathname, json);
    return { status: res.status, json };
  }
}

function hasConfluentErrorCode(json: unknown): boolean {
  return typeof json === 'object' && json !== null && typeof (json as { error_code?: unknown }).error_code === 'number';
}

/** The TLS reason of a failed fetch (undici wraps the socket error in `cause`), or undefined. */
function tlsProblem(err: unknown): string | undefined {
  for (let e = err as { code?: string; message?: string; cause?: unknown } | undefined, depth = 0; e && depth < 5; depth++) {
    if (typeof e.code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|HOSTNAME|ALTNAME/i.test(e.code))
      return `${e.code}: ${e.message ?? ''}`.trim();
    e = e.cause as typeof e;
  }
  return undefined;
}

/**
 * Confluent's wire format written in one pass: magic byte 0, 4-byte big-endian schema id, then the Avro
 * body encoded straight behind it into a shared 1 MB slab; the result is a view of the slab. This saves
 * two allocations and two copies per key and per value (avsc's toBuffer + a framing copy), which showed in
 * the source's profile. A view keeps its slab alive; slabs are never rewritten.
 */
const SLAB_SIZE = 1 << 20;
let slab = Buffer.allocUnsafe(SLAB_SIZE);
let slabPos = 0;

export function encodeFramed(
  type: { encode(value: unknown, buf: Buffer, pos: number): number; toBuffer(value: unknown): Buffer },
  schemaId: number,
  value: unknown,
): Buffer {
  if (schemaId < 0) throw new Error('schema not registered yet');
  if (SLAB_SIZE - slabPos < 1024) {
    slab = Buffer.allocUnsafe(SLAB_SIZE);
    slabPos = 0;
  }
  const start = slabPos;
  slab[start] = 0;
  slab.writeUInt32BE(schemaId, start + 1);
  const end = type.encode(value, slab, start + 5); // negative when it did not fit
  if (end > 0) {
    slabPos = end;
    return slab.subarray(start, end);
  }
  slabPos = SLAB_SIZE;
  return confluentFrame(schemaId, type.toBuffer(value));
}

/** Confluent's wire format: magic byte 0, 4-byte big-endian schema id, then the Avro binary. */
export function confluentFrame(schemaId: number, avro: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + avro.length);
  out[0] = 0;
  out.writeUInt32BE(schemaId, 1);
  avro.copy(out, 5);
  return out;
}
