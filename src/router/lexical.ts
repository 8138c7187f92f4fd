// Cheap text checks ahead of the parser: leading comments (and the pgsplit: hints in them) and obvious writes by first keyword.
import { parseDuration } from '../config/units.js';

/** Hints from comments before the first token: `/* pgsplit:replica *\/`, `-- pgsplit:primary`, `pgsplit:max_lag=500ms`. */
export interface RouteHints {
  route?: 'primary' | 'replica';
  maxLagMs?: number;
  /** What could not be understood; such a hint is ignored rather than guessed at. */
  error?: string;
}

export interface Leading {
  /** Index of the first token after whitespace and comments (sql.length when there is none). */
  start: number;
  /** An unterminated block comment: only the parser may say what this is. */
  unterminated: boolean;
  hints?: RouteHints;
}

const SLASH = 0x2f;
const STAR = 0x2a;
const DASH = 0x2d;
const NL = 0x0a;
const CR = 0x0d;

// The same whitespace as PostgreSQL's scanner: space, \t, \n, \r, \f, \v.
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

// ident_start / ident_cont of scan.l; every non-ASCII character counts as a letter there.
function isIdentStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c >= 0x80;
}
function isIdentCont(c: number): boolean {
  return isIdentStart(c) || (c >= 0x30 && c <= 0x39) || c === 0x24;
}

/** End of a block comment starting at i ("/*"), nesting like PostgreSQL; -1 when unterminated. */
function blockCommentEnd(sql: string, i: number): number {
  let depth = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === SLASH && sql.charCodeAt(i + 1) === STAR) {
      depth++;
      i += 2;
    } else if (c === STAR && sql.charCodeAt(i + 1) === SLASH) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else i++;
  }
  return -1;
}

function lineCommentEnd(sql: string, i: number): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === NL || c === CR) return i;
    i++;
  }
  return n;
}

/** Skips whitespace and comments from i; -1 when a block comment never ends. */
export function skipSpaceAndComments(sql: string, i: number, comments?: string[]): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) i++;
    else if (c === DASH && sql.charCodeAt(i + 1) === DASH) {
      const end = lineCommentEnd(sql, i + 2);
      comments?.push(sql.slice(i + 2, end));
      i = end;
    } else if (c === SLASH && sql.charCodeAt(i + 1) === STAR) {
      const end = blockCommentEnd(sql, i);
      if (end < 0) return -1;
      comments?.push(sql.slice(i + 2, end - 2));
      i = end;
    } else break;
  }
  return i;
}

const HINT_RE = /pgsplit:([A-Za-z_]+)(?:\s*=\s*([^\s,;*]+))?/g;

function parseHints(comments: string[]): RouteHints | undefined {
  let hints: RouteHints | undefined;
  for (const text of comments) {
    if (!text.includes('pgsplit:')) continue;
    for (const m of text.matchAll(HINT_RE)) {
      hints ??= {};
      const name = m[1].toLowerCase();
      const value = m[2];
      if ((name === 'primary' || name === 'replica') && value === undefined) hints.route = name;
      else if (name === 'max_lag' && value !== undefined) {
        try {
          hints.maxLagMs = parseDuration(value);
        } catch {
          hints.error = `pgsplit:max_lag: invalid duration "${value}" (expected e.g. 500ms, 2s)`;
        }
      } else hints.error = `unknown hint "${m[0]}" (expected pgsplit:primary, pgsplit:replica or pgsplit:max_lag=<duration>)`;
    }
  }
  return hints;
}

/** Where the statement text starts, and the pgsplit: hints in the comments before it. */
export function scanLeading(sql: string): Leading {
  // Most statements start with a letter: no comment to read, nothing to allocate.
  if (sql.length > 0 && isIdentStart(sql.charCodeAt(0))) return { start: 0, unterminated: false };
  const comments: string[] = [];
  const start = skipSpaceAndComments(sql, 0, comments);
  const hints = parseHints(comments);
  if (start < 0) return { start: sql.length, unterminated: true, hints };
  return hints ? { start, unterminated: false, hints } : { start, unterminated: false };
}

function wordEnd(sql: string, i: number): number {
  const n = sql.length;
  while (i < n && isIdentCont(sql.charCodeAt(i))) i++;
  return i;
}

/** The keyword at i, uppercased ("" when i is not at a word). */
export function keywordAt(sql: string, i: number): string {
  if (i >= sql.length || !isIdentStart(sql.charCodeAt(i))) return '';
  return sql.slice(i, wordEnd(sql, i)).toUpperCase();
}

