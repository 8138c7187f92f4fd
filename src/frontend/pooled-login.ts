// Logging a client in on a pooled server connection: wait for one (bounded), then report the parameters it runs with.
import { errors, ProxyError } from '../errors.js';
import { parameterStatus } from '../protocol/backend-messages.js';
import type { ServerPool } from '../backend/pool.js';
import type { ServerLink } from '../backend/server-link.js';

/** A connection from `pool` for a client logging in; fails at `deadline` (the login timeout) or pool.max_client_wait. */
export function checkout(pool: ServerPool, deadline: number, gone: () => boolean): Promise<ServerLink> {
  const now = pool.tryAcquire();
  if (now) return Promise.resolve(now);
  return new Promise((resolve, reject) => {
    let done = false;
    const waiter = {
      granted(link: ServerLink) {
        if (done || gone()) {
          pool.release(link, true);
          return;
        }
        done = true;
        clearTimeout(timer);
        resolve(link);
      },
      failed(err: Error) {
        if (done) return;
        done = true;
        clearTimeout(timer);
        // Raised at login, it ends the connection as PostgreSQL's own refusals do (a ServerStartupError is relayed as sent).
        reject(err instanceof ProxyError ? new ProxyError(err.sqlstate, err.code, err.message, 'FATAL', err.detail, err.hint) : err);
      },
    };
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      pool.cancelWait(waiter);
      reject(errors.loginTimeout(Math.max(0, deadline - Date.now())));
    }, Math.max(0, deadline - Date.now()));
    timer.unref();
    const link = pool.acquire(waiter);
    if (link) waiter.granted(link);
  });
}

/** The ParameterStatus messages a client gets at login: what the server it was given now runs with. */
export function parameterStatusFrames(parameters: ReadonlyMap<string, string>): Buffer[] {
  return [...parameters].map(([k, v]) => parameterStatus(k, v));
}

/**
 * What a client is told at login about taking writes. An instance that may not write now (cut off from the published
 * state) says in_hot_standby = on, as a standby would: libpq's target_session_attrs=read-write|primary and pgJDBC's
 * targetServerType=primary then try the next host of a multi-host connection string instead of waiting for
 * failover.hold_timeout here. Servers older than 14 do not report in_hot_standby, and the client asks by query instead.
 */
export function loginParameters(parameters: ReadonlyMap<string, string>, writable: boolean): ReadonlyMap<string, string> {
  if (writable || !parameters.has('in_hot_standby')) return parameters;
  return new Map([...parameters, ['in_hot_standby', 'on']]);
}

/** Parameter names lowercased, to compare with startup parameters. */
export function lowercased(parameters: ReadonlyMap<string, string>): Map<string, string> {
  return new Map([...parameters].map(([k, v]) => [k.toLowerCase(), v]));
}
