// The session's prepared statements: what each was Parse'd as, and what a server lacks to run a unit that uses them.
import type { ServerLink } from '../backend/server-link.js';
import { F } from '../protocol/codes.js';
import { errors } from '../errors.js';
import { MessageWriter } from '../protocol/writer.js';
import type { Classification } from '../router/classification.js';
import type { Classifier } from '../router/classifier.js';
import { addPart, push, UNKNOWN_STATEMENT, type Unit } from './unit.js';
import { decodeBind, decodeClose, decodeDescribe, decodeParse } from './unit-messages.js';

// A unit may go to any server the session uses, so each statement is kept as its Parse message, to be re-sent
// to a server that does not have it (ServerLink.prepared says which do).
interface Statement {
  parse: Buffer;
  cls: Classification;
}

const SYNC = MessageWriter.message(F.Sync, () => {});
function closeStatement(name: string): Buffer {
  return MessageWriter.message(F.Close, (w) => w.int8(0x53).cstring(name));
}

export class PreparedStatements {
  private readonly named = new Map<string, Statement>();
  private unnamed: Statement | null = null;

  constructor(
    private readonly classifier: Classifier,
    /** limits.max_prepared_statements, read when a new name is prepared. */
    private readonly maxNamed: () => number = () => Infinity,
  ) {}

  get size(): number {
    return this.named.size;
  }

  /** An extended-protocol message joins `u`: the statements it Parses, uses (their classifications count for the unit) or Closes. */
  analyze(u: Unit, type: number, body: Buffer, frame: Buffer): void {
    if (type === F.Parse) {
      const p = decodeParse(body);
      if (p.name !== '' && !this.named.has(p.name) && this.named.size >= this.maxNamed()) {
        // Not recorded: the unit is refused as a whole (Session.refuse), so the server never has it either.
        u.refusal ??= errors.sessionLimit('prepared statements', this.maxNamed(), 'limits.max_prepared_statements');
        return;
      }
      const cls = this.classifier.classify(p.query);
      addPart(u, cls);
      const copy = Buffer.from(frame);
      if (p.name === '') {
        this.unnamed = { parse: copy, cls };
        u.unnamedParse = copy;
      } else {
        this.named.set(p.name, { parse: copy, cls });
        u.parses = push(u.parses, [p.name, copy]);
      }
    } else if (type === F.Bind || type === F.Describe) {
      const name = type === F.Bind ? decodeBind(body).statement : decodeDescribe(body);
      if (name === null) return; // Describe of a portal
      if (name === '') {
        if (u.unnamedParse === null) {
          u.needs = push(u.needs, '');
          if (this.unnamed) addPart(u, this.unnamed.cls);
        }
      } else if (!u.parses.some(([n]) => n === name)) {
        u.needs = push(u.needs, name);
        addPart(u, this.named.get(name)?.cls ?? UNKNOWN_STATEMENT);
      }
    } else if (type === F.Close) {
      const name = decodeClose(body);
      if (name !== null && name !== '') {
        this.named.delete(name);
        u.closes = push(u.closes, name);
      }
    }
  }

  /**
   * Append to `out` what `link` must run before `u`: a Close of each name the unit Parses anew that the
   * server still has, and the Parse of each statement the unit uses that the server lacks, then a Sync.
   * True if it appended anything (one more ReadyForQuery is owed).
   */
  prepareOn(u: Unit, link: ServerLink, out: Buffer[]): boolean {
    let extended = false;
    for (const [name] of u.parses) {
      if (link.prepared.has(name)) {
        out.push(closeStatement(name));
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
      const want = this.named.get(name);
      const have = link.prepared.get(name);
      if (!want || have === want.parse) continue;
      if (have) out.push(closeStatement(name));
      out.push(want.parse);
      link.prepared.set(name, want.parse);
      extended = true;
    }
    if (extended) out.push(SYNC);
    return extended;
  }
}
