// What comes back from a session's servers: output relayed to the client in order, and each unit's end (ReadyForQuery) settling the session's transaction state.
import { TX } from '../protocol/codes.js';
import { errors } from '../errors.js';
import type { ServerLink } from '../backend/server-link.js';
import { relayWrite } from '../util/read-slot.js';
import type { SessionCore } from './session-core.js';
import { pump, release, retryOnPrimary } from './unit-dispatch.js';

/** A chunk of a link's output for the client (already past the link's hold or private mode). */
export function forward(s: SessionCore, link: ServerLink, chunk: Buffer, owned: boolean): void {
  s.ctx.stats.bytesFromServers += chunk.length;
  const head = s.inflight[0];
  // A server's FATAL never gets here: ServerLink keeps it back (see ServerLink.data).
  if (head === undefined ? link !== s.home : head.link !== link) {
    // Output nobody asked for, from a server that is not answering now. An idle replica has nothing for the
    // client (a FATAL there, e.g. on a replica restart, must not read as the session's death): drop it. The
    // primary's (NOTIFY, ParameterStatus) waits until the answer being relayed is complete.
    if (link === s.home) s.asyncOutput.push(owned ? chunk : Buffer.from(chunk));
    else s.ctx.log.debug({ pid: s.key.pid, node: link.node, bytes: chunk.length }, 'dropped output of an idle replica connection');
    return;
  }
  if (head !== undefined && head.traffic !== null) head.traffic.bytesToClient += chunk.length;
  const ok = owned ? s.client.write(chunk) : relayWrite(s.client, chunk, link.conn.slot);
  if (!ok && !s.client.destroyed) link.conn.socket.pause();
}

/** The server sent ReadyForQuery for one of the session's units on `link`. */
export function unitDone(s: SessionCore, link: ServerLink, status: number, failed: boolean, readOnlyRefusal: boolean): void {
  s.lastActivity = Date.now();
  let i = 0;
  while (i < s.inflight.length && !(s.inflight[i].link === link && s.inflight[i].sync)) i++;
  if (i === s.inflight.length) return;
  const u = s.inflight[i];
  if (u.traffic !== null) u.traffic.ms += performance.now() - u.sentAt;
  // Units before it on the same link that owe nothing (Flush-ended parts of this batch) are done too.
  if (i === 0) release(s, s.inflight.shift()!);
  else for (const done of s.inflight.splice(0, i + 1)) release(s, done);
  if (readOnlyRefusal && u.retryable && !u.retried) {
    s.ctx.stats.readOnlyRetries++;
    u.retried = true;
    retryOnPrimary(s, u, 'retry-25006');
    return;
  }
  const before = s.txStatus;
  s.txStatus = status;
  if (link === s.home) {
    // Read-your-writes: a write that committed (autocommit, or the end of a transaction that wrote) gets a
    // ticket for the WAL position that covers it; until it is known the session reads on the primary.
    if (status === TX.Idle) {
      if ((u.mayWrite || s.txMayWrite) && !failed && s.ctx.routing().consistency === 'read-your-writes') s.writeTicket = s.ctx.lsn.ticket();
      s.txMayWrite = false;
    } else if (u.mayWrite) s.txMayWrite = true;
  }
  if (status === TX.Idle) {
    if (s.sticky === link && u.sync) s.sticky = null;
  } else s.sticky = link;
  if (failed && (u.parses.length > 0 || u.needs.length > 0 || u.unnamedParse !== null)) s.prepared.unsureOn(u, link);
  else if (!failed && u.parses.length > 0) s.prepared.validated(u);
  if (!failed && u.effects && s.state.applyEffects(u.parts, before !== TX.Idle || status !== TX.Idle, link)) {
    // DEALLOCATE ALL / DISCARD ALL dropped every prepared statement of that server, the client's among them.
    link.prepared.clear();
    link.unsure = null;
    link.unnamed = null;
    s.prepared.clear();
  }
  if (before !== TX.Idle && status === TX.Idle) {
    // The transaction ended: its settings hold only if it committed.
    if (before === TX.InTransaction && !failed && u.commits) s.state.commitTransaction(link);
    else s.state.abortTransaction();
  }
  if (s.asyncOutput.length > 0 && (s.inflight.length === 0 || s.inflight[0].link === s.home)) {
    const out = s.asyncOutput;
    s.asyncOutput = [];
    for (const chunk of out) s.client.write(chunk);
  }
  if (s.drainRequested && s.inflight.length === 0 && s.queue.length === 0 && s.batch === null && s.txStatus === TX.Idle) {
    s.end(errors.shuttingDown());
    return;
  }
  pump(s);
  s.links.releaseIdle();
}
