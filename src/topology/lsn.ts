// WAL positions (LSNs) as numbers: PostgreSQL prints them as "16/B374D848" (two hex halves of a 64-bit byte offset).
//
// A double holds integers exactly up to 2^53, i.e. 8 PiB of WAL, which a cluster does not reach in practice;
// numbers keep the per-statement comparisons cheap (no BigInt on the hot path).

export function parseLsn(text: string | null | undefined): number | null {
  if (!text) return null;
  const slash = text.indexOf('/');
  if (slash <= 0) return null;
  const hi = Number.parseInt(text.slice(0, slash), 16);
  const lo = Number.parseInt(text.slice(slash + 1), 16);
  if (!Number.isFinite(hi) || !Number.isFinite(lo)) return null;
  return hi * 2 ** 32 + lo;
}

export function formatLsn(lsn: number): string {
  const hi = Math.floor(lsn / 2 ** 32);
  const lo = lsn - hi * 2 ** 32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}
