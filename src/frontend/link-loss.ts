// A session's server connection closed under it: what the client is told, so that no statement of a cut transaction ever runs outside it.
import { errors, type ProxyError } from '../errors.js';
import { TX } from '../protocol/codes.js';
import { errorResponse } from '../protocol/backend-messages.js';
import type { ServerLink } from '../backend/server-link.js';
import { closeSocket } from '../util/close-socket.js';
import type { Unit } from './unit.js';
import { answerLostUnits } from './failed-transaction.js';
import { REPLICA_RETRY_AFTER, type SessionCore } from './session-core.js';
import { flow, pump, release, retryOnPrimary } from './unit-dispatch.js';

export function linkLost(s: SessionCore, link: ServerLink): void {
  link.closed = true;
  // Read before the pool takes the link back (it resets the mode).
  const mode = link.mode;
  const wasHome = s.links.lost(link);
  if (s.closed) return;
  // A server that died with a full socket never drains: the client must not stay paused for it.
  if (s.writeBlocked) {
    s.writeBlocked = false;
    flow(s);
  }
  if (link.fatalPassed !== null) {
    // The server ended the connection over something the client sent, and said so to the client: as on PostgreSQL, the session is over.
    s.ctx.log.info({ pid: s.key.pid, node: link.node, sqlstate: link.fatalPassed }, 'server closed the connection with a FATAL error; ending the session');
    s.finish();
    closeSocket(s.client);
    s.closeAll();
    return;
  }
  if (wasHome) primaryLost(s, link);
  else replicaLost(s, link, mode);
}

/** A replica went away: a held autocommit read is retried on the primary; anything else fails cleanly. */
function replicaLost(s: SessionCore, link: ServerLink, mode: ServerLink['mode']): void {
  s.replicas.leaveAlone(link.node, REPLICA_RETRY_AFTER);
  const heldTransaction = s.sticky === link && s.txStatus !== TX.Idle;
  if (s.sticky === link) s.sticky = null;
  const lost = takeLost(s, link);
  if (lost.length === 0) {
    // The session's open (read-only) transaction lived there: it failed, and the next statement says so.
    if (heldTransaction) cutIdleTransaction(s, errors.replicaLost(link.node));
    return;
  }
  const head = lost[0];
  if (head.retryable && mode === 'hold' && lost.length === 1) {
    retryOnPrimary(s, head, 'replica-lost');
    return;
  }
  answerLost(s, lost, link.node, false);
  pump(s);
}

/**
 * The primary connection died (the primary failed, or was restarted). Without state that lived only there,
 * the session survives: what was running on it fails with a clear error, and the next statement that needs
 * the primary waits for the new one. Temp tables, advisory locks, LISTEN and the like died with it: then
 * the session ends, as it would on PostgreSQL itself.
 */
function primaryLost(s: SessionCore, link: ServerLink): void {
  const bound = s.state.serverPins();
  if (s.terminating || s.client.destroyed || bound.length > 0) {
    if (!s.terminating && !s.client.destroyed) {
      const why = bound.length > 0 ? `the session's ${bound.join(', ')} lived there` : 'the server closed the connection unexpectedly';
      s.client.write(errorResponse(errors.backendLost(link.node, why)));
    }
    s.finish();
    s.client.end();
    s.closeAll();
    return;
  }
  const heldTransaction = s.txStatus !== TX.Idle && s.cut === null && (s.sticky === link || s.sticky === null);
  if (s.sticky === link) s.sticky = null;
  const lost = takeLost(s, link);
  s.ctx.log.warn({ pid: s.key.pid, node: link.node, in_flight: lost.length, in_transaction: heldTransaction }, 'primary connection lost; the session waits for a primary');
  if (lost.length > 0) answerLost(s, lost, link.node, true);
  else if (heldTransaction) cutIdleTransaction(s, errors.primaryLost(link.node, false));
  pump(s);
}

/** The units that were running on `link`, taken out of the session's in-flight list. */
function takeLost(s: SessionCore, link: ServerLink): Unit[] {
  const lost = s.inflight.filter((u) => u.link === link);
  if (lost.length > 0) s.inflight.splice(0, s.inflight.length, ...s.inflight.filter((u) => u.link !== link));
  for (const u of lost) release(s, u);
  return lost;
}

/** The open transaction's server connection died while nothing of it was running: the transaction failed. */
function cutIdleTransaction(s: SessionCore, error: ProxyError): void {
  s.state.abortTransaction();
  s.txMayWrite = false;
  s.cut = { error };
  s.txStatus = TX.Failed;
}

/**
 * Answer the units that were running on a server connection that died, leaving the client where PostgreSQL
 * would: an autocommit statement fails (08007 when it may have committed), a COMMIT in flight is 08007 and
 * ends the transaction, and anything else inside a transaction fails it (status E; see failed-transaction.ts),
 * so that nothing the client sends after it can run outside the transaction.
 */
function answerLost(s: SessionCore, lost: Unit[], node: string, primary: boolean): void {
  const r = answerLostUnits(lost, s.txStatus, primary ? (commitInFlight) => errors.primaryLost(node, commitInFlight) : () => errors.replicaLost(node));
  if (r.discard) s.discardUntilSync = true;
  s.state.abortTransaction();
  s.txMayWrite = false;
  s.txStatus = r.status;
  s.cut = r.status === TX.Failed ? { error: null } : null;
  if (r.reply.length > 0) s.client.write(r.reply);
}
