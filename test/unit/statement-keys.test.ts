// Statement fingerprints (constants, parameters, whitespace and IN-list lengths do not matter; structure does) and the keys a session gets for a text: worked out once per classification or shape.
import { beforeAll, describe, expect, it } from 'vitest';
import { initParser } from '../../src/router/parser.js';
import { statementFingerprint } from '../../src/router/statement-fingerprint.js';
import { literalFreeKey } from '../../src/router/fingerprint.js';
import { Classifier } from '../../src/router/classifier.js';
import { StatementKeys } from '../../src/frontend/statement-keys.js';

beforeAll(async () => {
  await initParser();
});

const fp = (sql: string) => statementFingerprint(sql, literalFreeKey(sql) ?? sql, 64 * 1024);

describe('statementFingerprint', () => {
  it('is the same for texts that differ in constants, parameters, whitespace, case and comments', () => {
    const same = [
      'SELECT abalance FROM pgbench_accounts WHERE aid = 1',
      'SELECT abalance FROM pgbench_accounts WHERE aid = 98765',
      'SELECT abalance FROM pgbench_accounts WHERE aid = $1',
      'select abalance\n  from pgbench_accounts where aid=42',
      '/* pgsplit:replica */ SELECT abalance FROM pgbench_accounts WHERE aid = 7',
    ];
    expect(new Set(same.map(fp)).size).toBe(1);
    expect(fp(same[0])).toMatch(/^[0-9a-f]{16}$/);
  });

  it('treats a constant list (IN, ARRAY) as one constant whatever its length', () => {
    expect(fp('SELECT * FROM t WHERE id IN (1, 2)')).toBe(fp('SELECT * FROM t WHERE id IN (5, 6, 7, 8)'));
    expect(fp("SELECT ARRAY['a', 'b']")).toBe(fp("SELECT ARRAY['x']"));
    // A list with a column in it is structure.
    expect(fp('SELECT * FROM t WHERE id IN (1, 2)')).not.toBe(fp('SELECT * FROM t WHERE id IN (1, other)'));
  });

  it('differs when the structure differs', () => {
    const texts = [
      'SELECT a FROM t WHERE b = 1',
      'SELECT a FROM t WHERE c = 1',
      'SELECT a FROM u WHERE b = 1',
      'SELECT a, b FROM t WHERE b = 1',
      'UPDATE t SET a = 1 WHERE b = 1',
      "INSERT INTO t VALUES (1, 'x')",
      "INSERT INTO t VALUES (1, 'x', 3)",
      'SELECT a FROM t WHERE b = 1; SELECT 1',
    ];
    expect(new Set(texts.map(fp)).size).toBe(texts.length);
  });

  it('falls back to the literal-free text for what the parser rejects or is not given', () => {
    expect(fp('SELEC 1')).toBe(fp('SELEC 2'));
    expect(fp('SELEC 1')).not.toBe(fp('SELEC x'));
    // Nested deeper than a recursive walk of the tree can go: still a fingerprint, never an exception in the session.
    const deep = (x: number) => `SELECT ${'f('.repeat(4000)}${x}${')'.repeat(4000)}`;
    expect(fp(deep(1))).toBe(fp(deep(2)));
    expect(fp(deep(1))).toMatch(/^[0-9a-f]{16}$/);
    const long = `SELECT ${'1 + '.repeat(100)}1`;
    expect(statementFingerprint(long, literalFreeKey(long)!, 10)).toBe(statementFingerprint(long.replace(/1/g, '2'), literalFreeKey(long)!, 10));
  });
});

describe('StatementKeys', () => {
  it('computes a fingerprint once per shape and remembers it against the shared classification', () => {
    const classifier = new Classifier();
    const keys = new StatementKeys(() => 64 * 1024);
    const texts = Array.from({ length: 50 }, (_, i) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${i}`);
    const got = texts.map((sql) => keys.forText(classifier.classify(sql), sql));
    expect(new Set(got).size).toBe(1);
    expect(keys.fingerprints).toBe(1);
    expect(got[0].text).toBe('SELECT abalance FROM pgbench_accounts WHERE aid = ?');
    // The extended-protocol form of the same statement is the same statement.
    const param = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1';
    const cls = classifier.classify(param);
    expect(keys.forText(cls, param).id).toBe(got[0].id);
    expect(keys.of(cls)).toBe(keys.forText(cls, param));
    expect(keys.fingerprints).toBe(2);
  });

  it('knows no key for a classification it was never given', () => {
    const keys = new StatementKeys(() => 64 * 1024);
    expect(keys.of(new Classifier().classify('SELECT 1'))).toBeNull();
    expect(keys.of(null)).toBeNull();
  });

  it('finds a shape again for a classification made afresh each time (statements the classifier does not cache)', () => {
    const classifier = new Classifier();
    const keys = new StatementKeys(() => 64 * 1024);
    const a = keys.forText(classifier.classify('CREATE TABLE t1 (a int DEFAULT 1)'), 'CREATE TABLE t1 (a int DEFAULT 1)');
    const b = keys.forText(classifier.classify('CREATE TABLE t1 (a int DEFAULT 2)'), 'CREATE TABLE t1 (a int DEFAULT 2)');
    expect(b).toBe(a);
    expect(keys.fingerprints).toBe(1);
  });

  it('names a text over the parse bound by its shape, fingerprinted once', () => {
    const classifier = new Classifier({ maxParseLength: 1000 });
    const keys = new StatementKeys(() => 1000);
    const long = (n: number) => `SELECT ${'1 + '.repeat(5000)}${n}`;
    const a = keys.forText(classifier.classify(long(1)), long(1));
    const b = keys.forText(classifier.classify(long(2)), long(2));
    expect(b).toBe(a);
    expect(keys.fingerprints).toBe(1);
    expect(Buffer.byteLength(a.text)).toBeLessThanOrEqual(1024);
  });

  it('keeps at most 1 KB of a long text', () => {
    const keys = new StatementKeys(() => 64 * 1024);
    const sql = `SELECT ${Array.from({ length: 400 }, (_, i) => `c${i}`).join(', ')} FROM t`;
    const k = keys.forText(new Classifier().classify(sql), sql);
    expect(Buffer.byteLength(k.text)).toBe(1024);
    expect(sql.startsWith(k.text)).toBe(true);
  });
});
