// classify(): the StatementInfo details the session acts on (settings, pins, readOnly, names, intercepts) and hint rules.
import { beforeAll, describe, expect, it } from 'vitest';
import type { StatementInfo } from '../../src/router/classification.js';
import { classify } from '../../src/router/classify.js';
import { FunctionCatalog } from '../../src/router/functions.js';
import { initParser, parseStatements } from '../../src/router/parser.js';

const plain = new FunctionCatalog();
const one = (sql: string, catalog = plain): StatementInfo => {
  const c = classify(sql, catalog);
  expect(c.statements).toHaveLength(1);
  return c.statements[0];
};

beforeAll(async () => {
  await initParser();
});

describe('SET / RESET / DISCARD', () => {
  it.each([
    ['SET search_path = app, public', { name: 'search_path', value: 'app, public', local: false }, 'set'],
    ['SET statement_timeout TO 5000', { name: 'statement_timeout', value: '5000', local: false }, 'set'],
    ['set Work_Mem = \'64MB\'', { name: 'work_mem', value: '64MB', local: false }, 'set'],
    ['SET LOCAL lock_timeout = \'1s\'', { name: 'lock_timeout', value: '1s', local: true }, 'set-local'],
    ['SET TIME ZONE \'UTC\'', { name: 'timezone', value: 'UTC', local: false }, 'set'],
    ['SET TIME ZONE LOCAL', { name: 'timezone', value: null, local: false }, 'set'],
    ['SET x.y TO DEFAULT', { name: 'x.y', value: null, local: false }, 'set'],
    ['SET ROLE app_user', { name: 'role', value: 'app_user', local: false }, 'set'],
    ['SET SESSION AUTHORIZATION bob', { name: 'session_authorization', value: 'bob', local: false }, 'set'],
    ['SET NAMES \'UTF8\'', { name: 'client_encoding', value: 'UTF8', local: false }, 'set'],
    ['SET CONSTRAINTS ALL DEFERRED', { name: 'constraints', value: 'all deferred', local: true }, 'set-local'],
  ])('%s', (sql, setting, reason) => {
    const s = one(sql);
    expect(s).toMatchObject({ kind: 'set', target: 'session', reason, setting });
    expect(s.text).toBe(sql);
  });

  it('RESET and RESET ALL', () => {
    expect(one('RESET statement_timeout')).toMatchObject({ kind: 'reset', target: 'session', setting: { name: 'statement_timeout', value: null, local: false } });
    expect(one('RESET ALL')).toMatchObject({ kind: 'reset', target: 'session', setting: { name: 'all', value: null } });
    expect(one('RESET ROLE')).toMatchObject({ kind: 'reset', setting: { name: 'role', value: null } });
  });

  it('SET … FROM CURRENT records nothing (the value is not in the text)', () => {
    const s = one('SET search_path FROM CURRENT');
    expect(s).toMatchObject({ kind: 'set', target: 'session' });
    expect(s.setting).toBeUndefined();
  });

  it.each([
    ['DISCARD ALL', 'all', 'discard-all'],
    ['DISCARD TEMP', 'temp', 'discard-temp'],
    ['DISCARD TEMPORARY', 'temp', 'discard-temp'],
    ['DISCARD PLANS', 'plans', undefined],
    ['DISCARD SEQUENCES', 'sequences', undefined],
  ])('%s', (sql, discard, unpin) => {
    const s = one(sql);
    expect(s).toMatchObject({ kind: 'discard', target: 'session', reason: 'discard', discard });
    expect(s.unpin).toBe(unpin);
  });

  it('keeps each statement text of a multi-statement string, UTF-8 offsets included', () => {
    const c = classify("SET application_name = 'é'; SET search_path = \"Ünï\", public; SELECT 1", plain);
    expect(c.target).toBe('session');
    expect(c.reason).toBe('multi-statement-session');
    expect(c.statements.map((s) => s.text)).toEqual(["SET application_name = 'é'", 'SET search_path = "Ünï", public', undefined]);
    expect(c.statements[1].setting).toEqual({ name: 'search_path', value: 'Ünï, public', local: false });
  });

  it('LOAD is session state', () => {
    expect(one("LOAD 'auto_explain'")).toMatchObject({ kind: 'other', target: 'session', reason: 'load' });
  });
});

