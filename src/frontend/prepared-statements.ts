// The session's prepared statements: the client's names mapped to pgsplit's server-side ones, and what a server lacks to run a unit.
import type { ServerLink } from '../backend/server-link.js';
import { F } from '../protocol/codes.js';
import { errors } from '../errors.js';
import { MessageWriter } from '../protocol/writer.js';
import { closeStatement, renameStatement, statementNameSpan } from '../protocol/statement-names.js';
import { decodeParse } from '../protocol/frontend-messages.js';
import type { Classification } from '../router/classification.js';
import type { Classifier } from '../router/classifier.js';
import { addPart, push, UNKNOWN_STATEMENT, type Unit } from './unit.js';
import { NO_STATEMENT, SERVER_PREFIX, statementRegistry, type RegisteredStatement } from './statement-registry.js';
import type { StatementKeys } from './statement-keys.js';

// A unit may go to any server (pooled or not), so each statement is kept as the Parse message that prepares it
// under its server-side name, to be sent to a server that does not have it (ServerLink.prepared says which do).
interface Statement {
  server: RegisteredStatement;
  cls: Classification;
  /** Size of its Parse message, counted against limits.max_prepared_bytes. */
  bytes: number;
}

const SYNC = MessageWriter.message(F.Sync, () => {});
// Never written to: a session swaps in maps of its own before its first named statement.
const NO_NAMED = new Map<string, Statement>();
const NO_SERVER_NAMES = new Map<string, { st: Statement; names: number }>();

export class PreparedStatements {
  // Shared empty maps until the session prepares something (most sessions never do; thousands may be idle).
  private named: Map<string, Statement> = NO_NAMED;
  /** The same statements by server-side name, with how many of the client's names stand for each. */
  private byServerName: Map<string, { st: Statement; names: number }> = NO_SERVER_NAMES;
  private unnamed: { parse: Buffer; cls: Classification } | null = null;
  /** The statement of the last Bind: what the next Execute runs (for the statement statistics). */
  bound: Classification | null = null;
  /** Bytes of the named statements' Parse messages (each client name counts its own). */
  private namedBytes = 0;

  constructor(
    private readonly classifier: Classifier,
    /** limits.max_prepared_statements, read when a new name is prepared. */
    private readonly maxNamed: () => number = () => Infinity,
    /** With statement statistics: each Parse's text is named here once, so its Executes need no text. */
    private readonly keys: StatementKeys | null = null,
    /** limits.max_prepared_bytes, read when a statement is prepared under a name. */
    private readonly maxBytes: () => number = () => Infinity,
  ) {}

  get size(): number {
    return this.named.size;
  }

  /**
   * An extended-protocol message joins `u`: the statements it Parses, uses (their classifications count for the
   * unit) or Closes. Returns the frame to send in its place (named statements renamed to their server names).
   */
  analyze(u: Unit, type: number, body: Buffer, frame: Buffer): Buffer {
    if (type === F.Parse) {
      const { name, nameEnd, query } = decodeParse(body);
      if (name !== '' && !this.named.has(name) && this.named.size >= this.maxNamed()) {
        // Not recorded: the unit is refused as a whole (see refusal.ts), so the server never has it either.
        u.refusal ??= errors.sessionLimit('prepared statements', this.maxNamed(), 'limits.max_prepared_statements');
        return frame;
      }
      if (name !== '') {
        // The count alone would let 10,000 statements of up to max_message_size each stay in the proxy.
        const after = this.namedBytes - (this.named.get(name)?.bytes ?? 0) + frame.length;
        if (after > this.maxBytes()) {
          u.refusal ??= errors.preparedBytesLimit(after, this.maxBytes());
          return frame;
        }
      }
      const cls = this.classifier.classify(query);
      addPart(u, cls);
      if (this.keys !== null) this.keys.forText(cls, query);
      if (name === '') {
        u.notOnlyParses = true;
        const copy = Buffer.from(frame);
        this.unnamed = { parse: copy, cls };
        u.unnamedParse = copy;
        return frame;
      }
      const server = statementRegistry.acquire(body, nameEnd, (n) => renameStatement(frame, n));
      this.forget(name);
      const st = { server, cls, bytes: frame.length };
      this.namedBytes += st.bytes;
      if (this.named === NO_NAMED) {
        this.named = new Map();
        this.byServerName = new Map();
      }
      this.named.set(name, st);
      const entry = this.byServerName.get(server.name);
      if (entry) entry.names++;
      else this.byServerName.set(server.name, { st, names: 1 });
      u.parses = push(u.parses, [server.name, server.parse]);
      return server.parse;
    }
    u.notOnlyParses = true;
    if (type === F.Bind || type === F.Describe || type === F.Close) {
      const span = statementNameSpan(frame);
      if (span === null) return frame; // a portal
      const name = frame.toString('utf8', span[0], span[1]);
      if (type === F.Close) {
        // The server-side statement stays for other sessions; the client's name is gone (Close of any name succeeds).
        if (name === '') return frame;
        this.forget(name);
        return renameStatement(frame, NO_STATEMENT);
      }
      if (name === '') {
        if (type === F.Bind) this.bound = this.unnamed?.cls ?? null;
        if (u.unnamedParse === null) {
          u.needs = push(u.needs, '');
          if (this.unnamed) addPart(u, this.unnamed.cls);
        }
        return frame;
      }
      const s = this.named.get(name);
      if (type === F.Bind) this.bound = s?.cls ?? null;
      if (s === undefined) {
        addPart(u, UNKNOWN_STATEMENT);
        // The server answers that it does not exist, as it would for the client's own name (never another session's).
        return name.startsWith(SERVER_PREFIX) ? renameStatement(frame, NO_STATEMENT) : frame;
      }
      if (!u.parses.some(([n]) => n === s.server.name)) {
        u.needs = push(u.needs, s.server.name);
        addPart(u, s.cls);
      }
      return renameStatement(frame, s.server.name);
    }
    return frame;
  }

