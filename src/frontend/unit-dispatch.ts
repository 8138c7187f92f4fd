// Sending a session's units to servers in order: which server (placeUnit, then a replica or the primary), what it must run first, and the one retry on the primary.
//
// Only one link has units in flight at a time, so responses reach the client in order: the primary may take
// pipelined units back to back, a replica one at a time (its output is held so that a read-only refusal,
// SQLSTATE 25006, can be retried on the primary unseen).
import { errors, ProxyError } from '../errors.js';
import { F, TX } from '../protocol/codes.js';
import { errorResponse, readyForQuery } from '../protocol/backend-messages.js';
import { joinFrames } from '../protocol/frames.js';
import { UNKNOWN_SETTINGS, type ServerLink } from '../backend/server-link.js';
import { placeUnit } from '../router/placement.js';
import type { PrimaryReadReason } from '../router/read-choice.js';
import { relayWrite } from '../util/read-slot.js';
import { StatementRun } from '../stats/statement-run.js';
import { own, unitCost, type Unit } from './unit.js';
import { failedTransactionReply } from './failed-transaction.js';
import { refuseUnit } from './refusal.js';
import { statusChar, type SessionCore } from './session-core.js';
import { heldByPause } from './operator-pause.js';

const EMPTY = Buffer.alloc(0);

export function enqueue(s: SessionCore, u: Unit): void {
  if (u.effects && u.refusal === null) {
    const limits = s.ctx.limits();
    const after = s.state.settingsAfter(u.parts);
    if (after.count > limits.maxSessionSettings) u.refusal = errors.sessionLimit('recorded settings (SET)', limits.maxSessionSettings, 'limits.max_session_settings');
    else if (after.bytes > limits.maxSessionSettingsBytes) u.refusal = errors.settingsBytesLimit(after.bytes, limits.maxSessionSettingsBytes);
  }
  if (u.refusal !== null) refuseUnit(u, batchOnServer(s));
  charge(s, u);
  s.queue.push(u);
  pump(s);
}

/** The batch being received has a piece (ended by Flush, or sent on early) already queued or on a server. */
export function batchOnServer(s: SessionCore): boolean {
  const last = s.queue.length > 0 ? s.queue[s.queue.length - 1] : s.inflight[s.inflight.length - 1];
  return last !== undefined && !last.sync;
}

/** A unit is held from enqueue until its answer is complete (or lost): its cost counts against limits.max_pipeline. */
function charge(s: SessionCore, u: Unit): void {
  if (u.held > 0) return;
  u.held = unitCost(u);
  s.pipelined += u.held;
}

/** The unit is done (answered, lost, or replaced by the next piece of its batch): the proxy no longer holds it. */
export function release(s: SessionCore, u: Unit): void {
  s.pipelined -= u.held;
  u.held = 0;
}

/** Send what can go now: local answers in order, every other unit to the server placeUnit chooses. */
export function pump(s: SessionCore): void {
  while (s.queue.length > 0 && !s.closed) {
    const u = s.queue[0];
    if (u.local) {
      if (s.inflight.length > 0) return;
      s.queue.shift();
      release(s, u);
      if (u.local.length > 0) s.client.write(u.local);
      continue;
    }
    if (heldByPause(s, u)) break;
    const link = chooseLink(s, u);
    if (!link) {
      if (u.local) continue; // refused (primary_reads: never): answered in order like a local reply
      break;
    }
    // The unit before it on this server is still being prepared (settings replayed, statements parsed): written
    // now, this one would reach the server first, and the server's answers would no longer match the units.
    if (link.privateOwed > 0) break;
    s.queue.shift();
    dispatch(s, u, link);
  }
  if (s.clientPaused) flow(s);
}

/**
 * Read the client only while what its units hold (queued, and in flight until answered) is under limits.max_pipeline
 * and every server takes what it is sent.
 */
export function flow(s: SessionCore): void {
  const pause = s.writeBlocked || s.pipelined > s.ctx.limits().maxPipeline;
  if (pause === s.clientPaused || s.closed) return;
  s.clientPaused = pause;
  if (pause) {
    s.client.pause();
    s.peekTimer ??= setInterval(peek, PEEK_EVERY_MS, s);
  } else {
    s.client.resume();
    stopPeeking(s);
  }
}

// A paused client socket is not read, and a client that left is only noticed by reading: its statement would run
// on, holding a server connection, until it ended. So a paused client is read for one turn of the event loop every
// second (what arrives is queued like the rest), while its queue stays within this much beyond limits.max_pipeline.
const PEEK_EVERY_MS = 1000;
const PEEK_ALLOWANCE = 1024 * 1024;

function peek(s: SessionCore): void {
  if (s.closed || !s.clientPaused || s.writeBlocked || s.pipelined > s.ctx.limits().maxPipeline + PEEK_ALLOWANCE) return;
  s.client.resume();
  setImmediate(() => {
    if (s.clientPaused && !s.closed) s.client.pause();
  });
}