describe('read-only transactions and defaults', () => {
  it.each([
    ['BEGIN', undefined, 'primary', 'txn-begin'],
    ['BEGIN READ ONLY', true, 'replica', 'txn-begin-read-only'],
    ['BEGIN READ WRITE', false, 'primary', 'txn-begin'],
    ['START TRANSACTION READ ONLY', true, 'replica', 'txn-begin-read-only'],
    ['BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE', true, 'replica', 'txn-begin-read-only'],
    ['BEGIN READ ONLY, READ WRITE', false, 'primary', 'txn-begin'],
  ])('%s', (sql, readOnly, target, reason) => {
    const s = one(sql);
    expect(s).toMatchObject({ kind: 'begin', target, reason });
    expect(s.readOnly).toBe(readOnly);
  });

  it.each([
    ['SET TRANSACTION READ ONLY', true, 'replica', 'set-transaction-read-only'],
    ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE', false, 'primary', 'set-transaction'],
    ['SET TRANSACTION ISOLATION LEVEL REPEATABLE READ', undefined, 'primary', 'set-transaction'],
    ["SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", undefined, 'primary', 'set-transaction-snapshot'],
    ['SET transaction_read_only = on', true, 'replica', 'set-transaction-read-only'],
  ])('%s', (sql, readOnly, target, reason) => {
    const s = one(sql);
    expect(s).toMatchObject({ kind: 'set-transaction', target, reason });
    expect(s.readOnly).toBe(readOnly);
  });

  it.each([
    ['SET default_transaction_read_only = on', true],
    ['SET default_transaction_read_only TO off', false],
    ['SET default_transaction_read_only = true', true],
    ["SET default_transaction_read_only = '0'", false],
    ['RESET default_transaction_read_only', false],
    ['SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', true],
    ['SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE', false],
  ])('%s is a session setting with readOnly %s', (sql, readOnly) => {
    const s = one(sql);
    expect(s.target).toBe('session');
    expect(s.readOnly).toBe(readOnly);
    expect(s.setting).toBeDefined();
  });

  it('SESSION CHARACTERISTICS without a read-only mode leaves readOnly unset', () => {
    const s = one('SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED');
    expect(s).toMatchObject({ kind: 'set', target: 'session', setting: { name: 'session characteristics', value: 'isolation level read committed', local: false } });
    expect(s.readOnly).toBeUndefined();
  });

  it.each([
    ['COMMIT', 'commit', 'txn-end'],
    ['END', 'commit', 'txn-end'],
    ['ROLLBACK', 'rollback', 'txn-end'],
    ['ABORT', 'rollback', 'txn-end'],
    ['SAVEPOINT a', 'savepoint', 'savepoint'],
    ['RELEASE SAVEPOINT a', 'savepoint', 'release-savepoint'],
    ['ROLLBACK TO a', 'savepoint', 'rollback-to-savepoint'],
    ["PREPARE TRANSACTION 'g'", 'commit', 'prepare-transaction'],
    ["COMMIT PREPARED 'g'", 'write', 'commit-prepared'],
    ["ROLLBACK PREPARED 'g'", 'write', 'rollback-prepared'],
  ])('%s', (sql, kind, reason) => {
    expect(one(sql)).toMatchObject({ kind, target: 'primary', reason });
  });

  it('AND CHAIN is reported', () => {
    expect(one('COMMIT AND CHAIN').chain).toBe(true);
    expect(one('ROLLBACK AND CHAIN').chain).toBe(true);
    expect(one('COMMIT AND NO CHAIN').chain).toBeUndefined();
  });

  it('a whole read-only transaction in one string goes to a replica; anything else with it to the primary', () => {
    expect(classify('BEGIN READ ONLY; SELECT 1; COMMIT', plain)).toMatchObject({ target: 'replica', reason: 'txn-begin-read-only' });
    expect(classify('BEGIN READ ONLY; SELECT 1; SAVEPOINT a; SELECT 2; RELEASE a; COMMIT', plain).target).toBe('replica');
    expect(classify('BEGIN; SELECT 1; COMMIT', plain)).toMatchObject({ target: 'primary', reason: 'multi-statement-write' });
    expect(classify('BEGIN READ ONLY; SELECT 1; COMMIT; COMMIT', plain).target).toBe('primary');
    expect(classify("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT 'x'; SELECT 1", plain).target).toBe('primary');
    expect(classify('SELECT 1; SELECT 2', plain)).toMatchObject({ target: 'replica', reason: 'multi-statement-read' });
  });
});