  /** DEALLOCATE ALL or DISCARD ALL ran: the client's protocol-level statements are gone too, as on PostgreSQL. */
  clear(): void {
    for (const name of [...this.named.keys()]) this.forget(name);
    this.unnamed = null;
  }

  /**
   * A unit that Parsed or needed statements failed on `link`: which of them the server has is not known (an error
   * skips the rest of a batch). They are Closed before they are next Parsed there.
   */
  unsureOn(u: Unit, link: ServerLink): void {
    for (const list of [u.parses.map(([n]) => n), u.needs]) {
      for (const name of list) {
        if (name === '' || !link.prepared.delete(name)) continue;
        (link.unsure ??= new Set()).add(name);
      }
    }
    if (u.needs.includes('') || u.unnamedParse) link.unnamed = null;
  }

  /** Every statement the unit Parses is one a server has already accepted (its Parse can be answered without a server). */
  allValid(u: Unit): boolean {
    if (u.notOnlyParses || u.parses.length === 0) return false;
    for (const [name] of u.parses) if (this.byServerName.get(name)?.st.server.valid !== true) return false;
    return true;
  }

  /** The unit ran without an error: the statements it Parsed are valid. */
  validated(u: Unit): void {
    for (const [name] of u.parses) {
      const e = this.byServerName.get(name);
      if (e) e.st.server.valid = true;
    }
  }

  /** DEALLOCATE name of a protocol-level statement: true if the client had it. */
  forgetName(name: string): boolean {
    if (!this.named.has(name)) return false;
    this.forget(name);
    return true;
  }

  /** The session ended: its references to server-side statements are dropped. */
  releaseAll(): void {
    this.clear();
  }

  private forget(name: string): void {
    const old = this.named.get(name);
    if (old === undefined) return;
    this.named.delete(name);
    this.namedBytes -= old.bytes;
    statementRegistry.release(old.server);
    // Another of the client's names may stand for the same statement.
    const entry = this.byServerName.get(old.server.name);
    if (entry && --entry.names === 0) this.byServerName.delete(old.server.name);
  }

  /**
   * Append to `out` what `link` must run before `u`: a Close of each statement the unit Parses anew that the
   * server still has, the Parse of each statement the unit uses that the server lacks, Closes of the least
   * recently used ones beyond `maxPerServer`, then a Sync. True if it appended anything (one more ReadyForQuery).
   */
  prepareOn(u: Unit, link: ServerLink, out: Buffer[], maxPerServer: number, maxBytes: number): boolean {
    let extended = false;
    const unsure = link.unsure;
    for (const [name] of u.parses) {
      if (link.prepared.has(name) || unsure?.has(name)) {
        out.push(closeStatement(name));
        link.prepared.delete(name);
        unsure?.delete(name);
        extended = true;
      }
    }
    for (const name of u.needs) {
      if (name === '') {
        if (this.unnamed && link.unnamed !== this.unnamed.parse) {
          out.push(this.unnamed.parse);
          link.unnamed = this.unnamed.parse;
          extended = true;
        }
        continue;
      }
      const have = link.prepared.get(name);
      if (have !== undefined) {
        // Most recently used last.
        link.prepared.delete(name);
        link.prepared.set(name, have);
        continue;
      }
      const want = this.parseFor(name);
      if (want === null) continue;
      if (unsure?.delete(name)) out.push(closeStatement(name));
      out.push(want);
      link.prepared.set(name, want);
      extended = true;
    }
    // Room for what the unit itself Parses, without closing what it needs: at most maxPerServer statements and
    // maxBytes of them (a server connection outlives its sessions, and keeps what they prepared).
    let excess = link.prepared.size + u.parses.length - maxPerServer;
    let excessBytes = link.prepared.bytes - maxBytes;
    for (const [, parse] of u.parses) excessBytes += parse.length;
    if (excess > 0 || excessBytes > 0) {
      for (const [name, parse] of link.prepared) {
        if (excess <= 0 && excessBytes <= 0) break;
        if (u.needs.includes(name)) continue;
        link.prepared.delete(name);
        out.push(closeStatement(name));
        extended = true;
        excess--;
        excessBytes -= parse.length;
      }
    }
    if (extended) out.push(SYNC);
    return extended;
  }

  private parseFor(serverName: string): Buffer | null {
    return this.byServerName.get(serverName)?.st.server.parse ?? null;
  }
}
