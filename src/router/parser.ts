// PostgreSQL's own grammar (libpg-query, WebAssembly): load it once at start-up, then parse Query strings synchronously.
import { loadModule, parseSync } from 'libpg-query';

/** routing.max_parse_length default: above this many bytes a statement goes to the primary unparsed. */
export const DEFAULT_MAX_PARSE_LENGTH = 64 * 1024;

/** One statement of a Query string; stmt_location/stmt_len are UTF-8 byte offsets (0 / absent = to the end). */
export interface RawStmt {
  stmt: unknown;
  stmt_location?: number;
  stmt_len?: number;
}

export type ParseResult =
  | { ok: true; stmts: RawStmt[] }
  | { ok: false; error: string; tooLong?: true };

let ready = false;

/** Loads and instantiates the WebAssembly module; call once before parseStatements (idempotent). */
export async function initParser(): Promise<void> {
  if (ready) return;
  await loadModule();
  ready = true;
}

export function parserReady(): boolean {
  return ready;
}

/**
 * Whether the text is longer than `max` bytes in UTF-8. Byte-exact without encoding the string: a UTF-16 code
 * unit takes 1 to 3 bytes, so only strings between max/3 and max characters need counting.
 */
export function exceedsLength(sql: string, max: number): boolean {
  if (sql.length > max) return true;
  if (sql.length * 3 <= max) return false;
  return Buffer.byteLength(sql, 'utf8') > max;
}

/**
 * The statements of a Query string, as RawStmt nodes. Not ok for a syntax error (the primary will report the
 * real one) or for text over `maxLength` bytes, which is not parsed at all so that one huge statement cannot
 * hold up the event loop.
 */
export function parseStatements(sql: string, maxLength: number = DEFAULT_MAX_PARSE_LENGTH): ParseResult {
  if (!ready) throw new Error('pgsplit: the SQL parser is not loaded (await initParser() at start-up)');
  if (exceedsLength(sql, maxLength)) return { ok: false, error: 'too long', tooLong: true };
  // libpg-query refuses blank input; PostgreSQL answers it with EmptyQueryResponse, i.e. zero statements.
  if (sql.trim() === '') return { ok: true, stmts: [] };
  try {
    const tree = parseSync(sql) as { stmts?: RawStmt[] };
    return { ok: true, stmts: tree.stmts ?? [] };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}
