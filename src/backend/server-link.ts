// One server connection in a routing session: what it owes (ReadyForQuery), what state it holds, and how its output reaches the client.
import { PreparedOnServer } from './prepared-on-server.js';
import type { ServerConnection } from './connect.js';
import { B } from '../protocol/codes.js';
import { decodeErrorFields, decodeParameterStatus } from '../protocol/backend-messages.js';
import { COLLECT, FrameScanner, frameModes, NOTICE, type FrameSink } from '../protocol/frame-scanner.js';
import type { StatementRun } from '../stats/statement-run.js';
import { rowsFromCommandTag } from '../stats/command-tag.js';

/**
 * relay: output goes to the client as it arrives.
 * hold: output is kept until ReadyForQuery, so an autocommit read a replica refuses as read-only
 *       (25006) can be retried on the primary without the client seeing anything (capped, then relay).
 * private: the proxy's own traffic (state replay, re-preparing statements); output is dropped.
 */
export type LinkMode = 'relay' | 'hold' | 'private';

export interface LinkOwner {
  /** The server connection closed (or failed). */
  linkClosed(link: ServerLink): void;
  /** A bug while handling this link's output. */
  linkFailed(link: ServerLink, err: unknown): void;
  /** The server socket took all that was written to it. */
  linkDrained(link: ServerLink): void;
  /** A socket error (the close follows). */
  linkError(link: ServerLink, err: Error): void;
  /** A chunk of this link's output for the client (already past hold/private). */
  forward(link: ServerLink, chunk: Buffer, owned: boolean): void;
  /** The server sent ReadyForQuery for one of our units; `failed` if an ErrorResponse came before it. */
  ready(link: ServerLink, status: number, failed: boolean, readOnlyRefusal: boolean): void;
  /** Protocol messages received from this server (for metrics). */
  messages(n: number): void;
}

const MODES = frameModes({ Z: COLLECT, E: COLLECT, S: COLLECT, A: NOTICE, N: NOTICE, G: NOTICE });
/** With statement statistics: also where each statement's answer ends (CommandComplete, EmptyQueryResponse, PortalSuspended). */
const COUNTING_MODES = frameModes({ Z: COLLECT, E: COLLECT, S: COLLECT, C: COLLECT, I: COLLECT, s: COLLECT, A: NOTICE, N: NOTICE, G: NOTICE });
/** ServerLink.settings of a connection whose settings nobody knows (the next session replays its own). */
export const UNKNOWN_SETTINGS = '\u0000unknown';
const HOLD_LIMIT = 64 * 1024;

export class ServerLink {
  mode: LinkMode = 'relay';
  /** ReadyForQuery messages owed for units sent in relay/hold mode. */
  owed = 0;
  /** ReadyForQuery messages owed for private traffic; output is dropped until they arrived. */
  privateOwed = 0;
  /**
   * The session settings this server carries, as the replay text that made them ('' = none beyond its startup).
   * A session whose own text differs replays it before its next unit (see SessionState).
   */
  settings = '';
  /** Named prepared statements this server has, by (pgsplit's) name, with the Parse message that made them; oldest use first. */
  readonly prepared = new PreparedOnServer();
  /** Cancel requests sent for this connection and not yet done: it must not serve anyone else before they are. */
  cancelling = 0;
  /** Set by the pool while a released connection waits for its cancels (see cancelDone). */
  onCancelsDone: (() => void) | null = null;
  /** The pool it belongs to (null: the session's own, not pooled). */
  pool: { release(link: ServerLink, reusable: boolean): void } | null = null;
  readonly createdAt = Date.now();
  /** Last release to its pool (for pool.server_idle_timeout). */
  releasedAt = Date.now();
  /** When a session last took it (SHOW SERVERS). */
  adoptedAt = Date.now();
  /** Names that may or may not be prepared on this server (a batch that Parsed them failed): Closed before a Parse. */
  unsure: Set<string> | null = null;
  /** The unnamed statement's Parse message on this server. */
  unnamed: Buffer | null = null;
  private readonly scanner: FrameScanner;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private sawError = false;
  private sawReadOnlyRefusal = false;
  private onPrivateDone: ((failed: boolean) => void) | null = null;
  closed = false;

