// pgsplit's server-side names for prepared statements: one name per distinct Parse (text and parameter types), shared by every session.
//
// Clients choose their own names, and two clients may give one name to different statements, so servers that
// several clients use (pooling) see pgsplit's names instead. The same statement gets the same name in every
// session, so a pooled server that prepared it for one client serves it to the next without a new Parse.

export interface RegisteredStatement {
  /** The name servers know it by. */
  readonly name: string;
  /** The Parse message that prepares it under that name. */
  readonly parse: Buffer;
  refs: number;
  /** A server prepared it without an error: another client's Parse of it may be answered without one. */
  valid: boolean;
}

/** Prefix of every server-side name; client names with it that pgsplit did not hand out are refused by the server. */
export const SERVER_PREFIX = 'pgsplit_s';
/** A name no statement ever has (Close of a client's statement, Bind of a name that is not the client's). */
export const NO_STATEMENT = 'pgsplit_x';

export class StatementRegistry {
  private readonly byKey = new Map<string, RegisteredStatement>();
  private next = 1;

  get size(): number {
    return this.byKey.size;
  }

  /**
   * The server-side statement for a Parse body whose name part ends at `nameEnd` (the query text and parameter
   * types follow). `rename` builds the Parse message under the new name. Each call takes a reference.
   */
  acquire(body: Buffer, nameEnd: number, rename: (name: string) => Buffer): RegisteredStatement {
    const key = body.toString('latin1', nameEnd + 1);
    let s = this.byKey.get(key);
    if (s === undefined) {
      const name = SERVER_PREFIX + (this.next++).toString(36);
      s = { name, parse: rename(name), refs: 0, valid: false };
      this.byKey.set(key, s);
      keys.set(s, key);
    }
    s.refs++;
    return s;
  }

  release(s: RegisteredStatement): void {
    s.refs--;
    if (s.refs > 0) return;
    const key = keys.get(s);
    if (key !== undefined && this.byKey.get(key) === s) this.byKey.delete(key);
  }
}

const keys = new WeakMap<RegisteredStatement, string>();

/** One registry per process: every session's statements share server names. */
export const statementRegistry = new StatementRegistry();
