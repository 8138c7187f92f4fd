// The proxy's answers in a transaction cut by a lost server connection, and the idle-timeout rule: pure functions, real messages.
import { beforeAll, describe, expect, it } from 'vitest';
import { Classifier } from '../../src/router/classifier.js';
import { initParser } from '../../src/router/parser.js';
import { answerLostUnits, endsTransaction, failedTransactionReply } from '../../src/frontend/failed-transaction.js';
import { forEachMessage } from '../../src/protocol/frames.js';
import { refuseUnit } from '../../src/frontend/refusal.js';
import { addFrame, addPart, newUnit, type Unit } from '../../src/frontend/unit.js';
import { MessageWriter } from '../../src/protocol/writer.js';
import { query } from '../../src/protocol/frontend-messages.js';
import { errors } from '../../src/errors.js';
import { idleTimeoutError } from '../../src/frontend/idle.js';

let k: Classifier;
beforeAll(async () => {
  await initParser();
  k = new Classifier();
});

const simple = (sql: string): Unit => {
  const u = newUnit();
  addFrame(u, query(sql));
  addPart(u, k.classify(sql));
  u.sync = true;
  return u;
};

const msg = (type: string, fill: (w: MessageWriter) => void = () => {}) => MessageWriter.message(type.charCodeAt(0), fill);

/** Parse/Bind/Describe(S)/Execute/Close + Sync (or Flush) of one statement, as one buffer like an owned unit holds. */
const extended = (sql: string, sync = true): Unit => {
  const u = newUnit();
  addFrame(u, Buffer.concat([
    msg('P', (w) => w.cstring('s1').cstring(sql).int8(0).int8(0)),
    msg('B', (w) => w.cstring('').cstring('s1').int8(0).int8(0).int8(0).int8(0).int8(0).int8(0)),
    msg('D', (w) => w.int8(0x53).cstring('s1')),
    msg('E', (w) => w.cstring('').int32(0)),
    msg('C', (w) => w.int8(0x53).cstring('s1')),
    msg(sync ? 'S' : 'H'),
  ]));
  addPart(u, k.classify(sql));
  u.sync = sync;
  return u;
};

/** Types and, for ErrorResponse, the SQLSTATE; for CommandComplete the tag; for ReadyForQuery the status. */
function decode(b: Buffer): string[] {
  const out: string[] = [];
  forEachMessage([b], (type, body) => {
    const t = String.fromCharCode(type);
    if (t === 'E') out.push(`E:${/C([0-9A-Z]{5})\0/.exec(body.toString('latin1'))![1]}`);
    else if (t === 'C') out.push(`C:${body.toString('utf8', 0, body.length - 1)}`);
    else if (t === 'Z') out.push(`Z:${String.fromCharCode(body[0])}`);
    else out.push(t);
  });
  return out;
}

describe('endsTransaction', () => {
  it.each([
    ['COMMIT', true], ['END', true], ['ROLLBACK', true], ['ABORT', true], ['rollback; commit', true],
    ['COMMIT AND CHAIN', false], ['ROLLBACK TO SAVEPOINT a', false], ['SELECT 1', false], ['ROLLBACK; SELECT 1', false], ['', false],
  ])('%s → %s', (sql, want) => {
    expect(endsTransaction(simple(sql))).toBe(want);
  });
});

describe('failedTransactionReply', () => {
  it('an ordinary statement gets 25P02 and the status stays E', () => {
    const r = failedTransactionReply(simple('INSERT INTO t VALUES (2)'), null);
    expect(decode(r.reply)).toEqual(['E:25P02', 'Z:E']);
    expect(r).toMatchObject({ ended: false, discard: false });
  });

  it('COMMIT answers ROLLBACK and ends the transaction, as PostgreSQL does in a failed transaction', () => {
    const r = failedTransactionReply(simple('COMMIT'), null);
    expect(decode(r.reply)).toEqual(['C:ROLLBACK', 'Z:I']);
    expect(r.ended).toBe(true);
  });

  it('the loss not yet reported comes first, in place of the statement, whatever it is', () => {
    const lost = errors.primaryLost('pg1', false);
    expect(decode(failedTransactionReply(simple('SELECT 1'), lost).reply)).toEqual(['E:08006', 'Z:E']);
    // A COMMIT that meets the loss is told so (it did not commit) and the transaction is over.
    const c = failedTransactionReply(simple('COMMIT'), lost);
    expect(decode(c.reply)).toEqual(['E:08006', 'Z:I']);
    expect(c.ended).toBe(true);
  });

  it('extended protocol: a COMMIT batch gets every message answered, Execute with ROLLBACK', () => {
    expect(decode(failedTransactionReply(extended('COMMIT'), null).reply)).toEqual(['1', '2', 't', 'n', 'C:ROLLBACK', '3', 'Z:I']);
  });

  it('extended protocol: a statement batch gets one error, and a batch without its Sync yet discards up to it', () => {
    expect(decode(failedTransactionReply(extended('SELECT 1'), null).reply)).toEqual(['E:25P02', 'Z:E']);
    const r = failedTransactionReply(extended('SELECT 1', false), null);
    expect(decode(r.reply)).toEqual(['E:25P02']);
    expect(r).toMatchObject({ discard: true, ended: false });
  });
});

