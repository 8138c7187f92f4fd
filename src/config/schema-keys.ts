// Every key path of the config schema ("routing.max_parse_length", "nodes[].host"), walked from the zod schema itself so that a new key cannot be missed.
import { z } from 'zod';
import { configSchema } from './schema.js';

export interface ConfigKey {
  /** "listen.port"; fields of list items as "nodes[].host"; a list of named items itself as "nodes". */
  path: string;
  /** 'value': compared as a whole (scalars, lists of scalars); 'named-list': items matched by their name (nodes, users). */
  kind: 'value' | 'named-list';
}

function unwrap(schema: z.ZodTypeAny): z.ZodTypeAny {
  for (;;) {
    if (schema instanceof z.ZodDefault || schema instanceof z.ZodOptional || schema instanceof z.ZodNullable) schema = schema._def.innerType as z.ZodTypeAny;
    else if (schema instanceof z.ZodEffects) schema = schema.innerType() as z.ZodTypeAny;
    else return schema;
  }
}

function walk(schema: z.ZodTypeAny, path: string, out: ConfigKey[]): void {
  const s = unwrap(schema);
  if (s instanceof z.ZodObject) {
    for (const [k, child] of Object.entries(s.shape as Record<string, z.ZodTypeAny>)) walk(child, path ? `${path}.${k}` : k, out);
    return;
  }
  if (s instanceof z.ZodArray) {
    const element = unwrap(s.element as z.ZodTypeAny);
    // A list of named items (nodes, users) changes item by item: an item is added, removed or has a field changed.
    if (element instanceof z.ZodObject && 'name' in element.shape) {
      out.push({ path, kind: 'named-list' });
      for (const [k, child] of Object.entries(element.shape as Record<string, z.ZodTypeAny>)) if (k !== 'name') walk(child, `${path}[].${k}`, out);
      return;
    }
  }
  out.push({ path, kind: 'value' });
}

let cached: readonly ConfigKey[] | null = null;

/** Every key of the schema, in schema order. */
export function configKeys(): readonly ConfigKey[] {
  if (cached === null) {
    const out: ConfigKey[] = [];
    walk(configSchema, '', out);
    cached = Object.freeze(out);
  }
  return cached;
}