describe('pins and unpins', () => {
  it.each([
    ['CREATE TEMP TABLE t (a int)', 'temp-table'],
    ['CREATE TEMPORARY TABLE t (a int) ON COMMIT DELETE ROWS', 'temp-table'],
    ['CREATE TABLE pg_temp.t (a int)', 'temp-table'],
    ['CREATE TEMP VIEW v AS SELECT 1', 'temp-table'],
    ['CREATE TEMP SEQUENCE s', 'temp-table'],
    ['CREATE TEMP TABLE t AS SELECT 1', 'temp-table'],
    ['SELECT * INTO TEMP t FROM u', 'temp-table'],
    ['SELECT pg_advisory_lock(1)', 'advisory-lock'],
    ['SELECT pg_advisory_lock_shared(1, 2)', 'advisory-lock'],
    ['SELECT pg_try_advisory_lock(1)', 'advisory-lock'],
    ['SELECT pg_try_advisory_lock_shared(1)', 'advisory-lock'],
    ['SELECT * FROM jobs WHERE pg_try_advisory_lock(id) LIMIT 1', 'advisory-lock'],
    ['INSERT INTO log SELECT pg_advisory_lock(7)', 'advisory-lock'],
    ['LISTEN events', 'listen'],
    ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'hold-cursor'],
    ['PREPARE p AS INSERT INTO t VALUES ($1)', 'prepared-write'],
    ['PREPARE p AS SELECT * FROM t FOR UPDATE', 'prepared-write'],
    ['SELECT set_config($1, $2, false)', 'untracked-setting'],
    ["SELECT set_config('a', 'b', $1)", 'untracked-setting'],
    ["SELECT set_config('a', 'b', false), set_config('c', 'd', false)", 'untracked-setting'],
    ['DO $$ BEGIN CREATE TEMP TABLE x (a int); END $$', 'temp-table'],
    ['DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$', 'advisory-lock'],
  ])('%s pins %s', (sql, pin) => {
    const c = classify(sql, plain);
    expect(c.statements[0].pin).toBe(pin);
    expect(c.target).not.toBe('replica');
  });

  it.each([
    'CREATE TEMP TABLE t (a int) ON COMMIT DROP',
    'CREATE TABLE t (a int)',
    'SELECT pg_advisory_xact_lock(1)',
    'SELECT pg_try_advisory_xact_lock_shared(1)',
    'SELECT pg_advisory_unlock(1)',
    'DECLARE c CURSOR FOR SELECT 1',
    'PREPARE p AS SELECT $1::int',
    'UNLISTEN events',
    'DO $$ BEGIN UPDATE t SET x = 1; END $$',
  ])('%s does not pin', (sql) => {
    expect(classify(sql, plain).statements[0].pin).toBeUndefined();
  });

  it.each([
    ['SELECT pg_advisory_unlock_all()', 'advisory-unlock-all'],
    ['UNLISTEN *', 'unlisten-all'],
    ['DISCARD ALL', 'discard-all'],
    ['DEALLOCATE ALL', 'deallocate-all'],
    ['CLOSE ALL', 'close-all'],
  ])('%s unpins %s', (sql, unpin) => {
    expect(one(sql).unpin).toBe(unpin);
  });

  it('LISTEN/UNLISTEN name their channel', () => {
    expect(one('LISTEN "Events-Channel"')).toMatchObject({ kind: 'listen', target: 'primary', channel: 'Events-Channel' });
    expect(one('UNLISTEN events')).toMatchObject({ kind: 'unlisten', target: 'primary', channel: 'events' });
    expect(one('UNLISTEN *')).toMatchObject({ kind: 'unlisten', channel: null });
  });
});

