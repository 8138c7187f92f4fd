// What PostgreSQL answers in a failed transaction, made by the proxy for a transaction whose server connection died.
//
// A transaction cut by a lost server connection exists nowhere any more, but the client must not be told it is
// idle: its next statements would run outside the transaction and commit piecemeal. So the proxy plays the
// server of a failed transaction (status 'E'): every statement gets 25P02 until ROLLBACK (or COMMIT, which
// answers ROLLBACK), extended-protocol batches are discarded up to their Sync, exactly as PostgreSQL does.
import { ProxyError } from '../errors.js';
import { errorResponse, readyForQuery } from '../protocol/backend-messages.js';
import { F } from '../protocol/codes.js';
import { localReply } from '../protocol/local-replies.js';
import { forEachMessage } from '../protocol/frames.js';
import type { Unit } from './unit.js';

export const inFailedTransaction = (): ProxyError =>
  new ProxyError('25P02', 'in_failed_sql_transaction', 'current transaction is aborted, commands ignored until end of transaction block', 'ERROR',
    "pgsplit: the transaction's server connection was lost, and the transaction with it.", 'Roll back (ROLLBACK), then retry the transaction.');

/** Every statement of the unit is a plain COMMIT/END/ROLLBACK/ABORT (no AND CHAIN): in a failed transaction it ends it. */
export function endsTransaction(u: Unit): boolean {
  let n = 0;
  for (const cls of u.parts) {
    for (const s of cls.statements) {
      if ((s.kind !== 'commit' && s.kind !== 'rollback') || s.chain) return false;
      n++;
    }
  }
  return n > 0;
}

export interface FailedReply {
  reply: Buffer;
  /** The unit ended the transaction: the session is idle afterwards. */
  ended: boolean;
  /** An error was sent for a batch that has not reached its Sync: discard the client's messages up to it. */
  discard: boolean;
}

/**
 * The answer to `u` in a failed transaction. `pending` is an error the client has not been told yet (the
 * connection was lost while the transaction sat idle): it comes first, in place of the statement's answer.
 */
export function failedTransactionReply(u: Unit, pending: ProxyError | null): FailedReply {
  const ended = endsTransaction(u);
  if (pending !== null || !ended) {
    const err = errorResponse(pending ?? inFailedTransaction());
    if (!u.sync) return { reply: err, ended: false, discard: true };
    return { reply: Buffer.concat([err, readyForQuery(ended ? 'I' : 'E')]), ended, discard: false };
  }
  return { reply: rollbackReplies(u), ended: true, discard: false };
}

const IDLE = 0x49;
const FAILED = 0x45;

/**
 * Answers for the units that were running on a server connection that died (`status`: the transaction status
 * before them), leaving the client where PostgreSQL would: an autocommit statement fails (`lossError(true)`: 08007
 * when it may have committed), a COMMIT in flight is 08007 and ends the transaction, and anything else inside a
 * transaction fails it (status E), so that nothing the client sends after it can run outside the transaction.
 */
export function answerLostUnits(lost: readonly Unit[], status: number, lossError: (commitInFlight: boolean) => ProxyError): { reply: Buffer; status: number; discard: boolean } {
  const out: Buffer[] = [];
  let st = status;
  let failed = st === FAILED;
  // A transaction the server itself had failed can only have rolled back; one failed by the loss may have committed
  // if its COMMIT reached the server before the connection died.
  const failedByServer = failed;
  let discard = false;
  for (let i = 0; i < lost.length; i++) {
    const u = lost[i];
    // A Flush-ended piece followed by the rest of its batch: the batch is answered once, at its end.
    if (!u.sync && i < lost.length - 1) continue;
    if ((st === IDLE && !u.opensTransaction) || (u.commits && !failedByServer)) {
      // Only a unit that reached its Sync (or ran a COMMIT) can have committed anything: then the outcome is unknown.
      out.push(errorResponse(lossError(u.commits || (st === IDLE && u.sync && u.mayWrite))));
      if (u.sync) out.push(readyForQuery('I'));
      else discard = true;
      st = IDLE;
      continue;
    }
    const r = failedTransactionReply(u, failed ? null : lossError(false));
    out.push(r.reply);
    if (r.discard) discard = true;
    failed = !r.ended;
    st = r.ended ? IDLE : FAILED;
  }
  return { reply: Buffer.concat(out), status: st, discard };
}

/** What PostgreSQL sends for COMMIT/ROLLBACK in a failed transaction: each completes with the tag ROLLBACK. */
function rollbackReplies(u: Unit): Buffer {
  const out: Buffer[] = [];
  forEachMessage(u.frames, (type, body) => {
    switch (type) {
      case F.Query:
        for (const cls of u.parts) for (let i = 0; i < cls.statements.length; i++) out.push(localReply.commandComplete('ROLLBACK'));
        out.push(readyForQuery('I'));
        break;
      case F.Parse:
        out.push(localReply.parseComplete());
        break;
      case F.Bind:
        out.push(localReply.bindComplete());
        break;
      case F.Describe:
        if (body[0] === 0x53) out.push(NO_PARAMETERS);
        out.push(localReply.noData());
        break;
      case F.Execute:
        out.push(localReply.commandComplete('ROLLBACK'));
        break;
      case F.Close:
        out.push(localReply.closeComplete());
        break;
      case F.Sync:
        out.push(readyForQuery('I'));
        break;
      default:
        break;
    }
  });
  return Buffer.concat(out);
}

// ParameterDescription with no parameters (COMMIT and ROLLBACK take none).
const NO_PARAMETERS = Buffer.from([0x74, 0, 0, 0, 6, 0, 0]);