export type LexicalReason = 'write' | 'ddl' | 'maintenance' | 'call' | 'do' | 'lock' | 'notify' | 'copy-from';

// First keywords that can only begin a write. The reasons are the ones the parser path gives the same statement,
// so an answer does not change with the path that produced it. LISTEN, UNLISTEN, SET, DISCARD … are not here:
// the session needs the details (pins, settings) that only the parse tree has.
const WRITE_KEYWORDS: ReadonlyMap<string, LexicalReason> = new Map<string, LexicalReason>([
  ['INSERT', 'write'],
  ['UPDATE', 'write'],
  ['DELETE', 'write'],
  ['MERGE', 'write'],
  ['TRUNCATE', 'write'],
  ['CREATE', 'ddl'],
  ['ALTER', 'ddl'],
  ['DROP', 'ddl'],
  ['GRANT', 'ddl'],
  ['REVOKE', 'ddl'],
  ['COMMENT', 'ddl'],
  ['SECURITY', 'ddl'],
  ['IMPORT', 'ddl'],
  ['REFRESH', 'ddl'],
  ['REASSIGN', 'ddl'],
  ['VACUUM', 'maintenance'],
  ['ANALYZE', 'maintenance'],
  ['ANALYSE', 'maintenance'],
  ['CLUSTER', 'maintenance'],
  ['REINDEX', 'maintenance'],
  ['CHECKPOINT', 'maintenance'],
  ['CALL', 'call'],
  ['DO', 'do'],
  ['LOCK', 'lock'],
  ['NOTIFY', 'notify'],
  ['COPY', 'copy-from'],
]);

export function isWriteKeyword(keyword: string): boolean {
  return WRITE_KEYWORDS.has(keyword);
}

// Text that may carry a pin or a session setting (temp tables, advisory locks, set_config, LISTEN inside a DO
// block) anywhere in a write: such statements go through the parser so the session learns about them.
const NEEDS_PARSE_RE = /advisory|set_config|pg_temp|\btemp(?:orary)?\b|\blisten\b/i;
const AS_RE = /\bAS\b/i;

/** CREATE [UNLOGGED] TABLE … AS: the parser calls that 'select-into', not 'ddl'. */
function isCreateTableAs(sql: string, afterCreate: number): boolean {
  let i = skipSpaceAndComments(sql, afterCreate);
  if (i < 0) return true;
  let kw = keywordAt(sql, i);
  if (kw === 'UNLOGGED') {
    i = skipSpaceAndComments(sql, i + kw.length);
    if (i < 0) return true;
    kw = keywordAt(sql, i);
  }
  return kw === 'TABLE' && AS_RE.test(sql);
}

/** Skips an identifier, plain or "quoted"; returns i unchanged when there is none. */
function skipIdentifier(sql: string, i: number): number {
  if (sql.charCodeAt(i) === 0x22) return quotedEnd(sql, i, 0x22, false);
  return isIdentStart(sql.charCodeAt(i)) ? wordEnd(sql, i) : i;
}

/** COPY [BINARY] name[.name…] [(columns)] FROM: anything else (COPY (query) TO, COPY t TO) is for the parser. */
function isCopyFrom(sql: string, afterCopy: number): boolean {
  let i = skipSpaceAndComments(sql, afterCopy);
  if (i < 0) return false;
  if (keywordAt(sql, i) === 'BINARY') i = skipSpaceAndComments(sql, i + 6);
  if (i < 0) return false;
  for (;;) {
    const end = skipIdentifier(sql, i);
    if (end <= i) return false;
    i = skipSpaceAndComments(sql, end);
    if (i < 0) return false;
    if (sql.charCodeAt(i) !== 0x2e) break;
    i = skipSpaceAndComments(sql, i + 1);
    if (i < 0) return false;
  }
  if (sql.charCodeAt(i) === 0x28) {
    i++;
    for (;;) {
      i = skipSpaceAndComments(sql, i);
      if (i < 0) return false;
      const c = sql.charCodeAt(i);
      if (c === 0x29) break;
      if (c === 0x2c) {
        i++;
        continue;
      }
      const end = skipIdentifier(sql, i);
      if (end <= i) return false;
      i = end;
    }
    i = skipSpaceAndComments(sql, i + 1);
    if (i < 0) return false;
  }
  return keywordAt(sql, i) === 'FROM';
}