describe('prepared statements and cursors', () => {
  it('PREPARE records the name, the text and where EXECUTE must go', () => {
    expect(one('PREPARE get_user (int) AS SELECT * FROM users WHERE id = $1')).toMatchObject({
      kind: 'prepare',
      target: 'session',
      prepareName: 'get_user',
      preparedTarget: 'replica',
      text: 'PREPARE get_user (int) AS SELECT * FROM users WHERE id = $1',
    });
    expect(one('PREPARE w AS SELECT nextval($1)')).toMatchObject({ preparedTarget: 'primary', pin: 'prepared-write' });
    expect(one("PREPARE s AS SELECT set_config('a', $1, false)")).toMatchObject({ preparedTarget: 'primary' });
  });

  it('EXECUTE and DEALLOCATE name their statement', () => {
    expect(one("EXECUTE upd_user('bob', 2)")).toMatchObject({ kind: 'execute', target: 'session', reason: 'execute', executeName: 'upd_user' });
    expect(one("EXECUTE p(nextval('s'))")).toMatchObject({ kind: 'execute', target: 'primary', reason: 'write-function:nextval', executeName: 'p' });
    expect(one('DEALLOCATE get_user')).toMatchObject({ kind: 'deallocate', target: 'session', deallocateName: 'get_user' });
    expect(one('DEALLOCATE PREPARE upd_user')).toMatchObject({ deallocateName: 'upd_user' });
    expect(one('DEALLOCATE ALL')).toMatchObject({ deallocateName: null });
  });

  it('DECLARE, FETCH, MOVE and CLOSE name their cursor', () => {
    expect(one('DECLARE c1 CURSOR FOR SELECT * FROM t')).toMatchObject({ kind: 'declare', target: 'replica', reason: 'declare-cursor', portalName: 'c1' });
    expect(one('DECLARE c2 CURSOR WITH HOLD FOR SELECT 1')).toMatchObject({ kind: 'declare', target: 'primary', reason: 'hold-cursor', portalName: 'c2' });
    expect(one('DECLARE c3 CURSOR FOR SELECT * FROM t FOR UPDATE')).toMatchObject({ kind: 'declare', target: 'primary', reason: 'locking-read' });
    expect(one('FETCH 10 FROM c1')).toMatchObject({ kind: 'fetch-close', target: 'session', reason: 'fetch', portalName: 'c1' });
    expect(one('MOVE LAST IN c1')).toMatchObject({ kind: 'fetch-close', reason: 'move', portalName: 'c1' });
    expect(one('CLOSE c1')).toMatchObject({ kind: 'fetch-close', reason: 'close', portalName: 'c1' });
    expect(one('CLOSE ALL')).toMatchObject({ portalName: null });
  });
});

describe('set_config()', () => {
  it.each([
    ["SELECT set_config('search_path', 'app', false)", { name: 'search_path', value: 'app', local: false }],
    ["SELECT set_config('App.Tenant', '42', true)", { name: 'app.tenant', value: '42', local: true }],
    ["SELECT set_config('app.user', $1, false)", { name: 'app.user', value: null, local: false, valueParam: 1 }],
    ["SELECT set_config('app.user'::text, $2::text, 'f'::bool)", { name: 'app.user', value: null, local: false, valueParam: 2 }],
    ["SELECT set_config('a', NULL, false)", { name: 'a', value: null, local: false }],
    ["SELECT pg_catalog.set_config('a', 'on', 'true')", { name: 'a', value: 'on', local: true }],
  ])('%s', (sql, setting) => {
    expect(classify(sql, plain)).toMatchObject({ target: 'session', reason: 'set-config' });
    expect(one(sql)).toMatchObject({ kind: 'set', setting });
  });

  it('inside a write it is recorded and the write still goes to the primary', () => {
    expect(one("UPDATE t SET x = 1 WHERE set_config('a', 'b', false) <> ''")).toMatchObject({ kind: 'write', target: 'primary', reason: 'write', setting: { name: 'a', value: 'b' } });
  });

  it('a computed name or scope cannot be followed: primary and pinned', () => {
    expect(one('SELECT set_config($1, $2, false)')).toMatchObject({ target: 'primary', reason: 'write-function:set_config', pin: 'untracked-setting' });
  });
});

