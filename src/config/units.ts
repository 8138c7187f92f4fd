// Parses human-written durations and sizes from the config file into milliseconds and bytes.

const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };
// Binary multiples because that is what PostgreSQL means by kB/MB/GB, and users copy values from postgresql.conf.
const SIZE_BYTES: Record<string, number> = { B: 1, kB: 1024, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)\s*$/;
const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB)\s*$/;

function quote(s: unknown): string {
  return typeof s === 'string' ? JSON.stringify(s) : String(s);
}

/** "1.5s" -> 1500. A unit is mandatory: a bare "30" is ambiguous (seconds? ms?) and has bitten people before. */
export function parseDuration(s: string): number {
  const m = typeof s === 'string' ? DURATION_RE.exec(s) : null;
  if (!m) {
    throw new Error(`invalid duration ${quote(s)}: expected a number with a unit (ms, s, m or min, h), e.g. "500ms", "2s", "1m"`);
  }
  return Number(m[1]) * DURATION_MS[m[2]];
}

/** "16MB" -> 16777216. Rounded to whole bytes since "1.3kB" has no exact byte count. */
export function parseSize(s: string): number {
  const m = typeof s === 'string' ? SIZE_RE.exec(s) : null;
  if (!m) {
    throw new Error(`invalid size ${quote(s)}: expected a number with a unit (B, kB, MB, GB, TB), e.g. "512kB", "16MB"`);
  }
  const bytes = Math.round(Number(m[1]) * SIZE_BYTES[m[2]]);
  if (!Number.isSafeInteger(bytes)) throw new Error(`invalid size ${quote(s)}: too large`);
  return bytes;
}
