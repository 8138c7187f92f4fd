// The lexical pre-check: leading comments and hints, obvious writes by first keyword, statement boundaries.
import { describe, expect, it } from 'vitest';
import { isSingleStatement, keywordAt, obviousWrite, pgsplitSet, scanLeading } from '../../src/router/lexical.js';

const write = (sql: string) => obviousWrite(sql, scanLeading(sql));

describe('scanLeading', () => {
  it.each([
    ['SELECT 1', 0],
    ['   SELECT 1', 3],
    ['\t\n\r\f\vSELECT 1', 5],
    ['-- c\nSELECT 1', 5],
    ['-- c\r\nSELECT 1', 6],
    ['/* c */SELECT 1', 7],
    ['/* a /* nested */ still */ SELECT 1', 27],
    ['/* a */ -- b\n /* c */ SELECT 1', 22],
    ['', 0],
    ['-- only', 7],
  ])('%j starts at %d', (sql, start) => {
    expect(scanLeading(sql)).toMatchObject({ start, unterminated: false });
  });

  it('reports an unterminated block comment', () => {
    expect(scanLeading('/* never /* closed */ SELECT 1')).toMatchObject({ unterminated: true });
  });

  it.each([
    ['/* pgsplit:primary */ SELECT 1', { route: 'primary' }],
    ['/* pgsplit:replica */ SELECT 1', { route: 'replica' }],
    ['/*pgsplit:replica*/SELECT 1', { route: 'replica' }],
    ['-- pgsplit:primary\nSELECT 1', { route: 'primary' }],
    ['/* pgsplit:max_lag=500ms */ SELECT 1', { maxLagMs: 500 }],
    ['/* pgsplit:max_lag = 2s */ SELECT 1', { maxLagMs: 2000 }],
    ['/* pgsplit:replica, pgsplit:max_lag=1m */ SELECT 1', { route: 'replica', maxLagMs: 60_000 }],
    ["/* app='x', pgsplit:primary */ SELECT 1", { route: 'primary' }],
    ['/* a */ /* pgsplit:replica */ SELECT 1', { route: 'replica' }],
    ['/* pgsplit:replica */ /* pgsplit:primary */ SELECT 1', { route: 'primary' }],
  ])('hints in %j', (sql, hints) => {
    expect(scanLeading(sql).hints).toEqual(hints);
  });

  it.each(['SELECT 1 /* pgsplit:primary */', "SELECT '/* pgsplit:primary */'", '/* app=x */ SELECT 1', '/* pgsplit is great */ SELECT 1'])('no hint in %j', (sql) => {
    expect(scanLeading(sql).hints).toBeUndefined();
  });

  it('keeps what it does not understand as an error, without guessing', () => {
    expect(scanLeading('/* pgsplit:max_lag=500 */ SELECT 1').hints).toEqual({ error: expect.stringContaining('invalid duration "500"') });
    expect(scanLeading('/* pgsplit:standby */ SELECT 1').hints).toEqual({ error: expect.stringContaining('unknown hint "pgsplit:standby"') });
    expect(scanLeading('/* pgsplit:primary=yes */ SELECT 1').hints?.error).toContain('unknown hint');
  });
});

describe('keywordAt', () => {
  it('reads a word at a position, uppercased', () => {
    expect(keywordAt('insert into t', 0)).toBe('INSERT');
    expect(keywordAt('  Update t', 2)).toBe('UPDATE');
    expect(keywordAt('(SELECT 1)', 0)).toBe('');
    expect(keywordAt('', 0)).toBe('');
  });
});

