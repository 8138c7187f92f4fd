// classify(): where a fresh session sends a Query string, combining the size bound, lexical pre-check, parser and hints.
import type { Classification, StatementInfo, Target } from './classification.js';
import type { FunctionCatalog } from './functions.js';
import { isWriteKeyword, keywordAt, obviousWrite, pgsplitSet, scanLeading, type Leading, type RouteHints } from './lexical.js';
import { DEFAULT_MAX_PARSE_LENGTH, exceedsLength, parseStatements, type RawStmt } from './parser.js';
import { classifyStmt } from './raw-stmt.js';
import { pgsplitSetting } from './variable-set.js';

export interface ClassifyOptions {
  /** routing.max_parse_length in bytes. */
  maxParseLength?: number;
  /** false skips the lexical pre-check (tests use it to compare both paths). */
  lexical?: boolean;
}

// Statements whose text the session may have to replay on another backend (or strip, for intercepted ones).
const REPLAYED = new Set<StatementInfo['kind']>(['set', 'reset', 'set-transaction', 'discard', 'prepare', 'other']);

const ASCII_RE = /^[\x00-\x7f]*$/;

/** stmt_location/stmt_len are byte offsets into the UTF-8 text the parser saw. */
function statementText(sql: string, raw: RawStmt, utf8: { buf?: Buffer; ascii?: boolean }): string {
  const start = raw.stmt_location ?? 0;
  const len = raw.stmt_len ?? 0;
  utf8.ascii ??= ASCII_RE.test(sql);
  if (utf8.ascii) return (len > 0 ? sql.slice(start, start + len) : sql.slice(start)).trim();
  utf8.buf ??= Buffer.from(sql, 'utf8');
  return utf8.buf.subarray(start, len > 0 ? start + len : undefined).toString('utf8').trim();
}

const TXN_END = new Set<StatementInfo['kind']>(['commit', 'rollback', 'savepoint']);

/**
 * A Query string with several statements runs as one unit on one backend (an implicit transaction unless it has
 * its own BEGIN/COMMIT): a replica only when all of it is reads, possibly inside BEGIN READ ONLY … COMMIT.
 */
function combine(statements: StatementInfo[]): { target: Target; reason: string } {
  if (statements.length === 0) return { target: 'replica', reason: 'empty' };
  if (statements.length === 1) return { target: statements[0].target, reason: statements[0].reason };
  let inReadOnly = false;
  let sawReadOnly = false;
  let primary = false;
  let session = false;
  for (const s of statements) {
    if (s.kind === 'begin' && s.readOnly) {
      inReadOnly = sawReadOnly = true;
    } else if (inReadOnly && (TXN_END.has(s.kind) || (s.kind === 'set-transaction' && s.reason !== 'set-transaction-snapshot'))) {
      // Ending or nesting inside a read-only transaction keeps it on the replica it started on.
      if ((s.kind === 'commit' || s.kind === 'rollback') && !s.chain) inReadOnly = false;
    } else if (s.target === 'primary') primary = true;
    else if (s.target === 'session') session = true;
  }
  if (primary) return { target: 'primary', reason: 'multi-statement-write' };
  if (session) return { target: 'session', reason: 'multi-statement-session' };
  return { target: 'replica', reason: sawReadOnly ? 'txn-begin-read-only' : 'multi-statement-read' };
}

// Transaction control and session statements follow the session, not hints.
const HINT_PROOF = new Set<StatementInfo['kind']>(['begin', 'commit', 'rollback', 'savepoint', 'set-transaction']);

/** A replica hint may override the primary only where the primary was chosen for lack of knowledge, not for a write. */
function mayRunOnReplica(s: StatementInfo): boolean {
  if (s.target !== 'primary') return true;
  if (s.pin) return false;
  if (s.kind === 'other') return s.reason === 'parse-error' || s.reason === 'too-long';
  return s.reason.startsWith('volatile-function:');
}

function applyHints(c: Classification, hints: RouteHints | undefined): Classification {
  if (!hints) return c;
  if (hints.error !== undefined) c.hintError = hints.error;
  if (hints.maxLagMs !== undefined) c.maxLagMs = hints.maxLagMs;
  if (hints.route === undefined) return c;
  c.hint = hints.route;
  if (c.target === 'session' || c.statements.some((s) => HINT_PROOF.has(s.kind))) return c;
  if (hints.route === 'primary' && c.target === 'replica') {
    c.target = 'primary';
    c.reason = 'hint';
  } else if (hints.route === 'replica' && c.target === 'primary') {
    if (c.statements.every(mayRunOnReplica)) {
      c.target = 'replica';
      c.reason = 'hint';
    } else c.reason = 'hint-ignored-write';
  }
  return c;
}

/** Above routing.max_parse_length: the primary, unparsed. */
export function classifySizeBound(sql: string, leading: Leading): Classification {
  const kind = isWriteKeyword(keywordAt(sql, leading.start)) ? 'write' : 'other';
  return applyHints({ target: 'primary', reason: 'too-long', via: 'size-bound', statements: [{ kind, target: 'primary', reason: 'too-long' }] }, leading.hints);
}

/** The lexical pre-check's answer, or null when the parser must decide. */
export function classifyLexical(sql: string, leading: Leading): Classification | null {
  const w = obviousWrite(sql, leading);
  if (!w) return null;
  return applyHints({ target: 'primary', reason: w.reason, via: 'lexical', statements: [{ kind: 'write', target: 'primary', reason: w.reason }] }, leading.hints);
}

export function classifyWithParser(sql: string, catalog: FunctionCatalog, leading: Leading, maxParseLength: number = DEFAULT_MAX_PARSE_LENGTH): Classification {
  const parsed = parseStatements(sql, maxParseLength);
  if (!parsed.ok) {
    if (parsed.tooLong) return classifySizeBound(sql, leading);
    const own = pgsplitSet(sql, leading);
    if (own) {
      const info = pgsplitSetting(own.name, own.value, own.local, 'set');
      info.text = sql.slice(leading.start).trim();
      return { target: 'session', reason: info.reason, via: 'parser', statements: [info], intercept: true };
    }
    // The primary runs it and returns PostgreSQL's own error to the client.
    const c: Classification = { target: 'primary', reason: 'parse-error', via: 'parser', error: parsed.error, statements: [{ kind: 'other', target: 'primary', reason: 'parse-error' }] };
    return applyHints(c, leading.hints);
  }
  const utf8 = {};
  const statements = parsed.stmts.map((raw) => {
    const info = classifyStmt(raw.stmt, catalog);
    if (REPLAYED.has(info.kind) || info.intercept) info.text = statementText(sql, raw, utf8);
    return info;
  });
  const { target, reason } = combine(statements);
  const c: Classification = { target, reason, via: 'parser', statements };
  if (statements.length > 0 && statements.every((s) => s.intercept)) c.intercept = true;
  return applyHints(c, leading.hints);
}

/** Where a fresh session (no transaction, no pin) sends `sql`, and what each statement does to the session. Pure. */
export function classify(sql: string, catalog: FunctionCatalog, options: ClassifyOptions = {}): Classification {
  const maxParseLength = options.maxParseLength ?? DEFAULT_MAX_PARSE_LENGTH;
  const leading = scanLeading(sql);
  if (exceedsLength(sql, maxParseLength)) return classifySizeBound(sql, leading);
  if (options.lexical !== false) {
    const fast = classifyLexical(sql, leading);
    if (fast) return fast;
  }
  return classifyWithParser(sql, catalog, leading, maxParseLength);
}
