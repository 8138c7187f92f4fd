// Shows a parsed config as it would be written: durations and sizes back in units ("30s", "16MB"), secrets masked.
import { z } from 'zod';
import { configSchema, DURATION, SIZE, type Config } from './schema.js';
import { redact } from './redact.js';

const DURATION_UNITS: [string, number][] = [['h', 3_600_000], ['m', 60_000], ['s', 1000]];
const SIZE_UNITS: [string, number][] = [['TB', 1024 ** 4], ['GB', 1024 ** 3], ['MB', 1024 ** 2], ['kB', 1024]];

/** 30000 -> "30s", 90000 -> "90s", 1500 -> "1500ms": the largest unit that divides exactly, so nothing is rounded. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const [unit, size] of DURATION_UNITS) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** 16777216 -> "16MB"; the binary multiples config/units.ts reads. */
export function formatSize(bytes: number): string {
  if (bytes === 0) return '0B';
  for (const [unit, size] of SIZE_UNITS) if (bytes % size === 0) return `${bytes / size}${unit}`;
  return `${bytes}B`;
}

/** Walks the schema beside the value; leaves marked DURATION or SIZE become strings again, the rest is copied. */
function withUnitsAt(schema: z.ZodTypeAny, value: unknown): unknown {
  if (typeof value === 'number' && schema.description === DURATION) return formatDuration(value);
  if (typeof value === 'number' && schema.description === SIZE) return formatSize(value);
  if (schema instanceof z.ZodDefault || schema instanceof z.ZodOptional || schema instanceof z.ZodNullable) {
    return withUnitsAt(schema._def.innerType as z.ZodTypeAny, value);
  }
  if (schema instanceof z.ZodEffects) return withUnitsAt(schema.innerType() as z.ZodTypeAny, value);
  if (schema instanceof z.ZodArray && Array.isArray(value)) return value.map((v) => withUnitsAt(schema.element as z.ZodTypeAny, v));
  if (schema instanceof z.ZodObject && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const shape = schema.shape as Record<string, z.ZodTypeAny>;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = shape[k] ? withUnitsAt(shape[k], v) : v;
    return out;
  }
  return value;
}

/**
 * The parsed config with every duration and size written with a unit again, so the result loads back into the
 * same Config (parseConfig(stringify(withUnits(c))) equals c). Secrets are not masked here: see displayConfig.
 */
export function withUnits(config: Config): Record<string, unknown> {
  return withUnitsAt(configSchema, config) as Record<string, unknown>;
}

/** What `pgsplit check-config` prints: defaults filled in, units written out, and every secret masked by redact(). */
export function displayConfig(config: Config): Record<string, unknown> {
  return redact(withUnits(config), { showUsers: true }) as Record<string, unknown>;
}