describe('obviousWrite', () => {
  it.each([
    ['INSERT INTO t VALUES (1)', 'write'],
    ['insert into t values (1) returning *', 'write'],
    ['UPDATE t SET a = $1 WHERE id = $10', 'write'],
    ['DELETE FROM t', 'write'],
    ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', 'write'],
    ['TRUNCATE t', 'write'],
    ['CREATE TABLE t (a int)', 'ddl'],
    ['CREATE INDEX CONCURRENTLY i ON t (a)', 'ddl'],
    ['CREATE MATERIALIZED VIEW v AS SELECT 1', 'ddl'],
    ['ALTER TABLE t ADD COLUMN b int', 'ddl'],
    ['DROP TABLE t', 'ddl'],
    ['GRANT SELECT ON t TO r', 'ddl'],
    ['REVOKE ALL ON t FROM r', 'ddl'],
    ["COMMENT ON TABLE t IS 'x'", 'ddl'],
    ["SECURITY LABEL ON TABLE t IS 'x'", 'ddl'],
    ['IMPORT FOREIGN SCHEMA s FROM SERVER x INTO public', 'ddl'],
    ['REFRESH MATERIALIZED VIEW v', 'ddl'],
    ['REASSIGN OWNED BY a TO b', 'ddl'],
    ['VACUUM t', 'maintenance'],
    ['ANALYZE t', 'maintenance'],
    ['ANALYSE t', 'maintenance'],
    ['CLUSTER t', 'maintenance'],
    ['REINDEX TABLE t', 'maintenance'],
    ['CHECKPOINT', 'maintenance'],
    ['CALL p(1)', 'call'],
    ['DO $$ BEGIN NULL; END $$', 'do'],
    ['LOCK t', 'lock'],
    ["NOTIFY c, 'x'", 'notify'],
    ['COPY t FROM STDIN', 'copy-from'],
    ['COPY BINARY t FROM STDIN', 'copy-from'],
    ['COPY public.t (a, "b c") FROM STDIN', 'copy-from'],
    ['copy "Weird"."T" from stdin', 'copy-from'],
    ['/* c */ INSERT INTO t VALUES (1);', 'write'],
    ['INSERT INTO t VALUES (1); -- done', 'write'],
    ['INSERT INTO t VALUES (1);;', 'write'],
    ["INSERT INTO t VALUES ('a;b')", 'write'],
    ["INSERT INTO t VALUES (E'\\';')", 'write'],
    ['INSERT INTO t VALUES ($$;$$)', 'write'],
    ['INSERT INTO t VALUES ($x$ $$ ; $x$)', 'write'],
    ['INSERT INTO "a;b" VALUES (1)', 'write'],
    ['INSERT INTO t VALUES (1) /* ; */', 'write'],
    ['INSERT INTO t VALUES (1) -- ;', 'write'],
    ['INSERT INTO a$b$ VALUES (1)', 'write'],
  ])('%j -> %s', (sql, reason) => {
    expect(write(sql)).toEqual({ keyword: expect.any(String), reason });
  });

  it.each([
    // reads, and statements whose details matter to the session
    'SELECT 1',
    'WITH x AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT * FROM x',
    'EXPLAIN ANALYZE INSERT INTO t VALUES (1)',
    'LISTEN c',
    'UNLISTEN *',
    'SET a = 1',
    'DISCARD ALL',
    'BEGIN',
    'PREPARE p AS INSERT INTO t VALUES (1)',
    // temp tables, advisory locks, set_config: the parser must see them
    'CREATE TEMP TABLE t (a int)',
    'CREATE TEMPORARY TABLE t (a int)',
    'CREATE LOCAL TEMP TABLE t (a int)',
    'CREATE TABLE pg_temp.t (a int)',
    'INSERT INTO t SELECT pg_advisory_lock(1)',
    "UPDATE t SET a = set_config('x', 'y', false)",
    'DO $$ BEGIN LISTEN c; END $$',
    // CREATE TABLE AS is 'select-into' for the parser
    'CREATE TABLE t AS SELECT 1',
    'CREATE UNLOGGED TABLE t AS SELECT 1',
    // COPY that is not obviously FROM
    'COPY t TO STDOUT',
    'COPY (SELECT 1) TO STDOUT',
    'COPY (SELECT * FROM t) TO STDOUT',
    // more than one statement, or text the scanner cannot finish
    'INSERT INTO t VALUES (1); SELECT 1',
    'INSERT INTO t VALUES (1); SET a = 1',
    "INSERT INTO t VALUES ('unterminated",
    'INSERT INTO t VALUES ($$unterminated',
    'INSERT INTO t VALUES (1) /* unterminated',
    '/* unterminated INSERT INTO t VALUES (1)',
    'INSERTX INTO t',
    '',
  ])('%j -> parser', (sql) => {
    expect(write(sql)).toBeNull();
  });
});

describe('isSingleStatement', () => {
  it.each([
    ['SELECT 1', true],
    ['SELECT 1;', true],
    ['SELECT 1; ', true],
    ['SELECT 1; -- x', true],
    ['SELECT 1; /* x */ ;', true],
    ['SELECT 1; SELECT 2', false],
    ["SELECT ';'", true],
    ["SELECT 'it''s; fine'", true],
    ["SELECT E'\\\\'; SELECT 2", false],
    ["SELECT E'\\'; x'", true],
    ["SELECT e'a\\';'", true],
    ["SELECT x'1F'; SELECT 2", false],
    ['SELECT "a;""b"', true],
    ['SELECT $$;$$', true],
    ['SELECT $a$ $b$ ; $b$ $a$', true],
    ['SELECT $1; SELECT 2', false],
    ['SELECT a$b; SELECT 2', false],
    ['SELECT 1 -- ;\n', true],
    ['SELECT 1 /* /* ; */ ; */', true],
    ["SELECT U&'d\\0061t;a'", true],
  ])('%j -> %s', (sql, single) => {
    expect(isSingleStatement(sql, 0)).toBe(single);
  });
});

describe('pgsplitSet (for SET pgsplit.route = primary, which the grammar rejects)', () => {
  it.each([
    ['SET pgsplit.route = primary', { name: 'pgsplit.route', value: 'primary', local: false }],
    ['set pgsplit.route to PRIMARY;', { name: 'pgsplit.route', value: 'PRIMARY', local: false }],
    ['SET LOCAL pgsplit.route = primary', { name: 'pgsplit.route', value: 'primary', local: true }],
    ["SET SESSION pgsplit.max_lag = '1s'", { name: 'pgsplit.max_lag', value: '1s', local: false }],
  ])('%j', (sql, expected) => {
    expect(pgsplitSet(sql, scanLeading(sql))).toEqual(expected);
  });

  it.each(['SET search_path = primary', 'SET pgsplit.route = primary; SELECT 1', 'SET pgsplit.route = a b'])('%j -> null', (sql) => {
    expect(pgsplitSet(sql, scanLeading(sql))).toBeNull();
  });
});