  constructor(
    readonly conn: ServerConnection,
    readonly host: string,
    readonly port: number,
    public owner: LinkOwner,
  ) {
    this.initialParameters = new Map(conn.parameters);
    conn.slot.handler = (chunk) => {
      if (this.closed) return;
      try {
        this.data(chunk);
      } catch (err) {
        this.owner.linkFailed(this, err);
      }
    };
    conn.socket.on('close', () => {
      this.closed = true;
      // What was running there is not counted: no answer came.
      this.runs.length = 0;
      this.owner.linkClosed(this);
    });
    conn.socket.on('error', (err) => this.owner.linkError(this, err));
    conn.socket.on('drain', () => this.owner.linkDrained(this));
    const sink: FrameSink = {
      onFrameHeader: (type) => {
        if (type === B.CopyInResponse) this.copyIn = true;
      },
      onFrame: (type, body, frame) => {
        if (type === B.ReadyForQuery) this.onReady(body[0]);
        else if (type === B.ParameterStatus) {
          const [k, v] = decodeParameterStatus(body);
          this.conn.parameters.set(k, v);
        } else if (type !== B.ErrorResponse) {
          // CommandComplete, EmptyQueryResponse, PortalSuspended: scanned only while statements are counted.
          const r = this.privateOwed === 0 ? this.runFor() : undefined;
          if (r !== undefined) r.completed(type === B.CommandComplete ? rowsFromCommandTag(body) : 0, r.whole ? 0 : performance.now());
        } else {
          if (this.privateOwed === 0 && this.runs.length > 0) this.runFor()!.failed(performance.now());
          const f = decodeErrorFields(body);
          this.sawError = true;
          this.lastError = f;
          if (f.C === '25006') this.sawReadOnlyRefusal = true;
          const chunk = this.chunk;
          if (f.V === 'FATAL' || f.V === 'PANIC') {
            // Kept back: the server was stopped or the backend terminated from outside (class 57, or the server's own
            // idle-in-transaction timeout). Passed on: the client's own doing (a protocol violation …): the session ends with it.
            const external = (f.C ?? '').startsWith('57') || f.C === '25P03';
            if (!external) this.fatalPassed = f.C ?? 'XX000';
            else if (chunk !== null && frame.buffer === chunk.buffer && frame.byteOffset >= chunk.byteOffset) this.fatalAt = frame.byteOffset - chunk.byteOffset;
          }
        }
      },
    };
    // A server message of any size streams through; only the head of an ErrorResponse is looked at (its SQLSTATE comes first).
    this.scanner = new FrameScanner(MODES, sink, { maxCollect: 64 * 1024, truncate: true });
  }

  get node(): string {
    return this.conn.node;
  }

  /** A cancel request sent for this connection is done (the server closed its connection). */
  cancelDone(): void {
    this.cancelling--;
    if (this.cancelling === 0 && this.onCancelsDone) this.onCancelsDone();
  }

  get busy(): boolean {
    return this.owed > 0 || this.privateOwed > 0;
  }

  /**
   * Statement statistics of the units written to this connection whose answers are not complete, oldest first: a
   * server answers in order, so each answer belongs to the oldest unit that can still take it.
   */
  readonly runs: StatementRun[] = [];
  private counting = false;

  /** A unit was written here and its statements are counted (from now on this connection's scanner reports where answers end). */
  track(run: StatementRun): void {
    if (!this.counting) {
      this.counting = true;
      this.scanner.setModes(COUNTING_MODES);
    }
    const last = this.runs.length > 0 ? this.runs[this.runs.length - 1] : undefined;
    if (last === undefined || !last.absorb(run)) this.runs.push(run);
  }

  /** The unit the answer being scanned belongs to; Flush-ended pieces that can take no more are complete. */
  private runFor(): StatementRun | undefined {
    const runs = this.runs;
    while (runs.length > 1 && runs[0].spent && !runs[0].sync) runs.shift()!.end(performance.now(), false);
    return runs[0];
  }

  /** Send the proxy's own messages; `done` runs after their `readyCount` ReadyForQuery messages. */
  sendPrivate(frames: Buffer, readyCount: number, done: (failed: boolean) => void): void {
    this.mode = 'private';
    this.privateOwed += readyCount;
    this.sawError = false;
    this.onPrivateDone = done;
    this.conn.socket.write(frames);
  }

  /** The chunk being scanned, and where in it a FATAL ErrorResponse starts (-1: none). */
  private chunk: Buffer | null = null;
  private fatalAt = -1;
  /** Fields of the last ErrorResponse (what the proxy's own statements failed with). */
  lastError: Record<string, string> | null = null;
  /** The server's parameters as it reported them at startup, before any session changed them. */
  readonly initialParameters: ReadonlyMap<string, string>;
  /** SQLSTATE of a FATAL this server sent that was the client's doing and went to the client: the session ends with the connection. */
  fatalPassed: string | null = null;
  /** The server sent CopyInResponse and the client has not ended the COPY yet: every client message belongs to it. */
  copyIn = false;