/** End of a quoted token starting at i ('…', "…", E'…' when `backslash`); -1 when unterminated. */
function quotedEnd(sql: string, i: number, quote: number, backslash: boolean): number {
  const n = sql.length;
  i++;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (backslash && c === 0x5c) i += 2;
    else if (c === quote) {
      if (sql.charCodeAt(i + 1) === quote) i += 2;
      else return i + 1;
    } else i++;
  }
  return -1;
}

const DOLLAR_TAG_RE = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

/**
 * True when nothing but whitespace, comments and semicolons follows the first statement. Quotes, dollar quotes
 * and comments are skipped the way PostgreSQL's scanner does (standard_conforming_strings on); anything
 * unterminated answers false so the parser decides.
 */
export function isSingleStatement(sql: string, from: number): boolean {
  const n = sql.length;
  let i = from;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 0x3b) {
      // ';' then only blanks, comments and more ';'
      let j = i + 1;
      for (;;) {
        j = skipSpaceAndComments(sql, j);
        if (j < 0) return false;
        if (j < n && sql.charCodeAt(j) === 0x3b) j++;
        else break;
      }
      return j === n;
    }
    if (c === 0x27) {
      const prev = i > 0 ? sql.charCodeAt(i - 1) : 0;
      const escape = (prev === 0x45 || prev === 0x65) && !(i > 1 && isIdentCont(sql.charCodeAt(i - 2)));
      i = quotedEnd(sql, i, 0x27, escape);
    } else if (c === 0x22) {
      i = quotedEnd(sql, i, 0x22, false);
    } else if (c === 0x24) {
      if (i > 0 && isIdentCont(sql.charCodeAt(i - 1))) {
        i++; // part of an identifier such as a$b
        continue;
      }
      DOLLAR_TAG_RE.lastIndex = i;
      const m = DOLLAR_TAG_RE.exec(sql);
      if (!m) {
        i++; // $1 parameter
        continue;
      }
      const close = sql.indexOf(m[0], i + m[0].length);
      i = close < 0 ? -1 : close + m[0].length;
    } else if (c === DASH && sql.charCodeAt(i + 1) === DASH) {
      i = lineCommentEnd(sql, i + 2);
    } else if (c === SLASH && sql.charCodeAt(i + 1) === STAR) {
      i = blockCommentEnd(sql, i);
    } else {
      i++;
      continue;
    }
    if (i < 0) return false;
  }
  return true;
}

export interface ObviousWrite {
  keyword: string;
  reason: LexicalReason;
}

/**
 * A single statement whose first keyword makes it a write that carries no session state; null means "ask the
 * parser". This may only ever answer "write": deciding that something is a read takes the parser.
 */
export function obviousWrite(sql: string, leading: Leading): ObviousWrite | null {
  if (leading.unterminated) return null;
  const keyword = keywordAt(sql, leading.start);
  const reason = WRITE_KEYWORDS.get(keyword);
  if (reason === undefined) return null;
  const after = leading.start + keyword.length;
  if (NEEDS_PARSE_RE.test(sql)) return null;
  if (keyword === 'CREATE' && isCreateTableAs(sql, after)) return null;
  if (keyword === 'COPY' && !isCopyFrom(sql, after)) return null;
  if (!isSingleStatement(sql, after)) return null;
  return { keyword, reason };
}

// SET pgsplit.route = primary: PRIMARY is a reserved word, so PostgreSQL's grammar rejects the unquoted form that
// users naturally type. The proxy never forwards pgsplit.* anyway, so it accepts any single word or literal.
const PGSPLIT_SET_RE =
  /^SET\s+(?:(SESSION|LOCAL)\s+)?(pgsplit\.[A-Za-z_][A-Za-z0-9_]*)\s*(?:=|\s+TO\b)\s*(?:'((?:[^']|'')*)'|([A-Za-z0-9_.]+))\s*;?\s*$/i;

export interface PgsplitSet {
  name: string;
  value: string;
  local: boolean;
}

/** `SET [SESSION|LOCAL] pgsplit.x = word`, for when the parser rejected it; null when the text is anything else. */
export function pgsplitSet(sql: string, leading: Leading): PgsplitSet | null {
  if (leading.unterminated) return null;
  const m = PGSPLIT_SET_RE.exec(sql.slice(leading.start));
  if (!m) return null;
  return { name: m[2].toLowerCase(), value: m[3] !== undefined ? m[3].replace(/''/g, "'") : m[4], local: m[1]?.toUpperCase() === 'LOCAL' };
}