export function stopPeeking(s: SessionCore): void {
  if (s.peekTimer === null) return;
  clearInterval(s.peekTimer);
  s.peekTimer = null;
}

function chooseLink(s: SessionCore, u: Unit): ServerLink | null {
  const tail = s.inflight.length > 0 ? s.inflight[s.inflight.length - 1] : null;
  const p = placeUnit({
    forcePrimary: u.forcePrimary,
    sticky: s.sticky !== null,
    inFlight: tail === null ? null : { onPrimary: tail.link === s.home, opensTransaction: tail.opensTransaction },
    discarding: s.discardUntilSync,
    cut: s.cut !== null,
    inTransaction: s.txStatus !== TX.Idle,
    parts: u.parts,
    split: u.split,
    pinned: s.state.pins.size > 0,
    hint: s.hint,
  });
  switch (p.to) {
    case 'wait':
      return null;
    // On the primary, even a transaction's next statement checks that this instance may still write there.
    case 'sticky':
      u.reason = p.reason;
      return s.sticky === s.home ? s.links.primary() : s.sticky;
    case 'behind':
      u.reason = p.reason;
      return tail!.link === s.home ? s.links.primary() : tail!.link;
    case 'discard':
      // The rest of a batch whose error was already sent: nothing runs; its Sync gets ReadyForQuery.
      u.local = u.sync ? readyForQuery(statusChar(s.txStatus)) : EMPTY;
      if (u.sync) s.discardUntilSync = false;
      return null;
    case 'cut': {
      const r = failedTransactionReply(u, s.cut!.error);
      s.cut!.error = null;
      u.local = r.reply;
      if (r.discard) s.discardUntilSync = true;
      if (r.ended) {
        s.cut = null;
        s.txStatus = TX.Idle;
      }
      return null;
    }
    case 'primary':
      // A retry keeps the reason it was given (retry-25006, replica-lost, replay-failed).
      if (p.reason !== 'retry') u.reason = p.reason;
      return s.links.primary();
    case 'replica':
      u.reason = p.reason;
  }
  const r = replicaFor(s, u);
  if (r === 'wait') return null;
  if (typeof r === 'string') {
    // A Flush-ended piece of a batch cannot be refused on its own (the error must end at Sync): it goes to the primary.
    if ((r === 'no-replica' || r === 'replica-lag') && s.ctx.routing().primaryReads === 'never' && u.sync) {
      s.ctx.stats.readsRefused++;
      u.local = Buffer.concat([errorResponse(errors.noReplica()), readyForQuery('I')]);
      return null;
    }
    u.reason = r;
    s.ctx.stats.readOnPrimary(r);
    return s.links.primary();
  }
  if (r !== s.home) u.retryable = u.sync && !u.opensTransaction;
  return r;
}

/**
 * A replica link to use now, 'wait' while one is being opened, or the reason the read goes to the primary.
 * A session keeps the replica it was given while that replica stays usable: balancing happens across
 * sessions (the counter is shared), and each session needs one replica connection instead of one per replica.
 */
function replicaFor(s: SessionCore, u: Unit): ServerLink | 'wait' | PrimaryReadReason {
  const settings = s.ctx.routing();
  let lsn: number | null = null;
  // A /* pgsplit:replica */ hint asks for a replica knowingly: it is not held back for the session's own writes.
  if (s.writeTicket !== 0 && settings.consistency === 'read-your-writes' && !u.parts.some((p) => p.hint === 'replica')) {
    lsn = s.ctx.lsn.lsnFor(s.writeTicket);
    // The LSN of the session's last commit is still on its way (well under a millisecond): read on the primary.
    if (lsn === null) return 'read-your-writes';
  }
  const maxLagMs = u.maxLagMs === null ? s.maxLagMs : s.maxLagMs === null ? u.maxLagMs : Math.min(u.maxLagMs, s.maxLagMs);
  const node = s.replicas.choose(settings, { tags: s.readTagsInEffect(settings), lsn, maxLagMs });
  if (node === null) return s.replicas.reason;
  return s.links.readConnection(node, s.ctx.topology.primary?.name ?? null);
}