  /** Bytes from the server (the chunk is only valid during the call). */
  data(chunk: Buffer): void {
    const before = this.scanner.frames;
    this.readyCount = 0;
    if (this.mode === 'relay') {
      // Scan, forward, then report ReadyForQuery (report() below): ready() may dispatch the next unit, whose output follows this.
      this.chunk = chunk;
      this.fatalAt = -1;
      this.scanner.push(chunk);
      this.chunk = null;
      // A server's FATAL (terminated backend, shutdown) is its last word before it closes. The session outlives
      // that connection and reports the loss in the client's terms when the close arrives, so the FATAL, which a
      // client would read as the death of its own connection, is not passed on.
      if (this.fatalAt < 0) this.owner.forward(this, chunk, false);
      else if (this.fatalAt > 0) this.owner.forward(this, chunk.subarray(0, this.fatalAt), false);
    } else if (this.mode === 'hold') {
      this.scanner.push(chunk);
      if (this.held.length === 0 && this.readyCount > 0 && this.scanner.atBoundary) {
        // The whole answer came in this one chunk (the usual case): no copy needed.
        this.mode = 'relay';
        if (!this.readyRefusal) this.owner.forward(this, chunk, false);
      } else if (this.readyCount > 0) {
        if (!this.readyRefusal) {
          this.held.push(chunk);
          this.releaseHeld(false);
        } else this.held = [];
        this.mode = 'relay';
      } else {
        this.held.push(Buffer.from(chunk));
        this.heldBytes += chunk.length;
        if (this.heldBytes > HOLD_LIMIT && !this.sawReadOnlyRefusal) this.releaseHeld(true);
      }
    } else {
      this.scanner.push(chunk);
    }
    this.owner.messages(this.scanner.frames - before);
    this.report();
  }

  // What the last chunk's ReadyForQuery messages said; reported after the chunk was forwarded.
  private readyCount = 0;
  private readyStatus = 0;
  private readyFailed = false;
  private readyRefusal = false;
  private privateFinished = false;
  private privateFailed = false;

  private onReady(status: number): void {
    this.copyIn = false;
    const failed = this.sawError;
    const refusal = this.sawReadOnlyRefusal;
    this.sawError = false;
    this.sawReadOnlyRefusal = false;
    if (this.privateOwed > 0) {
      this.privateOwed--;
      if (this.privateOwed === 0) {
        this.mode = 'relay';
        this.privateFinished = true;
        this.privateFailed = failed;
      }
      return;
    }
    if (this.owed > 0) this.owed--;
    if (this.runs.length > 0) {
      // The unit ending here, and any Flush-ended pieces of its batch before it. A read the replica refused as
      // read-only runs again on the primary (see unitDone), and only that run counts.
      const now = performance.now();
      for (;;) {
        const r = this.runs.shift();
        if (r === undefined) break;
        r.end(now, refusal && r.retryable);
        if (r.sync) break;
      }
    }
    // One unit in flight at a time outside relay mode, and relay reports each in order: keep the last.
    this.readyCount++;
    this.readyStatus = status;
    this.readyFailed = failed;
    this.readyRefusal = refusal;
    if (this.readyCount > 1 || this.mode === 'relay') this.flushOne();
  }

  /** In relay mode several units can finish in one chunk; each is reported, in order, after the chunk. */
  private pendingReports: number[] = [];

  private spareReports: number[] = [];

  private flushOne(): void {
    this.pendingReports.push(this.readyStatus, this.readyFailed ? 1 : 0, this.readyRefusal ? 1 : 0);
  }

  private report(): void {
    if (this.privateFinished) {
      this.privateFinished = false;
      const done = this.onPrivateDone;
      this.onPrivateDone = null;
      done?.(this.privateFailed);
    }
    if (this.pendingReports.length > 0) {
      const list = this.pendingReports;
      this.pendingReports = this.spareReports;
      this.spareReports = list;
      for (let i = 0; i < list.length; i += 3) this.owner.ready(this, list[i], list[i + 1] === 1, list[i + 2] === 1);
      list.length = 0;
    } else if (this.readyCount > 0) {
      this.owner.ready(this, this.readyStatus, this.readyFailed, this.readyRefusal);
    }
    this.readyCount = 0;
  }

  /** Stop holding: what was held goes to the client (owned copies, except a last chunk still in hand). */
  private releaseHeld(switchToRelay: boolean): void {
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (let i = 0; i < held.length; i++) this.owner.forward(this, held[i], i < held.length - 1 || switchToRelay);
    if (switchToRelay) this.mode = 'relay';
  }
}
