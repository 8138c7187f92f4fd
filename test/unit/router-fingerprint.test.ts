// literalFreeKey: the cache key that blanks constants but keeps everything that can change a routing decision.
import { describe, expect, it } from 'vitest';
import { literalFreeKey } from '../../src/router/fingerprint.js';

describe('literalFreeKey', () => {
  it.each([
    ['SELECT * FROM t WHERE id = 42', 'SELECT * FROM t WHERE id = ?'],
    ["SELECT * FROM t WHERE name = 'bob'", 'SELECT * FROM t WHERE name = ?'],
    ["SELECT 'it''s', 1.5, .5, 1e-5, 2E+3", 'SELECT ?, ?, ?, ?, ?'],
    ["SELECT E'a\\'b;c', 'd'", 'SELECT E?, ?'],
    ['SELECT $$ a; b $$, $tag$ x $tag$', 'SELECT ?, ?'],
    ['SELECT $1, $2 FROM t1 WHERE c2 = 3', 'SELECT $1, $2 FROM t1 WHERE c2 = ?'],
    ['SELECT "col 1" FROM "T" WHERE x = 1', 'SELECT "col 1" FROM "T" WHERE x = ?'],
    ['/* pgsplit:primary */ SELECT 1', '/* pgsplit:primary */ SELECT ?'],
    ["SELECT 1 -- it's a comment\n", "SELECT ? -- it's a comment\n"],
    ['/* a /* nested 5 */ b */ SELECT 7', '/* a /* nested 5 */ b */ SELECT ?'],
  ])('%s', (sql, key) => {
    expect(literalFreeKey(sql)).toBe(key);
  });

  it('gives up (null) on text it cannot scan safely', () => {
    expect(literalFreeKey("SELECT 'unterminated")).toBeNull();
    expect(literalFreeKey('SELECT "unterminated')).toBeNull();
    expect(literalFreeKey('SELECT 1 /* open')).toBeNull();
    expect(literalFreeKey('SELECT $x$ open')).toBeNull();
  });

  it('keeps digits that are part of names', () => {
    expect(literalFreeKey('SELECT t1.c2 FROM t1')).toBe('SELECT t1.c2 FROM t1');
  });
});
