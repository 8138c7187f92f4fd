// A unit of client traffic (a Query, a FunctionCall, or an extended batch up to Sync or Flush) and what its statements add up to.
import type { ServerLink } from '../backend/server-link.js';
import type { ProxyError } from '../errors.js';
import { COMMITS, effectFlags, MAY_WRITE, OPENS_TRANSACTION, SESSION_EFFECTS, type Classification } from '../router/classification.js';
import { joinFrames } from '../protocol/frames.js';
import type { StatementKey } from '../stats/statement-stats.js';
import type { Traffic } from './stats.js';

export interface Unit {
  frames: Buffer[];
  /** All frames are the unit's own copies (not views into the client read buffer). */
  owned: boolean;
  ownedFrames: number;
  /** Classifications of the statements the unit runs (Parse'd or Bound). */
  parts: Classification[];
  /** One ReadyForQuery is owed for it (Query, FunctionCall, or a batch ending in Sync). */
  sync: boolean;
  opensTransaction: boolean;
  /** Some statement leaves session state behind (see effectFlags). */
  effects: boolean;
  commits: boolean;
  /** Some statement is not a plain read: once it commits, the session's later reads must see it. */
  mayWrite: boolean;
  /** Tightest pgsplit:max_lag hint among its statements (ms), or null. */
  maxLagMs: number | null;
  /** Answered by the proxy itself (SET/SHOW pgsplit.*). */
  local: Buffer | null;
  /** Statement names the unit needs prepared on its server ('' = the unnamed one); NONE until used. */
  needs: string[];
  /** Named statements the unit Parses (server-side names, with their Parse messages); NONE until used. */
  parses: [string, Buffer][];
  unnamedParse: Buffer | null;
  link: ServerLink | null;
  retryable: boolean;
  retried: boolean;
  /** Must run on the primary (a retry after a replica refused or was lost). */
  forcePrimary: boolean;
  /**
   * With statement statistics: the Query's statement, or the statement each Execute runs, in order (null: one the
   * proxy cannot name); NONE otherwise.
   */
  statements: (StatementKey | null)[];
  /** Route decision reason, for metrics. */
  reason: string;
  /** Bytes of client messages in the unit (what the proxy holds while it waits). */
  bytes: number;
  /** What the unit counts against limits.max_pipeline while it is queued or in flight (0 once it is done): see unitCost. */
  held: number;
  /** Cut from a batch that grew too large before its Sync/Flush: it goes to the primary (or its transaction's server). */
  split: boolean;
  /** Some message other than a named Parse (Bind, Describe, Execute, Close, an unnamed Parse) is part of it. */
  notOnlyParses: boolean;
  /** A session limit the unit would exceed: the server is made to fail it instead of running it (see Session.refuse). */
  refusal: ProxyError | null;
  /** Where its traffic is counted (set at dispatch), and when it was sent (performance.now()). */
  traffic: Traffic | null;
  sentAt: number;
  /**
   * Message type of its first frame. Once dispatched, a unit's frames may be views into the client's read buffer
   * that the next read overwrites: what is needed of them later is kept apart (this), or they are owned first.
   */
  first: number;
}

/** A FunctionCall: the proxy does not look inside, so it runs on the primary. */
export const NOT_ROUTED: Classification = Object.freeze({ target: 'primary', reason: 'function-call', statements: [], via: 'lexical', flags: MAY_WRITE }) as Classification;
/** Bind/Describe of a named statement the proxy saw no Parse for: it may do anything, so it runs on the primary. */
export const UNKNOWN_STATEMENT: Classification = Object.freeze({ target: 'primary', reason: 'unknown-statement', statements: [], via: 'lexical', flags: MAY_WRITE }) as Classification;

// Shared empty list for the per-unit lists most units never use (one allocation less each).
export const NONE: never[] = [];
export function push<T>(list: T[], item: T): T[] {
  if (list === NONE) return [item];
  list.push(item);
  return list;
}

export function newUnit(): Unit {
  return {
    frames: [], owned: false, ownedFrames: 0, parts: [], sync: false, opensTransaction: false, effects: false, commits: false, mayWrite: false, maxLagMs: null, local: null, needs: NONE, parses: NONE,
    unnamedParse: null, statements: NONE, link: null, retryable: false, retried: false, forcePrimary: false, reason: '', bytes: 0, held: 0, split: false, refusal: null, notOnlyParses: false, traffic: null, sentAt: 0, first: 0,
  };
}

// What the proxy holds for a unit besides its bytes, measured with a client pipelining tiny statements (SELECT 1) it
// never reads answers for: about 4 kB per unit (the unit, its frame, classification, statement key and the garbage
// they leave until the next collection), and a few hundred bytes per further message of a batch. Counted against
// limits.max_pipeline with the bytes, so that what a session holds follows its memory, not only the bytes it sent
// (before, 16 MB of pipelined SELECT 1 held 1.1 GB; now about 60 MB).
export const UNIT_COST = 4096;
export const FRAME_COST = 256;

/** Memory the proxy holds for `u` while it waits or runs (see UNIT_COST). */
export const unitCost = (u: Unit): number => u.bytes + UNIT_COST + FRAME_COST * u.frames.length;

export function addFrame(u: Unit, frame: Buffer): void {
  if (u.frames.length === 0) u.first = frame[0];
  u.frames.push(frame);
  u.bytes += frame.length;
  u.owned = false;
}

/** Copy the frames that are still views into the read buffer (a batch may span several reads). */
export function own(u: Unit): void {
  const fresh = u.frames.slice(u.ownedFrames);
  if (fresh.length > 0) u.frames = [...u.frames.slice(0, u.ownedFrames), Buffer.from(joinFrames(fresh))];
  u.ownedFrames = u.frames.length;
  u.owned = true;
}

/** Count one statement's classification in: what the unit as a whole opens, leaves behind, commits or may write. */
export function addPart(u: Unit, cls: Classification): void {
  u.parts.push(cls);
  const f = cls.flags ?? effectFlags(cls);
  if (f & OPENS_TRANSACTION) u.opensTransaction = true;
  if (f & SESSION_EFFECTS) u.effects = true;
  if (f & COMMITS) u.commits = true;
  if (f & MAY_WRITE) u.mayWrite = true;
  if (cls.maxLagMs !== undefined && (u.maxLagMs === null || cls.maxLagMs < u.maxLagMs)) u.maxLagMs = cls.maxLagMs;
}
