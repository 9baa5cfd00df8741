import { TideError } from '../errors.ts';

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

export class HttpSchemaRegistry implements SchemaRegistry {
  private readonly ids = new Map<string, number>();
  /** The URL without credentials: what requests go to and messages show. */
  private readonly baseUrl: string;
  /** `user:password@` in the URL becomes HTTP basic auth (fetch refuses URLs with credentials, and they must never reach a message). */
  private readonly authorization: string | undefined;

  constructor(url: string) {
    const u = new URL(url);
    this.authorization =
      u.username || u.password
        ? `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`
        : undefined;
    u.username = '';
    u.password = '';
    this.baseUrl = u.toString().replace(/\/$/, '');
  }

  private async call(subject: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl.replace(/\/$/, '')}${path}`, {
        method,
        headers: {
          'content-type': CONTENT_TYPE,
          accept: CONTENT_TYPE,
          ...(this.authorization ? { authorization: this.authorization } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
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
    return { status: res.status, json };
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
