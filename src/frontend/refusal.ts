// A unit over a session limit, rewritten into a statement that fails with the limit's error on the server it would have used.
//
// Refusing in the proxy alone would leave the server's transaction open and healthy: a client that ignored the
// error could then COMMIT without the refused statement. Run on the server, the failure does what PostgreSQL does
// after any error: it fails an open transaction and discards the rest of a batch up to Sync.
import { F } from '../protocol/codes.js';
import { query } from '../protocol/frontend-messages.js';
import { MessageWriter } from '../protocol/writer.js';
import type { Classification } from '../router/classification.js';
import type { Unit } from './unit.js';

/** Where a refused unit runs: the primary, or the server of its open transaction. */
const REFUSED: Classification = Object.freeze({ target: 'primary', reason: 'refused', statements: [], via: 'lexical', flags: 0 }) as Classification;

const literal = (t: string | undefined): string => `'${(t ?? '').replace(/'/g, "''")}'`;

/**
 * Rewrite `u` (whose `refusal` is set) in place, nothing of the client's left. `continues` says that an earlier piece
 * of the same extended-protocol batch (Flush-ended) is already queued or on the server.
 */
export function refuseUnit(u: Unit, continues = false): void {
  const e = u.refusal!;
  const sql = `DO $pgsplit$BEGIN RAISE EXCEPTION USING ERRCODE = ${literal(e.sqlstate)}, MESSAGE = ${literal(e.message)}, HINT = ${literal(e.hint)}; END$pgsplit$`;
  if (u.frames.length > 0 && u.frames[0][0] === F.Query) u.frames = [query(sql)];
  else if (u.sync && !continues) {
    // A whole batch: as a simple Query the server answers exactly ErrorResponse and ReadyForQuery, what PostgreSQL
    // answers a batch whose Parse fails. As Parse/Bind/Execute it would first answer ParseComplete, and drivers
    // would take the client's refused statement for prepared (a retry under its name then got 26000).
    const q = query(sql);
    u.frames = [q];
    // A simple Query destroys the server's unnamed statement: the session's own is prepared again when next used.
    u.unnamedParse = q;
  } else {
    const parse = MessageWriter.message(F.Parse, (w) => w.cstring('').cstring(sql).int8(0).int8(0));
    const bind = MessageWriter.message(F.Bind, (w) => w.cstring('').cstring('').int8(0).int8(0).int8(0).int8(0).int8(0).int8(0));
    const execute = MessageWriter.message(F.Execute, (w) => w.cstring('').int32(0));
    const end = MessageWriter.message(u.sync ? F.Sync : F.Flush, () => {});
    u.frames = [parse, bind, execute, end];
    // The server's unnamed statement is now this one: a later Bind of the session's own is prepared again.
    u.unnamedParse = parse;
  }
  u.owned = true;
  u.ownedFrames = u.frames.length;
  u.parts = [REFUSED];
  u.needs = [];
  u.parses = [];
  // Not the client's statements that fail here but the proxy's limit: they are not counted.
  u.statements = [];
  u.effects = u.commits = u.mayWrite = u.opensTransaction = false;
  u.local = null;
}