describe('pgsplit.* settings are intercepted', () => {
  it.each([
    ['SET pgsplit.route = replica', { routeHint: 'replica' }],
    ["SET pgsplit.route = 'primary'", { routeHint: 'primary' }],
    ['SET pgsplit.route = primary', { routeHint: 'primary' }], // PRIMARY is reserved in PostgreSQL's grammar
    ['set pgsplit.route to auto;', { routeHint: 'auto' }],
    ['SET SESSION pgsplit.route = AUTO', { routeHint: 'auto' }],
    ['RESET pgsplit.route', { kind: 'reset', routeHint: 'auto' }],
    ["SET pgsplit.max_lag = '500ms'", { maxLagMs: 500 }],
    ["SET pgsplit.max_lag TO '2s'", { maxLagMs: 2000 }],
    ['RESET pgsplit.max_lag', { kind: 'reset', maxLagMs: null }],
  ])('%s', (sql, expected) => {
    const c = classify(sql, plain);
    expect(c).toMatchObject({ target: 'session', intercept: true });
    expect(c.statements[0]).toMatchObject({ kind: 'set', target: 'session', intercept: true, ...expected });
    expect(c.statements[0].interceptError).toBeUndefined();
  });

  it('SET LOCAL pgsplit.route is local', () => {
    expect(one('SET LOCAL pgsplit.route = replica').setting).toMatchObject({ local: true });
    expect(one('SET LOCAL pgsplit.route = primary')).toMatchObject({ routeHint: 'primary', setting: { local: true } });
  });

  it.each([
    ['SET pgsplit.route = sideways', '22023'],
    ['SET pgsplit.max_lag = 500', '22023'],
    ["SET pgsplit.max_lag = 'soon'", '22023'],
    ['SET pgsplit.rout = replica', '42704'],
    ['SHOW pgsplit.nothing', '42704'],
  ])('%s is answered with an error', (sql, sqlstate) => {
    const s = one(sql);
    expect(s.intercept).toBe(true);
    expect(s.interceptError?.sqlstate).toBe(sqlstate);
  });

  it('SHOW pgsplit.route is answered by the proxy; other SHOWs are reads', () => {
    expect(one('SHOW pgsplit.route')).toMatchObject({ intercept: true, show: 'pgsplit.route', target: 'session' });
    expect(one('SHOW search_path')).toMatchObject({ kind: 'read', target: 'replica', reason: 'show' });
    expect(one('SHOW search_path').intercept).toBeUndefined();
  });

  it('only a string made entirely of intercepts is intercepted as a whole', () => {
    expect(classify('SET pgsplit.route = replica; SET pgsplit.max_lag = \'1s\'', plain).intercept).toBe(true);
    const mixed = classify('SET pgsplit.route = replica; SELECT 1', plain);
    expect(mixed.intercept).toBeUndefined();
    expect(mixed.statements[0].intercept).toBe(true);
  });
});

