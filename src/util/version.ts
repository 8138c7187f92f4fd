// pgsplit's version, read from package.json at run time so that a release bumps one place.
import { readFileSync } from 'node:fs';

let cached: string | null = null;

export function pgsplitVersion(): string {
  if (cached !== null) return cached;
  try {
    // From src/util/ and from dist/util/ alike, package.json is two levels up.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    cached = typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    cached = 'unknown';
  }
  return cached;
}
