// Cutting a session's client messages into units (a Query, a FunctionCall, an extended-protocol batch up to Sync or Flush), and passing COPY data through.
import { errors } from '../errors.js';
import { F, TX } from '../protocol/codes.js';
import { readyForQuery } from '../protocol/backend-messages.js';
import { localReply } from '../protocol/local-replies.js';
import { relayWrite } from '../util/read-slot.js';
import { addFrame, addPart, FRAME_COST, newUnit, NOT_ROUTED, push } from './unit.js';
import { intercept, interceptBatch, type PgsplitSettings } from './intercept.js';
import { statusChar, type SessionCore } from './session-core.js';
import { batchOnServer, enqueue } from './unit-dispatch.js';

// A batch that grows this large before its Sync/Flush (its bytes plus a cost per message) is sent on in pieces, so the proxy never holds it whole.
const MAX_BATCH_PIECE = 1024 * 1024;
const PARSE_COMPLETE = localReply.parseComplete();

/** One whole client message (`body` and `frame` are views into the read buffer, valid during the call). */
export function clientMessage(s: SessionCore & PgsplitSettings, type: number, body: Buffer, frame: Buffer): void {
  const copy = s.copyLink;
  if (copy !== null && copy.copyIn && type !== F.Terminate && type !== F.CopyData && type !== F.CopyDone && type !== F.CopyFail) {
    // In COPY FROM STDIN PostgreSQL ignores Sync and Flush, and ends the connection ("protocol synchronization was
    // lost") on anything else. Passing such a message on could race with a COPY the server has already failed
    // (it would then run as a statement nobody accounts for), so the proxy decides here, the same way.
    if (type === F.Sync || type === F.Flush) return;
    throw errors.protocolViolation(`unexpected message type 0x${type.toString(16)} during COPY from stdin`);
  }
  switch (type) {
    case F.Query: {
      refuseInsideBatch(s);
      const u = newUnit();
      addFrame(u, frame);
      u.sync = true;
      const sql = body.toString('utf8', 0, Math.max(0, body.length - 1));
      const cls = s.ctx.classifier.classify(sql);
      addPart(u, cls);
      // A statement the proxy answers itself is not counted (it never reaches a server).
      if (s.ctx.statements && !cls.intercept) u.statements = [s.ctx.statements.keys.forText(cls, sql)];
      if (cls.intercept) u.local = intercept(cls, true, s);
      else if (cls.statements.length === 1 && cls.statements[0].kind === 'deallocate' && s.txStatus !== TX.Failed) {
        // DEALLOCATE of a protocol-level statement: servers know it by pgsplit's name (and others may share it), so only the client's name goes.
        const name = cls.statements[0].deallocateName;
        if (name && s.prepared.forgetName(name)) u.local = Buffer.concat([localReply.commandComplete('DEALLOCATE'), readyForQuery(statusChar(s.txStatus))]);
      }
      enqueue(s, u);
      return;
    }
    case F.Parse: case F.Bind: case F.Describe: case F.Execute: case F.Close: {
      const u = (s.batch ??= newUnit());
      addFrame(u, s.prepared.analyze(u, type, body, frame));
      // Each Execute is a call of the statement last bound (null: one the proxy saw no Parse for, not counted).
      if (type === F.Execute && s.ctx.statements) u.statements = push(u.statements, s.ctx.statements.keys.of(s.prepared.bound));
      if (u.bytes + FRAME_COST * u.frames.length > MAX_BATCH_PIECE && u.refusal === null) {
        // Sent on without waiting for the Sync (the server runs messages as they come anyway); the rest follows it.
        s.batch = null;
        u.split = true;
        enqueue(s, u);
      }
      return;
    }
    case F.Flush: case F.Sync: {
      if (type === F.Sync && s.copyOwesSync && s.copyLink !== null) {
        s.copyOwesSync = false;
        relayWrite(s.copyLink.conn.socket, frame, s.clientSlot);
        return;
      }
      // A Flush outside any batch asks for nothing a server still holds.
      if (type === F.Flush && s.batch === null && !batchOnServer(s)) return;
      const u = s.batch ?? newUnit();
      s.batch = null;
      addFrame(u, frame);
      u.sync = type === F.Sync;
      // Answered here only if no earlier piece of the batch went to a server (that server's part must end there).
      if (u.parts.length > 0 && u.parts.every((p) => p.intercept) && !batchOnServer(s)) u.local = interceptBatch(u.frames, u.parts, s);
      else if (u.sync && s.prepared.allValid(u) && s.txStatus === TX.Idle && s.inflight.length === 0 && s.queue.length === 0 && !batchOnServer(s)) {
        // Parse + Sync of statements a server already accepted (libpq's PQprepare): they are prepared where they
        // are first used, so no server connection is taken now (pgbench -M prepared would otherwise hold one
        // thread's clients waiting on each other for the pool).
        u.local = Buffer.concat([...u.parses.map(() => PARSE_COMPLETE), readyForQuery('I')]);
      }
      enqueue(s, u);
      return;
    }
    case F.FunctionCall: {
      refuseInsideBatch(s);
      const u = newUnit();
      addFrame(u, frame);
      u.sync = true;
      addPart(u, NOT_ROUTED);
      enqueue(s, u);
      return;
    }
    case F.CopyData: case F.CopyDone: case F.CopyFail: {
      const link = s.copyLink ?? s.home;
      // Outside a COPY PostgreSQL ignores them too (a COPY that failed while the client was still sending).
      if (link === null) return;
      if (type !== F.CopyData && link.copyIn) {
        link.copyIn = false;
        // An extended-protocol COPY's own Sync reached the server during the COPY, which ignores it there: the
        // ReadyForQuery that unit owes comes for the Sync the client sends after CopyDone (libpq does).
        const u = s.inflight.find((x) => x.link === link);
        s.copyOwesSync = u !== undefined && u.sync && u.first !== F.Query;
      }
      if (!relayWrite(link.conn.socket, frame, s.clientSlot) && !link.conn.socket.destroyed) s.writeBlocked = true;
      return;
    }
    case F.Terminate:
      s.terminating = true;
      s.closeAll();
      return;
    default:
      throw errors.protocolViolation(`invalid frontend message type ${type} ('${String.fromCharCode(type)}')`);
  }
}

/**
 * A Query or FunctionCall inside an unfinished extended-protocol batch. PostgreSQL runs it, unless an earlier
 * message of the batch failed, in which case it skips it without an answer until Sync; the proxy cannot know
 * which in advance, and no driver does this, so it is refused rather than guessed at.
 */
function refuseInsideBatch(s: SessionCore): void {
  if (s.batch === null && !batchOnServer(s)) return;
  throw errors.protocolViolation('a simple Query or FunctionCall arrived inside an unfinished extended-protocol batch; send Sync first');
}