describe('reasons', () => {
  it.each([
    ['SELECT 1', 'replica', 'select'],
    ['VALUES (1)', 'replica', 'select'],
    ['TABLE t', 'replica', 'select'],
    ['SHOW ALL', 'replica', 'show'],
    ['SHOW transaction_read_only', 'primary', 'show-writability'],
    ['SHOW in_hot_standby', 'primary', 'show-writability'],
    ['EXPLAIN SELECT 1', 'replica', 'explain'],
    ['EXPLAIN ANALYZE SELECT 1', 'replica', 'explain'],
    ['EXPLAIN UPDATE t SET a = 1', 'replica', 'explain'],
    ['EXPLAIN ANALYZE UPDATE t SET a = 1', 'primary', 'explain-analyze-write'],
    ['EXPLAIN (ANALYZE on) SELECT nextval($1)', 'primary', 'explain-analyze-write'],
    ['INSERT INTO t VALUES (1)', 'primary', 'write'],
    ['TRUNCATE t', 'primary', 'write'],
    ['CREATE TABLE t (a int)', 'primary', 'ddl'],
    ['CREATE TABLE t AS SELECT 1', 'primary', 'select-into'],
    ['CREATE MATERIALIZED VIEW v AS SELECT 1', 'primary', 'ddl'],
    ['SELECT 1 INTO t', 'primary', 'select-into'],
    ['SELECT * FROM t FOR SHARE', 'primary', 'locking-read'],
    ['SELECT * FROM t UNION SELECT * FROM (SELECT * FROM u FOR UPDATE) x', 'primary', 'locking-read'],
    ['SELECT 1 UNION ALL (SELECT 2 FOR UPDATE)', 'primary', 'locking-read'],
    ['WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d', 'primary', 'modifying-cte'],
    ["SELECT nextval('s')", 'primary', 'write-function:nextval'],
    ["SELECT pg_catalog.nextval('s')", 'primary', 'write-function:nextval'],
    ['SELECT pg_current_wal_lsn()', 'primary', 'primary-function:pg_current_wal_lsn'],
    ['COPY t FROM STDIN', 'primary', 'copy-from'],
    ['COPY t TO STDOUT', 'replica', 'copy-to'],
    ['COPY (SELECT 1) TO STDOUT', 'replica', 'copy-to'],
    ["COPY t TO '/tmp/x'", 'primary', 'copy-to-file'],
    ["COPY t TO PROGRAM 'gzip'", 'primary', 'copy-to-file'],
    ['CALL p()', 'primary', 'call'],
    ['DO $$ BEGIN END $$', 'primary', 'do'],
    ['LOCK t', 'primary', 'lock'],
    ['LISTEN c', 'primary', 'listen'],
    ['UNLISTEN c', 'primary', 'unlisten'],
    ["NOTIFY c, 'x'", 'primary', 'notify'],
    ['VACUUM t', 'primary', 'maintenance'],
    ['CHECKPOINT', 'primary', 'maintenance'],
    ['GRANT SELECT ON t TO r', 'primary', 'ddl'],
    ['', 'replica', 'empty'],
    ['  -- nothing\n', 'replica', 'empty'],
    ['SELECT 1; INSERT INTO t VALUES (1)', 'primary', 'multi-statement-write'],
  ])('%j -> %s (%s)', (sql, target, reason) => {
    expect(classify(sql, plain)).toMatchObject({ target, reason });
  });

  it('a parse error goes to the primary with the parser message', () => {
    expect(classify('SELEC 1', plain)).toMatchObject({ target: 'primary', reason: 'parse-error', via: 'parser', error: 'syntax error at or near "SELEC"' });
    expect(classify('SELECT 1; SELEC 2', plain)).toMatchObject({ target: 'primary', reason: 'parse-error' });
  });

  it('a statement over the size bound goes to the primary unparsed', () => {
    const sql = `SELECT '${'x'.repeat(100)}'`;
    expect(classify(sql, plain, { maxParseLength: 64 })).toMatchObject({ target: 'primary', reason: 'too-long', via: 'size-bound' });
    expect(classify(sql, plain, { maxParseLength: 200 })).toMatchObject({ target: 'replica', via: 'parser' });
    // The bound is in bytes: 40 two-byte characters are 80 bytes.
    expect(classify(`SELECT '${'é'.repeat(40)}'`, plain, { maxParseLength: 60 }).reason).toBe('too-long');
    expect(classify(`SELECT '${'é'.repeat(40)}'`, plain, { maxParseLength: 100 }).reason).toBe('select');
    expect(parseStatements('SELECT 1', 4)).toEqual({ ok: false, error: 'too long', tooLong: true });
  });

  it('the default size bound is 64kB', () => {
    const body = 'x'.repeat(64 * 1024);
    expect(classify(`SELECT '${body}'`, plain).reason).toBe('too-long');
    expect(classify(`SELECT '${body.slice(0, 60_000)}'`, plain).reason).toBe('select');
  });

  it('a pathologically deep expression is a parse error, not a crash', () => {
    const sql = `SELECT ${'('.repeat(20_000)}1${')'.repeat(20_000)}`;
    expect(classify(sql, plain)).toMatchObject({ target: 'primary', reason: 'parse-error' });
  });
});

