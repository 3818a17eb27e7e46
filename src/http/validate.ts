/**
 * Reading and validating request input at the edge: JSON bodies and query strings through zod,
 * with errors that name the field and say what was wrong.
 */
import type { Context } from 'hono';
import type { z } from 'zod';
import { PoskoError } from '../domain/errors.ts';

/** Formats zod issues as `path: message` lines, for an error's details. */
export function zodIssues(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((i) => ({ path: i.path.map(String).join('.') || '(body)', message: i.message }));
}

/** Validates a value with a schema or throws a 422 VALIDATION error naming each bad field. */
export function validate<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = zodIssues(r.error);
  throw new PoskoError('VALIDATION', `invalid ${what}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues });
}

/** Reads the body as JSON, or throws BAD_JSON (400). */
export async function readJson(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === '') throw new PoskoError('BAD_JSON', 'the request body is empty; send JSON');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new PoskoError('BAD_JSON', `the request body is not valid JSON: ${(e as Error).message}`);
  }
}

/** Validates the query string with a schema. */
export function readQuery<T extends z.ZodType>(c: Context, schema: T): z.infer<T> {
  return validate(schema, c.req.query(), 'query');
}
