// The idle-timeout rule shared by both kinds of session: which limit, if any, an idle client has passed.
import { errors, type ProxyError } from '../errors.js';
import type { ClientLimits } from './client-startup.js';

const IDLE = 0x49;

/** For a session with nothing in flight, idle for `idleMs` in transaction status `txStatus`: the error to close it with, or null. */
export function idleTimeoutError(txStatus: number, idleMs: number, limits: ClientLimits): ProxyError | null {
  if (txStatus === IDLE) {
    const t = limits.clientIdleTimeoutMs;
    return t > 0 && idleMs >= t ? errors.idleSessionTimeout(t) : null;
  }
  const t = limits.idleTransactionTimeoutMs;
  return t > 0 && idleMs >= t ? errors.idleInTransactionTimeout(t) : null;
}
