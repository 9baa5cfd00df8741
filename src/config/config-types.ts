import { z } from 'zod';

/** Value types shared by the connector files (Kafka Connect writes booleans and numbers as strings, lists comma-separated). */
export const bool = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);
export const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
/** Comma-separated list, as Kafka Connect writes lists. */
export const list = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
);
export const regexList = list.superRefine((patterns, ctx) => {
  for (const p of patterns) {
    try {
      new RegExp(`^(?:${p})$`);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `"${p}" is not a valid regular expression: ${(err as Error).message}` });
    }
  }
});