describe('hints in a leading comment', () => {
  const catalog = new FunctionCatalog({ volatile: ['public.report'] });

  it.each([
    ['/* pgsplit:primary */ SELECT 1', 'primary', 'hint'],
    ['/* pgsplit:replica */ SELECT 1', 'replica', 'select'],
    ['/* pgsplit:replica */ SELECT report()', 'replica', 'hint'],
    ['/* pgsplit:replica */ SELEC 1', 'replica', 'hint'],
    ['/* pgsplit:replica */ INSERT INTO t VALUES (1)', 'primary', 'hint-ignored-write'],
    ["/* pgsplit:replica */ SELECT nextval('s')", 'primary', 'hint-ignored-write'],
    ['/* pgsplit:replica */ SELECT * FROM t FOR UPDATE', 'primary', 'hint-ignored-write'],
    ['/* pgsplit:replica */ SELECT report(), pg_advisory_lock(1)', 'primary', 'hint-ignored-write'],
    ['/* pgsplit:primary */ INSERT INTO t VALUES (1)', 'primary', 'write'],
    ['-- pgsplit:primary\nSELECT 1', 'primary', 'hint'],
    ['/* traceparent=abc */ /* pgsplit:primary */ SELECT 1', 'primary', 'hint'],
    ['/* outer /* pgsplit:primary */ */ SELECT 1', 'primary', 'hint'],
    ['SELECT 1 /* pgsplit:primary */', 'replica', 'select'],
    ['/* pgsplit:primary */ SET a = 1', 'session', 'set'],
    ['/* pgsplit:replica */ BEGIN', 'primary', 'txn-begin'],
    ['/* pgsplit:primary */ BEGIN READ ONLY', 'replica', 'txn-begin-read-only'],
  ])('%j -> %s (%s)', (sql, target, reason) => {
    expect(classify(sql, catalog)).toMatchObject({ target, reason });
  });

  it('reports the hint, max_lag and anything it did not understand', () => {
    expect(classify('/* pgsplit:replica pgsplit:max_lag=250ms */ SELECT 1', catalog)).toMatchObject({ hint: 'replica', maxLagMs: 250 });
    expect(classify('/* pgsplit:max_lag=1.5s */ SELECT 1', catalog).maxLagMs).toBe(1500);
    expect(classify('/* pgsplit:max_lag=soon */ SELECT 1', catalog)).toMatchObject({ target: 'replica', hintError: expect.stringContaining('invalid duration') });
    expect(classify('/* pgsplit:secondary */ SELECT 1', catalog)).toMatchObject({ target: 'replica', hintError: expect.stringContaining('unknown hint') });
  });

  it('applies to a too-long statement unless its first keyword is a write', () => {
    const long = `'${'x'.repeat(100)}'`;
    expect(classify(`/* pgsplit:replica */ SELECT ${long}`, catalog, { maxParseLength: 64 })).toMatchObject({ target: 'replica', reason: 'hint', via: 'size-bound' });
    expect(classify(`/* pgsplit:replica */ INSERT INTO t VALUES (${long})`, catalog, { maxParseLength: 64 })).toMatchObject({ target: 'primary', reason: 'hint-ignored-write' });
  });
});

describe('function catalog in classification', () => {
  const catalog = new FunctionCatalog({
    volatile: ['public.touch', 'audit.touch', 'public.report', 'app.archive'],
    readOnly: ['report', 'public.touch'],
    write: ['app.stamp'],
  });

  it.each([
    ['SELECT touch()', 'primary', 'volatile-function:audit.touch'], // public.touch is read-only, but the search path may reach audit.touch
    ['SELECT public.touch()', 'replica', 'select'],
    ['SELECT audit.touch()', 'primary', 'volatile-function:audit.touch'],
    ['SELECT report()', 'replica', 'select'],
    ['SELECT * FROM t WHERE x = archive(1)', 'primary', 'volatile-function:app.archive'],
    ['SELECT app.stamp()', 'primary', 'write-function:app.stamp'],
    ['SELECT stamp()', 'primary', 'write-function:stamp'],
    ['SELECT other.stamp()', 'replica', 'select'],
    ['SELECT uuid_generate_v4(), gen_random_bytes(16)', 'replica', 'select'],
    ['SELECT random()', 'replica', 'select'],
  ])('%s -> %s (%s)', (sql, target, reason) => {
    expect(classify(sql, catalog)).toMatchObject({ target, reason });
  });

  it('finds volatile calls everywhere in the tree', () => {
    for (const sql of [
      'SELECT * FROM archive(1)',
      'SELECT * FROM t WHERE EXISTS (SELECT archive(t.id))',
      'WITH x AS (SELECT archive(1)) SELECT * FROM x',
      'SELECT * FROM t ORDER BY archive(t.id)',
      'SELECT * FROM t JOIN LATERAL archive(t.id) a ON true',
      'SELECT array_agg(archive(id)) FROM t',
      'VALUES (archive(1))',
      'SELECT 1 UNION SELECT archive(1)',
    ]) {
      expect(classify(sql, catalog).target, sql).toBe('primary');
    }
  });
});