function dispatch(s: SessionCore, u: Unit, link: ServerLink): void {
  u.link = link;
  const tail = s.inflight.length > 0 ? s.inflight[s.inflight.length - 1] : null;
  if (!u.sync && tail !== null && !tail.sync && tail.link === link && !tail.retryable && !u.retryable) {
    // The next Flush-ended piece of a batch on the same server: it takes the place of the piece before it, whose
    // answers have been asked for already. Only the last piece matters once they all end at the batch's Sync (or
    // are lost), so a client that reads a portal in Flush-ended steps without a Sync (a cursor read 100 rows at a
    // time) holds one unit, not one per step.
    if (tail.opensTransaction) u.opensTransaction = true;
    if (tail.mayWrite) u.mayWrite = true;
    if (tail.commits) u.commits = true;
    if (tail.effects) u.effects = true;
    s.inflight[s.inflight.length - 1] = u;
    release(s, tail);
  } else s.inflight.push(u);
  if (u.sync) link.owed++;
  s.copyLink = link;
  if (!u.sync) s.sticky = link; // the rest of this batch must follow
  const target = link === s.home ? 'primary' : 'replica';
  s.ctx.stats.routed(target, u.reason);
  const traffic = (u.traffic = s.ctx.stats.trafficTo(link.node)[target]);
  traffic.units++;
  traffic.bytesToServer += u.bytes;
  u.sentAt = performance.now();
  const pre = preparation(s, u, link);
  if (pre === null) {
    write(s, u, link);
    return;
  }
  if (!u.owned) own(u);
  link.sendPrivate(pre.frames, pre.ready, (failed) => {
    if (failed) {
      // What the server now carries is not known for sure: replayed and prepared again (Close first) next time.
      link.settings = UNKNOWN_SETTINGS;
      s.prepared.unsureOn(u, link);
    }
    // The session ended while the server was still preparing (the client left or broke the protocol; the cancel
    // sent then for the busy connection is often what failed the preparation). Its connections were given back
    // when it ended, this one to be closed (it owed answers), so the unit is dropped here. Retried on the
    // primary, it would check out a connection for a session that never gives one back again.
    if (s.closed) return;
    if (failed && link !== s.home) {
      // The replica could not take the session's state: keep the session on the primary from now on.
      s.ctx.log.warn({ pid: s.key.pid, node: link.node }, 'replaying session state on a replica failed; the session stays on the primary');
      s.state.pins.add('replay-failed');
      if (u.sync) link.owed--;
      const i = s.inflight.indexOf(u);
      if (i >= 0) s.inflight.splice(i, 1);
      release(s, u);
      if (s.sticky === link && !u.sync) s.sticky = null;
      retryOnPrimary(s, u, 'replay-failed');
      pump(s);
      return;
    }
    write(s, u, link);
    // Units that waited behind this one's preparation go now.
    pump(s);
  });
}

function write(s: SessionCore, u: Unit, link: ServerLink): void {
  if (s.closed || link.closed) return;
  // Bytes the proxy may send again (a retry on the primary) or answer for itself (a ROLLBACK lost in a failed
  // transaction) must outlive the read buffer they arrived in.
  if (!u.owned && (u.retryable || s.txStatus === TX.Failed)) own(u);
  link.mode = u.retryable ? 'hold' : 'relay';
  const counting = s.ctx.statements;
  // Every unit written gets a run, even with no statement to count, so that answers keep matching their units.
  if (counting) link.track(new StatementRun(counting.table, u.statements, u.first === F.Query, u.sync, u.retryable, link === s.home ? 'primary' : 'replica', u.reason, performance.now()));
  for (const [name, parse] of u.parses) link.prepared.set(name, parse);
  if (u.unnamedParse) link.unnamed = u.unnamedParse;
  const out = joinFrames(u.frames);
  const ok = u.owned ? link.conn.socket.write(out) : relayWrite(link.conn.socket, out, s.clientSlot);
  if (!ok && !link.conn.socket.destroyed) {
    s.writeBlocked = true;
    flow(s);
  }
}

/** What a server must run before it can serve this unit: session state, statements it has not prepared. */
function preparation(s: SessionCore, u: Unit, link: ServerLink): { frames: Buffer; ready: number } | null {
  const out: Buffer[] = [];
  let ready = 0;
  const replay = s.state.replayFor(link);
  if (replay !== null) {
    out.push(replay);
    ready++;
  }
  if (s.prepared.prepareOn(u, link, out, s.ctx.maxPreparedPerServer(), s.ctx.maxPreparedBytes())) ready++;
  return out.length ? { frames: Buffer.concat(out), ready } : null;
}

/**
 * The one way a unit that went to a replica runs again on the primary, before anything queued after it: the
 * replica refused it as read-only (25006), was lost under it, or could not take the session's state.
 */
export function retryOnPrimary(s: SessionCore, u: Unit, reason: string): void {
  u.link = null;
  u.retryable = false;
  u.reason = reason;
  u.forcePrimary = true;
  if (!u.owned) own(u);
  charge(s, u);
  s.queue.unshift(u);
  const p = s.links.primary();
  if (p !== null && p.privateOwed === 0) {
    dispatch(s, s.queue.shift()!, p);
  }
  pump(s);
}

/** The unit in front of the queue cannot run: it gets `err` (as an ERROR: the session stays; the next statement tries again). */
export function failHead(s: SessionCore, err: ProxyError): void {
  const u = s.queue[0];
  if (!u || u.local) return;
  const msg = errorResponse(new ProxyError(err.sqlstate, err.code, err.message, 'ERROR', err.detail, err.hint));
  u.local = u.sync ? Buffer.concat([msg, readyForQuery(statusChar(s.txStatus))]) : msg;
  if (!u.sync) s.discardUntilSync = true;
}