describe('idleTimeoutError', () => {
  const limits = { maxMessageSize: 1, loginTimeoutMs: 1, clientIdleTimeoutMs: 1000, idleTransactionTimeoutMs: 500, maxPipeline: 1, maxPreparedStatements: 1, maxPreparedBytes: 1, maxSessionSettings: 1, maxSessionSettingsBytes: 1 };
  it('idle outside a transaction: 57P05 after client_idle_timeout', () => {
    expect(idleTimeoutError(0x49, 999, limits)).toBeNull();
    expect(idleTimeoutError(0x49, 1000, limits)?.sqlstate).toBe('57P05');
  });
  it('idle in a transaction (open or failed): 25P03 after idle_transaction_timeout', () => {
    expect(idleTimeoutError(0x54, 499, limits)).toBeNull();
    expect(idleTimeoutError(0x54, 500, limits)?.sqlstate).toBe('25P03');
    expect(idleTimeoutError(0x45, 500, limits)?.sqlstate).toBe('25P03');
  });
  it('0 turns a timeout off', () => {
    const off = { ...limits, clientIdleTimeoutMs: 0, idleTransactionTimeoutMs: 0 };
    expect(idleTimeoutError(0x49, 1e9, off)).toBeNull();
    expect(idleTimeoutError(0x54, 1e9, off)).toBeNull();
  });
});

describe('answerLostUnits: the units running on a server connection that died', () => {
  const loss = (commitInFlight: boolean) => errors.primaryLost('pg1', commitInFlight);
  const sent = (sql: string, sync = true): Unit => (sync ? simple(sql) : extended(sql, false));

  it('an autocommit read fails with 08006 and the session stays idle; an autocommit write may have committed: 08007', () => {
    const r = answerLostUnits([sent('SELECT 1'), sent('INSERT INTO t VALUES (1)')], 0x49, loss);
    expect(decode(r.reply)).toEqual(['E:08006', 'Z:I', 'E:08007', 'Z:I']);
    expect(r.status).toBe(0x49);
  });

  it('inside a transaction: the first gets the loss, the rest 25P02, and the transaction is failed (E)', () => {
    const r = answerLostUnits([sent('INSERT INTO t VALUES (2)'), sent('INSERT INTO t VALUES (3)')], 0x54, loss);
    expect(decode(r.reply)).toEqual(['E:08006', 'Z:E', 'E:25P02', 'Z:E']);
    expect(r.status).toBe(0x45);
  });

  it('a BEGIN lost before its answer: the transaction it opened failed, so what follows cannot autocommit', () => {
    const r = answerLostUnits([sent('BEGIN'), sent('INSERT INTO t VALUES (1)')], 0x49, loss);
    expect(decode(r.reply)).toEqual(['E:08006', 'Z:E', 'E:25P02', 'Z:E']);
    expect(r.status).toBe(0x45);
  });

  it('a COMMIT in flight: 08007 (it may have committed) and the transaction is over', () => {
    const r = answerLostUnits([sent('COMMIT')], 0x54, loss);
    expect(decode(r.reply)).toEqual(['E:08007', 'Z:I']);
    expect(r.status).toBe(0x49);
  });

  it('a COMMIT sent behind a statement that was running: it may have reached the server, so 08007, never a made-up ROLLBACK', () => {
    const r = answerLostUnits([sent('INSERT INTO t VALUES (2)'), sent('COMMIT')], 0x54, loss);
    expect(decode(r.reply)).toEqual(['E:08006', 'Z:E', 'E:08007', 'Z:I']);
    expect(r.status).toBe(0x49);
  });

  it('a COMMIT in a transaction the server had already failed can only roll back: ROLLBACK', () => {
    const r = answerLostUnits([sent('INSERT INTO t VALUES (2)'), sent('COMMIT')], 0x45, loss);
    expect(decode(r.reply)).toEqual(['E:25P02', 'Z:E', 'C:ROLLBACK', 'Z:I']);
  });

  it('a batch cut before its Sync: one error, no ReadyForQuery yet, the rest discarded up to the Sync; nothing could have committed', () => {
    const r = answerLostUnits([sent('INSERT INTO t VALUES (1)', false)], 0x49, loss);
    expect(decode(r.reply)).toEqual(['E:08006']);
    expect(r.discard).toBe(true);
  });
});

describe('refuseUnit', () => {
  it('a simple Query becomes a DO that raises the limit error, keeping nothing of the client statement', () => {
    const u = simple("SET my.x = 'secret'");
    u.refusal = errors.sessionLimit('recorded settings (SET)', 3, 'limits.max_session_settings');
    refuseUnit(u);
    const sql = u.frames[0].toString('utf8', 5, u.frames[0].length - 1);
    expect(sql).toMatch(/^DO \$pgsplit\$BEGIN RAISE EXCEPTION USING ERRCODE = '53400', MESSAGE = 'pgsplit: too many recorded settings \(SET\) in this session \(at most 3\)'/);
    expect(sql).not.toContain('secret');
    expect(u).toMatchObject({ effects: false, mayWrite: false, sync: true, local: null });
  });

  const refusedTypes = (sync: boolean, continues: boolean): string[] => {
    const u = extended('SELECT 1', sync);
    u.refusal = errors.sessionLimit('prepared statements', 1, 'limits.max_prepared_statements');
    refuseUnit(u, continues);
    expect(u.parses).toEqual([]);
    const types: string[] = [];
    forEachMessage(u.frames, (t) => types.push(String.fromCharCode(t)));
    return types;
  };

  it('a whole batch ending in Sync becomes one simple Query, so the server answers only the error and ReadyForQuery (no ParseComplete a driver would cache)', () => {
    expect(refusedTypes(true, false)).toEqual(['Q']);
  });

  it('a piece of a batch keeps its shape: Parse/Bind/Execute and the same ending (Sync, or Flush so the server discards the rest up to the Sync)', () => {
    expect(refusedTypes(true, true)).toEqual(['P', 'B', 'E', 'S']);
    expect(refusedTypes(false, false)).toEqual(['P', 'B', 'E', 'H']);
    expect(refusedTypes(false, true)).toEqual(['P', 'B', 'E', 'H']);
  });
});
