import { TideError } from '../errors.ts';
import type { HttpSchemaRegistry } from './schema-registry.ts';

/**
 * A subject's own compatibility level, set so that it really holds, on Confluent's Schema Registry and on
 * Apicurio Registry.
 *
 * Confluent: `PUT /config/<subject> {"compatibility": L}` sets it, `DELETE /config/<subject>` returns the
 * subject to the registry's default.
 *
 * Apicurio (2.x and 3.x, measured on 3.0.9): its Confluent API answers the same PUT with `NONE` but, for
 * NONE, deletes the artifact's COMPATIBILITY rule instead of storing one, so the subject falls back to the
 * global rule (BACKWARD on Tide's stack) and checks go on failing. Its native API stores a rule with
 * config NONE, which overrides the global rule: `POST|PUT /apis/registry/v3/groups/default/artifacts/<subject>/rules`
 * (v2 has the same shape). The Confluent API keeps subjects in the group `default`.
 */
export const COMPATIBILITY_LEVELS = [
  'NONE',
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
] as const;
export type CompatibilityLevel = (typeof COMPATIBILITY_LEVELS)[number];

export type RegistryKind = { kind: 'apicurio'; api: string; version: string } | { kind: 'confluent' };

const CCOMPAT = /\/apis\/ccompat\/v\d+$/;

/** Which registry answers at `registry.url`: Apicurio (its native API beside the Confluent one) or Confluent's. */
export async function detectRegistry(registry: HttpSchemaRegistry): Promise<RegistryKind> {
  const root = registry.url.replace(CCOMPAT, '');
  for (const v of ['v3', 'v2']) {
    const api = `${root}/apis/registry/${v}`;
    const { status, json } = await registry.request('GET', `${api}/system/info`, undefined, 'application/json');
    const name = (json as { name?: unknown } | undefined)?.name;
    if (status === 200 && typeof name === 'string' && /apicurio/i.test(name))
      return { kind: 'apicurio', api, version: String((json as { version?: unknown }).version ?? v) };
  }
  return { kind: 'confluent' };
}

export function describeRegistry(r: RegistryKind): string {
  return r.kind === 'apicurio' ? `Apicurio Registry ${r.version}` : 'Confluent Schema Registry API';
}

/** Whether `subject` has any version (nothing to relax otherwise). */
export async function subjectExists(registry: HttpSchemaRegistry, subject: string): Promise<boolean> {
  const { status } = await registry.request('GET', `${registry.url}/subjects/${encodeURIComponent(subject)}/versions`);
  return status === 200;
}

const apicurioRule = (r: { api: string }, subject: string) => `${r.api}/groups/default/artifacts/${encodeURIComponent(subject)}/rules`;

function failed(subject: string, what: string, status: number, json: unknown): TideError {
  return new TideError(`schema registry, subject ${subject}: ${what} answered HTTP ${status}: ${JSON.stringify(json)}`);
}

/** The subject's own level, or undefined when it follows the registry's default. */
export async function subjectLevel(registry: HttpSchemaRegistry, kind: RegistryKind, subject: string): Promise<string | undefined> {
  if (kind.kind === 'apicurio') {
    const { status, json } = await registry.request('GET', `${apicurioRule(kind, subject)}/COMPATIBILITY`, undefined, 'application/json');
    if (status === 404) return undefined;
    if (status !== 200) throw failed(subject, 'reading the COMPATIBILITY rule', status, json);
    return String((json as { config: unknown }).config);
  }
  const { status, json } = await registry.request('GET', `${registry.url}/config/${encodeURIComponent(subject)}`);
  if (status === 404) return undefined;
  if (status !== 200) throw failed(subject, 'GET /config', status, json);
  return String((json as { compatibilityLevel: unknown }).compatibilityLevel);
}

/** The registry's default level (what a subject without its own follows). */
export async function defaultLevel(registry: HttpSchemaRegistry, kind: RegistryKind): Promise<string | undefined> {
  if (kind.kind === 'apicurio') {
    const { status, json } = await registry.request('GET', `${kind.api}/admin/rules/COMPATIBILITY`, undefined, 'application/json');
    return status === 200 ? String((json as { config: unknown }).config) : 'NONE';
  }
  const { status, json } = await registry.request('GET', `${registry.url}/config`);
  return status === 200 ? String((json as { compatibilityLevel: unknown }).compatibilityLevel) : undefined;
}

/** Give `subject` its own level `level`, and read it back. */
export async function setSubjectLevel(
  registry: HttpSchemaRegistry,
  kind: RegistryKind,
  subject: string,
  level: CompatibilityLevel,
): Promise<void> {
  if (kind.kind === 'apicurio') {
    const rule = { ruleType: 'COMPATIBILITY', config: level };
    const created = await registry.request('POST', apicurioRule(kind, subject), rule, 'application/json');
    if (created.status === 409) {
      const updated = await registry.request('PUT', `${apicurioRule(kind, subject)}/COMPATIBILITY`, rule, 'application/json');
      if (updated.status !== 200 && updated.status !== 204)
        throw failed(subject, 'updating the COMPATIBILITY rule', updated.status, updated.json);
    } else if (created.status !== 200 && created.status !== 204)
      throw failed(subject, 'adding a COMPATIBILITY rule', created.status, created.json);
  } else {
    const { status, json } = await registry.request('PUT', `${registry.url}/config/${encodeURIComponent(subject)}`, {
      compatibility: level,
    });
    if (status !== 200) throw failed(subject, 'PUT /config', status, json);
  }
  const now = await subjectLevel(registry, kind, subject);
  if (now !== level)
    throw new TideError(
      `schema registry, subject ${subject}: set its compatibility to ${level}, but it now reads ${now ?? 'the registry default'}`,
    );
}

/** Remove the subject's own level: it follows the registry's default again. */
export async function clearSubjectLevel(registry: HttpSchemaRegistry, kind: RegistryKind, subject: string): Promise<void> {
  const { status, json } =
    kind.kind === 'apicurio'
      ? await registry.request('DELETE', `${apicurioRule(kind, subject)}/COMPATIBILITY`, undefined, 'application/json')
      : await registry.request('DELETE', `${registry.url}/config/${encodeURIComponent(subject)}`);
  if (status !== 200 && status !== 204 && status !== 404) throw failed(subject, 'removing its compatibility level', status, json);
}
