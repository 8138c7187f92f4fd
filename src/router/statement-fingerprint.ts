// A statement's fingerprint for the statement statistics: a hash of its parse tree without constants and positions, so that texts differing only in values, parameters ($1 or 5), whitespace, case or comments share one.
//
// The libpg-query build pgsplit uses (17.x, WebAssembly) exposes only the parser, not pg_query's own fingerprint,
// so this follows the same idea on the tree the parser returns: locations dropped, every constant and parameter
// the same mark, and an IN list or ARRAY[...] made only of constants one mark whatever its length (as PostgreSQL
// 18's pg_stat_statements squashes them), so `IN (1, 2)` and `IN (1, 2, 3)` are one statement.
import { createHash } from 'node:crypto';
import { parseStatements } from './parser.js';

const CONSTANT = '?';
const POSITIONS = new Set(['location', 'stmt_location', 'stmt_len']);

function isConstant(node: unknown): boolean {
  if (typeof node !== 'object' || node === null) return false;
  const n = node as Record<string, unknown>;
  if ('A_Const' in n || 'ParamRef' in n) return true;
  // 'x'::date, $1::int: still a constant.
  const cast = n.TypeCast as { arg?: unknown } | undefined;
  return cast !== undefined && isConstant(cast.arg);
}

function allConstants(items: unknown): boolean {
  return Array.isArray(items) && items.length > 0 && items.every(isConstant);
}

function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  if (POSITIONS.has(key)) return undefined;
  if (typeof value !== 'object' || value === null) return value;
  // ARRAY[…] keeps its elements in A_ArrayExpr.elements; the right side of `x IN (…)` is a List node.
  if (Array.isArray(value)) return key === 'elements' && allConstants(value) ? CONSTANT : value;
  const v = value as Record<string, unknown>;
  if ('A_Const' in v || 'ParamRef' in v) return CONSTANT;
  if (key === 'rexpr' && this.kind === 'AEXPR_IN' && allConstants((v.List as { items?: unknown } | undefined)?.items)) return CONSTANT;
  return value;
}

const hash = (s: string) => createHash('sha1').update(s).digest('hex').slice(0, 16);

/**
 * The fingerprint of `sql` (16 hex digits). Text the parser rejects or is not given (over `maxParseLength`) is
 * fingerprinted by `shape` instead (its literal-free text), so that it is still one statement per shape.
 */
export function statementFingerprint(sql: string, shape: string, maxParseLength: number): string {
  const parsed = parseStatements(sql, maxParseLength);
  if (parsed.ok) {
    try {
      return hash(JSON.stringify(parsed.stmts, replacer));
    } catch {
      // A tree nested thousands deep (f(f(f(…)))) overflows the stack of a recursive walk: named by its shape instead.
    }
  }
  return hash(`\u0000${shape}`);
}
