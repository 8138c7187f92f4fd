// admin.auth checks: a bearer token or HTTP basic credentials, compared in constant time, and the headers a client uses to send them.
import { createHash, timingSafeEqual } from 'node:crypto';

export interface AdminAuth {
  token?: string;
  user?: string;
  password?: string;
  protect_reads: boolean;
}

/** Whether admin.auth names any credential at all (without one, mutating endpoints are refused). */
export function authConfigured(a: AdminAuth): boolean {
  return a.token !== undefined || (a.user !== undefined && a.password !== undefined);
}

// Hashing first makes the comparison independent of both lengths.
function same(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** 'ok': the Authorization header carries configured credentials; 'denied': it does not; 'unconfigured': admin.auth has none. */
export function checkCredentials(header: string | undefined, a: AdminAuth): 'ok' | 'denied' | 'unconfigured' {
  if (!authConfigured(a)) return 'unconfigured';
  if (!header) return 'denied';
  const m = /^(\S+)\s+(.+)$/.exec(header.trim());
  if (!m) return 'denied';
  const scheme = m[1]!.toLowerCase();
  const value = m[2]!.trim();
  if (scheme === 'bearer' && a.token !== undefined) return same(value, a.token) ? 'ok' : 'denied';
  if (scheme === 'basic' && a.user !== undefined && a.password !== undefined) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return 'denied';
    // Both halves are always compared, so the time does not tell whether the user name was right.
    const userOk = same(decoded.slice(0, colon), a.user);
    const passwordOk = same(decoded.slice(colon + 1), a.password);
    return userOk && passwordOk ? 'ok' : 'denied';
  }
  return 'denied';
}

/** WWW-Authenticate challenges for a 401: one per configured scheme. */
export function challenges(a: AdminAuth): string[] {
  const out: string[] = [];
  if (a.token !== undefined) out.push('Bearer realm="pgsplit admin"');
  if (a.user !== undefined) out.push('Basic realm="pgsplit admin", charset="UTF-8"');
  return out.length > 0 ? out : ['Bearer realm="pgsplit admin"'];
}

/** The Authorization header a client (pgsplit switchover) sends for these credentials; undefined when there are none. */
export function authorizationHeader(a: Pick<AdminAuth, 'token' | 'user' | 'password'>): string | undefined {
  if (a.token !== undefined) return `Bearer ${a.token}`;
  if (a.user !== undefined && a.password !== undefined) return `Basic ${Buffer.from(`${a.user}:${a.password}`, 'utf8').toString('base64')}`;
  return undefined;
}
