// A client session after startup: cuts client traffic into units, routes each to the primary or a replica, and keeps session state whole.
//
// A unit is a Query, a FunctionCall, or an extended-protocol batch up to Sync (or Flush). Units go to one
// server connection ("link") each. Only one link has units in flight at a time, so responses reach the
// client in order: the primary may take pipelined units back to back, a replica one at a time (its output
// is held so that a read-only refusal, SQLSTATE 25006, can be retried on the primary unseen).
import type net from 'node:net';
import type { Logger } from '../util/logger.js';
import { errors, ProxyError } from '../errors.js';
import { F, TX } from '../protocol/codes.js';
import { errorResponse, readyForQuery } from '../protocol/backend-messages.js';
import { collectAll, FrameScanner, type FrameSink } from '../protocol/frame-scanner.js';
import { encodeCancelRequest } from '../protocol/startup.js';
import { terminate } from '../protocol/frontend-messages.js';
import { sendCancel } from '../backend/connect.js';
import { UNKNOWN_SETTINGS, type ServerLink, type LinkOwner } from '../backend/server-link.js';
import type { Pools, PoolWaiter, ServerPool } from '../backend/pool.js';
import type { Classifier } from '../router/classifier.js';
import type { LoadBalance, RouteHint } from '../router/route.js';
import { placeUnit } from '../router/placement.js';
import { ReplicaChoice } from './replica-choice.js';
import type { PrimaryReadReason } from '../router/read-choice.js';
import type { Topology } from '../topology/topology.js';
import type { WalPositions } from '../health/wal-positions.js';
import type { CancelRegistry } from './cancel-registry.js';
import type { ClientSession } from './client-session.js';
import { relayWrite, type ReadSlot } from '../util/read-slot.js';
import type { ProxyStats } from './stats.js';
import { joinFrames } from '../protocol/frames.js';
import { localReply } from '../protocol/local-replies.js';
import { addFrame, addPart, newUnit, NOT_ROUTED, own, type Unit } from './unit.js';
import { SessionState } from './session-state.js';
import { PreparedStatements } from './prepared-statements.js';
import { intercept, interceptBatch, type PgsplitSettings } from './intercept.js';
import { FrameError } from '../protocol/frame-scanner.js';
import { closeSocket } from '../util/close-socket.js';
import type { ClientLimits } from './client-startup.js';
import { answerLostUnits, failedTransactionReply } from './failed-transaction.js';
import { refuseUnit } from './refusal.js';
import { idleTimeoutError } from './idle.js';

export interface RoutingSettings {
  loadBalance: LoadBalance;
  primaryReads: 'fallback' | 'include' | 'never';
  consistency: 'read-your-writes' | 'eventual';
  /** routing.read_tags: sessions read only from replicas with one of these tags (empty: any ordinary replica). */
  readTags: readonly string[];
  /** users[].read_tags, by user, where set. */
  userReadTags: ReadonlyMap<string, readonly string[]>;
  /** failover.hold_timeout: statements wait this long for a new primary after the session's was lost. */
  holdTimeoutMs: number;
}

export interface SessionContext {
  stats: ProxyStats;
  cancels: CancelRegistry;
  log: Logger;
  topology: Topology;
  classifier: Classifier;
  lsn: WalPositions;
  routing(): RoutingSettings;
  limits(): ClientLimits;
  pools: Pools;
  /** pool.max_prepared_statements: prepared statements kept per server connection. */
  maxPreparedPerServer(): number;
}

const REPLICA_RETRY_AFTER = 5000;
const IDLE = TX.Idle;
const FAILED = TX.Failed;
// A batch that grows this large before its Sync/Flush is sent on in pieces, so the proxy never holds it whole.
const MAX_BATCH_PIECE = 1024 * 1024;
const EMPTY = Buffer.alloc(0);
const PARSE_COMPLETE = localReply.parseComplete();
const statusChar = (s: number): 'I' | 'T' | 'E' => (s === IDLE ? 'I' : s === FAILED ? 'E' : 'T');

/** What a client asked for at login that shapes its session. */
export interface SessionStartup {
  hint: RouteHint;
  readTags: readonly string[] | null;
  maxLagMs?: number | null;
  /** The database the client logged in to (pools are per node, user and database). */
  database: string;
  /** transaction: server connections go back to their pool whenever the session is idle; session: they stay until it ends. */
  poolMode: 'transaction' | 'session';
}

export class Session implements ClientSession, LinkOwner, PgsplitSettings {
  private readonly database: string;
  private readonly poolMode: 'transaction' | 'session';
  txStatus: number = IDLE;
  /** The session's connection to the primary while it holds one (in transaction pooling, only while something runs there). */
  private home: ServerLink | null = null;
  /** A pool the session waits on for a connection (primary or replica), and for which node. */
  private waitingOn: ServerPool | null = null;
  /** No primary is known: statements wait until this time (failover.hold_timeout), then fail. */
  private holdUntil = 0;
  private holdTimer: NodeJS.Timeout | null = null;
  /** Pools this session used, by node (saves a lookup per statement). */
  private pools: Map<string, ServerPool> | null = null;
  /** Topology version at which the primary link was last found current (see primary()). */
  private homeChecked = -1;
  private awaitingResume = false;
  /** Server connections the session holds now, by node. */
  private readonly links = new Map<string, ServerLink>();
  /** Replicas this session leaves alone until the time given (made on first need). */
  private readonly inflight: Unit[] = [];
  private readonly queue: Unit[] = [];
  private batch: Unit | null = null;
  /** The link the open transaction (or an unfinished batch after Flush) lives on. */
  private sticky: ServerLink | null = null;
  private copyLink: ServerLink | null = null;
  private readonly scanner: FrameScanner;
  private closed = false;
  private terminating = false;
  private drainRequested = false;
  /** The replica this session reads from (kept while usable; its connection comes from the pool for each read). */
  private readonly replicas: ReplicaChoice;
  /** Settings and pins that must hold on every server the session uses. */
  private readonly state: SessionState;
  private readonly prepared: PreparedStatements;
  /** pgsplit.route (SET, or the startup option). */
  hint: RouteHint;
  /** pgsplit.max_lag (ms; SET, or the startup option); null: the configured threshold. */
  maxLagMs: number | null = null;
  /** SET pgsplit.read_tags / startup option; null = the user's or the configured tags. */
  private readTags: readonly string[] | null;
  /** LsnTracker ticket of the session's last committed write (0: none yet); its reads must see it. */
  private writeTicket = 0;
  /** The open transaction on the primary has run something other than plain reads. */
  private txMayWrite = false;
  /**
   * The open transaction died with its server connection: the proxy answers as a server in a failed transaction
   * would (see failed-transaction.ts) until it ends. `error` is the loss, not yet reported to the client.
   */
  private cut: { error: ProxyError | null } | null = null;
  /** An error ended an extended-protocol batch early: the client's messages up to its Sync are discarded. */
  private discardUntilSync = false;
  /** Bytes of client messages queued in the proxy (units waiting for a server); bounded by limits.max_pipeline. */
  private queuedBytes = 0;
  /** A server connection's socket did not take the last write at once: stop reading the client until it drains. */
  private writeBlocked = false;
  /** The client's next Sync completes an extended-protocol COPY (see the CopyDone case). */
  private copyOwesSync = false;
  private clientPaused = false;
  /** Last time the client sent something or a unit finished (for the idle timeouts). */
  private lastActivity = Date.now();
  /** Asynchronous primary output (NOTIFY …) that arrived while a replica's answer was being relayed. */
  private asyncOutput: Buffer[] = [];

  constructor(
    private readonly client: net.Socket,
    private readonly clientSlot: ReadSlot,
    first: ServerLink,
    startupSettings: { key: string; sql: string }[],
    readonly key: { pid: number; secret: number },
    readonly user: string,
    private readonly ctx: SessionContext,
    private readonly onEnd: (s: Session) => void,
    startup: SessionStartup,
  ) {
    this.database = startup.database;
    this.poolMode = startup.poolMode;
    this.hint = startup.hint;
    this.readTags = startup.readTags;
    this.maxLagMs = startup.maxLagMs ?? null;
    this.prepared = new PreparedStatements(ctx.classifier, () => ctx.limits().maxPreparedStatements);
    this.state = new SessionState(startup.poolMode === 'transaction');
    this.replicas = new ReplicaChoice(ctx.topology, ctx.lsn, ctx.stats);
    this.state.setStartup(startupSettings);
    this.home = this.adopt(first);
    const sink: FrameSink = { onFrameHeader() {}, onFrame: (type, body, frame) => this.onClientMessage(type, body, frame) };
    this.scanner = new FrameScanner(collectAll(), sink, { maxCollect: ctx.limits().maxMessageSize });
  }

  /** Pinned: state only its server connection has keeps it there (temp tables, LISTEN, …). */
  get pinned(): boolean {
    return this.state.pins.size > 0;
  }

  get idle(): boolean {
    return this.inflight.length === 0 && this.queue.length === 0 && this.batch === null && this.txStatus === IDLE;
  }

  setReadTags(tags: readonly string[] | null): void {
    this.readTags = tags;
    this.replicas.invalidate(); // the current replica may not carry the new tags
  }

  readTagsInEffect(settings: RoutingSettings = this.ctx.routing()): readonly string[] {
    return this.readTags ?? settings.userReadTags.get(this.user) ?? settings.readTags;
  }

  /** A server connection (from a pool) now serves this session. */
  private adopt(link: ServerLink): ServerLink {
    link.owner = this;
    link.mode = 'relay';
    // Its reads may have been paused for a client that read slowly; this session's own client decides from now on.
    link.conn.socket.resume();
    this.links.set(link.node, link);
    return link;
  }

  /** Give a server connection back to its pool: reusable if it is idle and holds nothing of this session's that must not move. */
  private release(link: ServerLink, reusable: boolean): void {
    if (this.links.get(link.node) !== link) return;
    this.links.delete(link.node);
    if (this.home === link) this.home = null;
    if (this.copyLink === link) this.copyLink = null;
    if (link.pool) link.pool.release(link, reusable && !link.closed && !link.busy);
    else if (!link.conn.socket.destroyed) link.conn.socket.end(terminate());
  }

  /** Transaction pooling: hand back every server connection the session does not need between its units. */
  private releaseIdle(): void {
    if (this.poolMode !== 'transaction' || this.closed || this.links.size === 0) return;
    if (this.txStatus !== IDLE || this.sticky !== null || this.state.pins.size > 0 || this.cut !== null) return;
    for (const link of this.links.values()) {
      if (link.busy || this.inflight.some((u) => u.link === link)) continue;
      this.release(link, true);
    }
  }

  // LinkOwner: events of the server connections the session holds.
  linkClosed(link: ServerLink): void {
    try {
      this.onLinkClose(link);
    } catch (err) {
      this.fail(err);
    }
  }

  linkFailed(_link: ServerLink, err: unknown): void {
    this.fail(err);
  }

  linkDrained(): void {
    if (!this.writeBlocked) return;
    this.writeBlocked = false;
    this.flow();
  }

  linkError(link: ServerLink, err: Error): void {
    if (!this.terminating && !this.closed) this.ctx.log.warn({ pid: this.key.pid, node: link.node, err: err.message }, 'server socket error');
  }

  /**
   * Before the client is told it is in: its first server takes the client's startup settings (a value the server
   * refuses fails the login, as on PostgreSQL). Resolves to the parameters that server now reports.
   */
  login(): Promise<ReadonlyMap<string, string>> {
    const link = this.home!;
    const replay = this.state.replayFor(link);
    if (replay === null) return Promise.resolve(link.conn.parameters);
    return new Promise((resolve, reject) => {
      this.loginFailed = reject;
      link.sendPrivate(replay, 1, (failed) => {
        this.loginFailed = null;
        if (!failed) return resolve(link.conn.parameters);
        link.settings = UNKNOWN_SETTINGS;
        const f = link.lastError ?? {};
        reject(new ProxyError(f.C ?? '22023', 'startup_setting_refused', f.M ?? 'a startup parameter was refused by the server', 'FATAL', f.D, f.H));
      });
    });
  }

  /** Set while login() waits: a lost server ends the login. */
  private loginFailed: ((err: Error) => void) | null = null;

  /** The login failed: the server connection goes back (or is closed), and the session never started. */
  abandon(): void {
    this.closed = true;
    this.closeAll();
    this.prepared.releaseAll();
  }

  start(leftover: Buffer): void {
    this.clientSlot.handler = this.onClientData;
    this.client.on('drain', () => {
      for (const l of this.links.values()) l.conn.socket.resume();
    });
    this.client.on('close', this.onClientClose);
    this.client.on('error', (err) => this.ctx.log.debug({ pid: this.key.pid, err: err.message }, 'client socket error'));
    if (leftover.length > 0) this.onClientData(leftover);
    this.releaseIdle();
  }

  // ---- client → server -------------------------------------------------------------------------

  private readonly onClientData = (chunk: Buffer) => {
    if (this.closed) return;
    const stats = this.ctx.stats;
    stats.bytesFromClients += chunk.length;
    this.lastActivity = Date.now();
    const before = this.scanner.frames;
    try {
      this.scanner.push(chunk);
      stats.messagesFromClients += this.scanner.frames - before;
      // Views into the read buffer die with this call: whatever waits must own its bytes.
      if (this.batch && !this.batch.owned) own(this.batch);
      for (const u of this.queue) if (!u.owned) own(u);
      this.flow();
    } catch (err) {
      if (err instanceof FrameError && err.kind === 'too-large') this.end(errors.messageTooLarge(err.type, err.bodyLength, this.ctx.limits().maxMessageSize));
      else if (err instanceof FrameError) this.end(errors.protocolViolation(err.message));
      else if (err instanceof ProxyError) this.end(err);
      // A message whose fields do not add up (a string without its terminator, a count past the end).
      else if (err instanceof RangeError) this.end(errors.protocolViolation(`invalid message from the client: ${err.message}`));
      else this.fail(err);
    }
  };

  /** Read the client only while its queued data is under limits.max_pipeline and every server takes what it is sent. */
  private flow(): void {
    const pause = this.writeBlocked || this.queuedBytes > this.ctx.limits().maxPipeline;
    if (pause === this.clientPaused || this.closed) return;
    this.clientPaused = pause;
    if (pause) this.client.pause();
    else this.client.resume();
  }

  /** A bug, not the client's doing: this session ends with XX000 and a log line; nothing else is affected. */
  private fail(err: unknown): void {
    this.ctx.log.error({ pid: this.key.pid, err: (err as Error)?.stack ?? String(err) }, 'internal error in a session; closing it');
    this.end(errors.internal((err as Error)?.message ?? String(err)));
  }

  private onClientMessage(type: number, body: Buffer, frame: Buffer): void {
    if (this.closed) return;
    const copy = this.copyLink;
    if (copy !== null && copy.copyIn && type !== F.Terminate && type !== F.CopyData && type !== F.CopyDone && type !== F.CopyFail) {
      // In COPY FROM STDIN PostgreSQL ignores Sync and Flush, and ends the connection ("protocol synchronization was
      // lost") on anything else. Passing such a message on could race with a COPY the server has already failed
      // (it would then run as a statement nobody accounts for), so the proxy decides here, the same way.
      if (type === F.Sync || type === F.Flush) return;
      throw errors.protocolViolation(`unexpected message type 0x${type.toString(16)} during COPY from stdin`);
    }
    switch (type) {
      case F.Query: {
        this.sendBatchOn();
        const u = newUnit();
        addFrame(u, frame);
        u.sync = true;
        const sql = body.toString('utf8', 0, Math.max(0, body.length - 1));
        const cls = this.ctx.classifier.classify(sql);
        addPart(u, cls);
        if (cls.intercept) u.local = intercept(cls, true, this);
        else if (cls.statements.length === 1 && cls.statements[0].kind === 'deallocate' && this.txStatus !== FAILED) {
          // DEALLOCATE of a protocol-level statement: servers know it by pgsplit's name (and others may share it), so only the client's name goes.
          const name = cls.statements[0].deallocateName;
          if (name && this.prepared.forgetName(name)) u.local = Buffer.concat([localReply.commandComplete('DEALLOCATE'), readyForQuery(statusChar(this.txStatus))]);
        }
        this.enqueue(u);
        return;
      }
      case F.Parse: case F.Bind: case F.Describe: case F.Execute: case F.Close: {
        const u = (this.batch ??= newUnit());
        addFrame(u, this.prepared.analyze(u, type, body, frame));
        if (u.bytes > MAX_BATCH_PIECE && u.refusal === null) {
          // Sent on without waiting for the Sync (the server runs messages as they come anyway); the rest follows it.
          this.batch = null;
          u.split = true;
          this.enqueue(u);
        }
        return;
      }
      case F.Flush: case F.Sync: {
        if (type === F.Sync && this.copyOwesSync && this.copyLink !== null) {
          this.copyOwesSync = false;
          relayWrite(this.copyLink.conn.socket, frame, this.clientSlot);
          return;
        }
        // A Flush outside any batch asks for nothing a server still holds.
        if (type === F.Flush && this.batch === null && !this.batchOnServer()) return;
        const u = this.batch ?? newUnit();
        this.batch = null;
        addFrame(u, frame);
        u.sync = type === F.Sync;
        // Answered here only if no earlier piece of the batch went to a server (that server's part must end there).
        if (u.parts.length > 0 && u.parts.every((p) => p.intercept) && !this.batchOnServer()) u.local = interceptBatch(u.frames, u.parts, this);
        else if (u.sync && this.prepared.allValid(u) && this.txStatus === IDLE && this.inflight.length === 0 && this.queue.length === 0 && !this.batchOnServer()) {
          // Parse + Sync of statements a server already accepted (libpq's PQprepare): they are prepared where they
          // are first used, so no server connection is taken now (pgbench -M prepared would otherwise hold one
          // thread's clients waiting on each other for the pool).
          u.local = Buffer.concat([...u.parses.map(() => PARSE_COMPLETE), readyForQuery('I')]);
        }
        this.enqueue(u);
        return;
      }
      case F.FunctionCall: {
        this.sendBatchOn();
        const u = newUnit();
        addFrame(u, frame);
        u.sync = true;
        addPart(u, NOT_ROUTED);
        this.enqueue(u);
        return;
      }
      case F.CopyData: case F.CopyDone: case F.CopyFail: {
        const link = this.copyLink ?? this.home;
        // Outside a COPY PostgreSQL ignores them too (a COPY that failed while the client was still sending).
        if (link === null) return;
        if (type !== F.CopyData && link.copyIn) {
          link.copyIn = false;
          // An extended-protocol COPY's own Sync reached the server during the COPY, which ignores it there: the
          // ReadyForQuery that unit owes comes for the Sync the client sends after CopyDone (libpq does).
          const u = this.inflight.find((x) => x.link === link);
          this.copyOwesSync = u !== undefined && u.sync && u.first !== F.Query;
        }
        if (!relayWrite(link.conn.socket, frame, this.clientSlot) && !link.conn.socket.destroyed) this.writeBlocked = true;
        return;
      }
      case F.Terminate:
        this.terminating = true;
        this.closeAll();
        return;
      default:
        this.end(errors.protocolViolation(`invalid frontend message type ${type} ('${String.fromCharCode(type)}')`));
    }
  }

  /**
   * A Query or FunctionCall inside an unfinished extended-protocol batch. PostgreSQL runs it, unless an earlier
   * message of the batch failed, in which case it skips it without an answer until Sync; the proxy cannot know
   * which in advance, and no driver does this, so it is refused rather than guessed at.
   */
  private sendBatchOn(): void {
    if (this.batch === null && !this.batchOnServer()) return;
    throw errors.protocolViolation('a simple Query or FunctionCall arrived inside an unfinished extended-protocol batch; send Sync first');
  }

  /** The batch being received has a piece (ended by Flush, or sent on early) already queued or on a server. */
  private batchOnServer(): boolean {
    const last = this.queue.length > 0 ? this.queue[this.queue.length - 1] : this.inflight[this.inflight.length - 1];
    return last !== undefined && !last.sync;
  }

  /** A unit back at the head of the queue (a retry on the primary). */
  private requeue(u: Unit): void {
    this.queue.unshift(u);
    this.queuedBytes += u.bytes;
  }

  private enqueue(u: Unit): void {
    if (u.effects && u.refusal === null) {
      const max = this.ctx.limits().maxSessionSettings;
      if (this.state.settingsAfter(u.parts) > max) u.refusal = errors.sessionLimit('recorded settings (SET)', max, 'limits.max_session_settings');
    }
    if (u.refusal !== null) refuseUnit(u);
    this.queuedBytes += u.bytes;
    this.queue.push(u);
    this.pump();
  }

  // ---- dispatch --------------------------------------------------------------------------------

  private pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      const u = this.queue[0];
      if (u.local) {
        if (this.inflight.length > 0) return;
        this.queue.shift();
        this.queuedBytes -= u.bytes;
        if (u.local.length > 0) this.client.write(u.local);
        continue;
      }
      const link = this.chooseLink(u);
      if (!link) {
        if (u.local) continue; // refused (primary_reads: never): answered in order like a local reply
        break;
      }
      // The unit before it on this server is still being prepared (settings replayed, statements parsed): written
      // now, this one would reach the server first, and the server's answers would no longer match the units.
      if (link.privateOwed > 0) break;
      this.queue.shift();
      this.queuedBytes -= u.bytes;
      this.dispatch(u, link);
    }
    if (this.clientPaused) this.flow();
  }

  private chooseLink(u: Unit): ServerLink | null {
    const tail = this.inflight.length > 0 ? this.inflight[this.inflight.length - 1] : null;
    const p = placeUnit({
      forcePrimary: u.forcePrimary,
      sticky: this.sticky !== null,
      inFlight: tail === null ? null : { onPrimary: tail.link === this.home, opensTransaction: tail.opensTransaction },
      discarding: this.discardUntilSync,
      cut: this.cut !== null,
      inTransaction: this.txStatus !== IDLE,
      parts: u.parts,
      split: u.split,
      pinned: this.state.pins.size > 0,
      hint: this.hint,
    });
    switch (p.to) {
      case 'wait':
        return null;
      case 'sticky':
        u.reason = p.reason;
        return this.sticky;
      case 'behind':
        u.reason = p.reason;
        return tail!.link;
      case 'discard':
        // The rest of a batch whose error was already sent: nothing runs; its Sync gets ReadyForQuery.
        u.local = u.sync ? readyForQuery(statusChar(this.txStatus)) : EMPTY;
        if (u.sync) this.discardUntilSync = false;
        return null;
      case 'cut': {
        const r = failedTransactionReply(u, this.cut!.error);
        this.cut!.error = null;
        u.local = r.reply;
        if (r.discard) this.discardUntilSync = true;
        if (r.ended) {
          this.cut = null;
          this.txStatus = IDLE;
        }
        return null;
      }
      case 'primary':
        // A retry keeps the reason it was given (retry-25006, replica-lost, replay-failed).
        if (p.reason !== 'retry') u.reason = p.reason;
        return this.primary();
      case 'replica':
        u.reason = p.reason;
    }
    const r = this.replicaFor(u);
    if (r === 'wait') return null;
    if (typeof r === 'string') {
      // A Flush-ended piece of a batch cannot be refused on its own (the error must end at Sync): it goes to the primary.
      if ((r === 'no-replica' || r === 'replica-lag') && this.ctx.routing().primaryReads === 'never' && u.sync) {
        this.ctx.stats.readsRefused++;
        u.local = Buffer.concat([errorResponse(errors.noReplica()), readyForQuery('I')]);
        return null;
      }
      u.reason = r;
      this.ctx.stats.readOnPrimary(r);
      return this.primary();
    }
    if (r !== this.home) u.retryable = u.sync && !u.opensTransaction;
    return r;
  }

  /**
   * A replica link to use now, 'wait' while one is being opened, or the reason the read goes to the primary.
   * A session keeps the replica it was given while that replica stays usable: balancing happens across
   * sessions (the counter is shared), and each session needs one replica connection instead of one per replica.
   */
  private replicaFor(u: Unit): ServerLink | 'wait' | PrimaryReadReason {
    const settings = this.ctx.routing();
    let lsn: number | null = null;
    // A /* pgsplit:replica */ hint asks for a replica knowingly: it is not held back for the session's own writes.
    if (this.writeTicket !== 0 && settings.consistency === 'read-your-writes' && !u.parts.some((p) => p.hint === 'replica')) {
      lsn = this.ctx.lsn.lsnFor(this.writeTicket);
      // The LSN of the session's last commit is still on its way (well under a millisecond): read on the primary.
      if (lsn === null) return 'read-your-writes';
    }
    const maxLagMs = u.maxLagMs === null ? this.maxLagMs : this.maxLagMs === null ? u.maxLagMs : Math.min(u.maxLagMs, this.maxLagMs);
    const node = this.replicas.choose(settings, { tags: this.readTagsInEffect(settings), lsn, maxLagMs });
    if (node === null) return this.replicas.reason;
    return this.readConnection(node, this.ctx.topology.primary?.name ?? null);
  }

  /** The connection to read on from `node` (the primary's own when it is the primary), or 'wait' while the pool finds one. */
  private readConnection(node: string, primaryName: string | null): ServerLink | 'wait' {
    if (node === primaryName || (this.home !== null && node === this.home.node)) return this.primary() ?? 'wait';
    const held = this.links.get(node);
    if (held !== undefined) return held;
    if (this.waitingOn !== null) return 'wait';
    const pool = this.poolFor(node);
    const link = pool.acquire(this.replicaWaiter);
    if (link === null) {
      this.waitingOn = pool;
      return 'wait';
    }
    return this.adopt(link);
  }

  private readonly replicaWaiter: PoolWaiter = {
    granted: (link) => {
      this.waitingOn = null;
      if (this.closed) {
        link.pool?.release(link, true);
        return;
      }
      this.adopt(link);
      this.pump();
      // Nothing may need it any more (the statement was answered otherwise meanwhile): then it goes straight back.
      this.releaseIdle();
    },
    failed: (err) => {
      const node = this.waitingOn?.node ?? '';
      this.waitingOn = null;
      if (this.closed) return;
      // Reads use other nodes (or the primary) for a while.
      this.replicas.leaveAlone(node, REPLICA_RETRY_AFTER);
      this.ctx.log.warn({ pid: this.key.pid, node, err: err.message }, 'no connection to a replica; reads use other nodes for a while');
      this.pump();
    },
  };

  private poolFor(node: string): ServerPool {
    this.pools ??= new Map();
    let pool = this.pools.get(node);
    if (pool === undefined || pool.retired) {
      pool = this.ctx.pools.get(node, this.user, this.database);
      this.pools.set(node, pool);
    }
    return pool;
  }


  private dispatch(u: Unit, link: ServerLink): void {
    u.link = link;
    this.inflight.push(u);
    if (u.sync) link.owed++;
    this.copyLink = link;
    if (!u.sync) this.sticky = link; // the rest of this batch must follow
    this.ctx.stats.routed(link === this.home ? 'primary' : 'replica', u.reason);
    const pre = this.preparation(u, link);
    if (pre) {
      if (!u.owned) own(u);
      link.sendPrivate(pre.frames, pre.ready, (failed) => {
        if (failed) {
          // What the server now carries is not known for sure: replayed and prepared again (Close first) next time.
          link.settings = UNKNOWN_SETTINGS;
          this.prepared.unsureOn(u, link);
        }
        if (failed && link !== this.home) {
          // The replica could not take the session's state: keep the session on the primary from now on.
          this.ctx.log.warn({ pid: this.key.pid, node: link.node }, 'replaying session state on a replica failed; the session stays on the primary');
          this.state.pins.add('replay-failed');
          if (u.sync) link.owed--;
          const i = this.inflight.indexOf(u);
          if (i >= 0) this.inflight.splice(i, 1);
          if (this.sticky === link && !u.sync) this.sticky = null;
          this.retryOnPrimary(u, 'replay-failed');
          this.pump();
          return;
        }
        this.write(u, link);
        // Units that waited behind this one's preparation go now.
        this.pump();
      });
      return;
    }
    this.write(u, link);
  }

  private write(u: Unit, link: ServerLink): void {
    if (this.closed || link.closed) return;
    // Bytes the proxy may send again (a retry on the primary) or answer for itself (a ROLLBACK lost in a failed
    // transaction) must outlive the read buffer they arrived in.
    if (!u.owned && (u.retryable || this.txStatus === FAILED)) own(u);
    link.mode = u.retryable ? 'hold' : 'relay';
    for (const [name, parse] of u.parses) link.prepared.set(name, parse);
    if (u.unnamedParse) link.unnamed = u.unnamedParse;
    const out = joinFrames(u.frames);
    const ok = u.owned ? link.conn.socket.write(out) : relayWrite(link.conn.socket, out, this.clientSlot);
    if (!ok && !link.conn.socket.destroyed) {
      this.writeBlocked = true;
      this.flow();
    }
  }

  /** What a server must run before it can serve this unit: session state, statements it has not prepared. */
  private preparation(u: Unit, link: ServerLink): { frames: Buffer; ready: number } | null {
    const out: Buffer[] = [];
    let ready = 0;
    const replay = this.state.replayFor(link);
    if (replay !== null) {
      out.push(replay);
      ready++;
    }
    if (this.prepared.prepareOn(u, link, out, this.ctx.maxPreparedPerServer())) ready++;
    return out.length ? { frames: Buffer.concat(out), ready } : null;
  }

  // ---- server → client -------------------------------------------------------------------------

  forward(link: ServerLink, chunk: Buffer, owned: boolean): void {
    this.ctx.stats.bytesFromServers += chunk.length;
    const head = this.inflight[0];
    // A server's FATAL never gets here: ServerLink keeps it back (see ServerLink.data).
    if (head === undefined ? link !== this.home : head.link !== link) {
      // Output nobody asked for, from a server that is not answering now. An idle replica has nothing for the
      // client (a FATAL there, e.g. on a replica restart, must not read as the session's death): drop it. The
      // primary's (NOTIFY, ParameterStatus) waits until the answer being relayed is complete.
      if (link === this.home) this.asyncOutput.push(owned ? chunk : Buffer.from(chunk));
      else this.ctx.log.debug({ pid: this.key.pid, node: link.node, bytes: chunk.length }, 'dropped output of an idle replica connection');
      return;
    }
    const ok = owned ? this.client.write(chunk) : relayWrite(this.client, chunk, link.conn.slot);
    if (!ok && !this.client.destroyed) link.conn.socket.pause();
  }

  messages(n: number): void {
    this.ctx.stats.messagesFromServers += n;
  }

  ready(link: ServerLink, status: number, failed: boolean, readOnlyRefusal: boolean): void {
    this.lastActivity = Date.now();
    let i = 0;
    while (i < this.inflight.length && !(this.inflight[i].link === link && this.inflight[i].sync)) i++;
    if (i === this.inflight.length) return;
    const u = this.inflight[i];
    // Units before it on the same link that owe nothing (Flush-ended parts of this batch) are done too.
    if (i === 0) this.inflight.shift();
    else this.inflight.splice(0, i + 1);
    if (readOnlyRefusal && u.retryable && !u.retried) {
      this.ctx.stats.readOnlyRetries++;
      u.retried = true;
      this.retryOnPrimary(u, 'retry-25006');
      return;
    }
    const before = this.txStatus;
    this.txStatus = status;
    if (link === this.home) {
      // Read-your-writes: a write that committed (autocommit, or the end of a transaction that wrote) gets a
      // ticket for the WAL position that covers it; until it is known the session reads on the primary.
      if (status === IDLE) {
        if ((u.mayWrite || this.txMayWrite) && !failed && this.ctx.routing().consistency === 'read-your-writes') this.writeTicket = this.ctx.lsn.ticket();
        this.txMayWrite = false;
      } else if (u.mayWrite) this.txMayWrite = true;
    }
    if (status === IDLE) {
      if (this.sticky === link && u.sync) this.sticky = null;
    } else this.sticky = link;
    if (failed && (u.parses.length > 0 || u.needs.length > 0 || u.unnamedParse !== null)) this.prepared.unsureOn(u, link);
    else if (!failed && u.parses.length > 0) this.prepared.validated(u);
    if (!failed && u.effects && this.state.applyEffects(u.parts, before !== IDLE || status !== IDLE, link)) {
      // DEALLOCATE ALL / DISCARD ALL dropped every prepared statement of that server, the client's among them.
      link.prepared.clear();
      link.unsure = null;
      link.unnamed = null;
      this.prepared.clear();
    }
    if (before !== IDLE && status === IDLE) {
      // The transaction ended: its settings hold only if it committed.
      if (before === TX.InTransaction && !failed && u.commits) this.state.commitTransaction(link);
      else this.state.abortTransaction();
    }
    if (this.asyncOutput.length > 0 && (this.inflight.length === 0 || this.inflight[0].link === this.home)) this.flushAsyncOutput();
    if (this.drainRequested && this.idle) {
      this.end(errors.shuttingDown());
      return;
    }
    this.pump();
    this.releaseIdle();
  }

  private flushAsyncOutput(): void {
    const out = this.asyncOutput;
    this.asyncOutput = [];
    for (const chunk of out) this.client.write(chunk);
  }

  /**
   * The one way a unit that went to a replica runs again on the primary, before anything queued after it: the
   * replica refused it as read-only (25006), was lost under it, or could not take the session's state.
   */
  private retryOnPrimary(u: Unit, reason: string): void {
    u.link = null;
    u.retryable = false;
    u.reason = reason;
    u.forcePrimary = true;
    if (!u.owned) own(u);
    this.requeue(u);
    const p = this.primary();
    if (p !== null && p.privateOwed === 0) {
      this.queuedBytes -= u.bytes;
      this.dispatch(this.queue.shift()!, p);
    }
    this.pump();
  }

  /** The primary link, or null while one is being found (pump runs again then). */
  private primary(): ServerLink | null {
    const t = this.ctx.topology;
    const home = this.home;
    if (home !== null && this.homeChecked === t.version) return home;
    // A switchover holds new writes back (a transaction already open finishes first) ...
    if (t.writesPaused && this.txStatus === IDLE && this.sticky === null) {
      if (!this.awaitingResume) {
        this.awaitingResume = true;
        t.once('resume', () => {
          this.awaitingResume = false;
          this.pump();
        });
      }
      return null;
    }
    const p = t.primary;
    if (home !== null) {
      // ... and then the primary is another node: move there between transactions (state replayed), unless the
      // session holds state that lives only on the old one.
      if (p && p.up && p.name !== home.node && this.txStatus === IDLE && this.inflight.length === 0 && this.state.pins.size === 0) {
        this.release(home, false);
      } else {
        this.homeChecked = t.version;
        return home;
      }
    }
    if (this.waitingOn !== null) return null;
    if (!p || !p.up) {
      this.holdForPrimary();
      return null;
    }
    if (this.holdTimer !== null) return null;
    // A replica just promoted: the session's connection to it becomes its primary connection.
    const held = this.links.get(p.name);
    if (held !== undefined && !held.closed) return this.becomeHome(held);
    const pool = this.poolFor(p.name);
    const link = pool.acquire(this.primaryWaiter);
    if (link === null) {
      this.waitingOn = pool;
      return null;
    }
    return this.becomeHome(this.adopt(link));
  }

  private becomeHome(link: ServerLink): ServerLink {
    this.holdUntil = 0;
    this.primaryError = null;
    this.home = link;
    this.homeChecked = this.ctx.topology.version;
    return link;
  }

  private readonly primaryWaiter: PoolWaiter = {
    granted: (link) => {
      this.waitingOn = null;
      if (this.closed) {
        link.pool?.release(link, true);
        return;
      }
      this.becomeHome(this.adopt(link));
      this.pump();
      this.releaseIdle();
    },
    failed: (err) => {
      this.waitingOn = null;
      if (this.closed) return;
      const code = err instanceof ProxyError ? err.code : '';
      if (code === 'pool_timeout') this.failHead(err as ProxyError);
      else if (code !== 'pool_drained') {
        // The primary cannot be reached (it may be failing): wait for it, or for a new one, up to failover.hold_timeout.
        this.primaryError = err.message;
        this.holdForPrimary();
        return;
      }
      // A pool drained by a change of primary: look again.
      this.pump();
    },
  };

  /** Why the last attempt to reach the primary failed (reported if the hold runs out). */
  private primaryError: string | null = null;

  /** No primary is known (a failover): statements wait up to failover.hold_timeout, then the one in front fails. */
  private holdForPrimary(): void {
    if (this.holdTimer !== null) return;
    const hold = this.ctx.routing().holdTimeoutMs;
    const now = Date.now();
    if (this.holdUntil === 0) this.holdUntil = now + hold;
    if (now >= this.holdUntil) {
      this.holdUntil = 0;
      const seen = this.ctx.topology.all().map((n) => `${n.name}: ${n.up ? n.role : 'down'}`).join('; ');
      const why = this.primaryError ?? 'no node is known to be out of recovery';
      this.primaryError = null;
      this.failHead(errors.noPrimary(`${why} (waited ${hold} ms, failover.hold_timeout); ${seen}`));
      queueMicrotask(() => this.pump());
      return;
    }
    // A new primary wakes the session at once; the timer retries a primary that is known but could not be reached.
    this.holdTimer = setTimeout(this.holdWake, 50);
    this.ctx.topology.once('primary', this.holdWake);
  }

  private readonly holdWake = (): void => {
    if (this.holdTimer === null) return;
    clearTimeout(this.holdTimer);
    this.holdTimer = null;
    this.ctx.topology.off('primary', this.holdWake);
    if (!this.closed) this.pump();
  };

  /** The unit in front of the queue cannot run: it gets `err` (as an ERROR: the session stays; the next statement tries again). */
  private failHead(err: ProxyError): void {
    const u = this.queue[0];
    if (!u || u.local) return;
    const msg = errorResponse(new ProxyError(err.sqlstate, err.code, err.message, 'ERROR', err.detail, err.hint));
    u.local = u.sync ? Buffer.concat([msg, readyForQuery(statusChar(this.txStatus))]) : msg;
    if (!u.sync) this.discardUntilSync = true;
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  private onLinkClose(link: ServerLink): void {
    link.closed = true;
    // Read before the pool takes the link back (it resets the mode).
    const mode = link.mode;
    if (this.loginFailed !== null) {
      this.loginFailed(errors.backendConnect(link.node, 'the server closed the connection during login'));
      this.loginFailed = null;
    }
    const wasHome = this.home === link;
    if (this.links.get(link.node) === link) {
      this.links.delete(link.node);
      if (wasHome) this.home = null;
      link.pool?.release(link, false);
    }
    if (this.closed) return;
    // A server that died with a full socket never drains: the client must not stay paused for it.
    if (this.writeBlocked) {
      this.writeBlocked = false;
      this.flow();
    }
    if (link.fatalPassed !== null) {
      // The server ended the connection over something the client sent, and said so to the client: as on PostgreSQL, the session is over.
      this.ctx.log.info({ pid: this.key.pid, node: link.node, sqlstate: link.fatalPassed }, 'server closed the connection with a FATAL error; ending the session');
      this.finish();
      closeSocket(this.client);
      this.closeAll();
      return;
    }
    if (wasHome) {
      this.onPrimaryLost(link);
      return;
    }
    // A replica went away: a held autocommit read is retried on the primary; anything else fails cleanly.
    this.replicas.leaveAlone(link.node, REPLICA_RETRY_AFTER);
    const heldTransaction = this.sticky === link && this.txStatus !== IDLE;
    if (this.sticky === link) this.sticky = null;
    if (this.copyLink === link) this.copyLink = null;
    const lost = this.inflight.filter((u) => u.link === link);
    if (lost.length === 0) {
      // The session's open (read-only) transaction lived there: it failed, and the next statement says so.
      if (heldTransaction) this.cutIdleTransaction(errors.replicaLost(link.node));
      return;
    }
    this.inflight.splice(0, this.inflight.length, ...this.inflight.filter((u) => u.link !== link));
    const head = lost[0];
    if (head.retryable && mode === 'hold' && lost.length === 1) {
      this.retryOnPrimary(head, 'replica-lost');
      return;
    }
    this.answerLost(lost, link.node, false);
    this.pump();
  }

  /** The open transaction's server connection died while nothing of it was running: the transaction failed. */
  private cutIdleTransaction(error: ProxyError): void {
    this.state.abortTransaction();
    this.txMayWrite = false;
    this.cut = { error };
    this.txStatus = FAILED;
  }

  /**
   * Answer the units that were running on a server connection that died, leaving the client where PostgreSQL
   * would: an autocommit statement fails (08007 when it may have committed), a COMMIT in flight is 08007 and
   * ends the transaction, and anything else inside a transaction fails it (status E; see failed-transaction.ts),
   * so that nothing the client sends after it can run outside the transaction.
   */
  private answerLost(lost: Unit[], node: string, primary: boolean): void {
    const r = answerLostUnits(lost, this.txStatus, primary ? (commitInFlight) => errors.primaryLost(node, commitInFlight) : () => errors.replicaLost(node));
    if (r.discard) this.discardUntilSync = true;
    this.state.abortTransaction();
    this.txMayWrite = false;
    this.txStatus = r.status;
    this.cut = r.status === FAILED ? { error: null } : null;
    if (r.reply.length > 0) this.client.write(r.reply);
  }

  /**
   * The primary connection died (the primary failed, or was restarted). Without state that lived only there,
   * the session survives: what was running on it fails with a clear error, and the next statement that needs
   * the primary waits for the new one. Temp tables, advisory locks, LISTEN and the like died with it: then
   * the session ends, as it would on PostgreSQL itself.
   */
  private onPrimaryLost(link: ServerLink): void {
    const bound = this.state.serverPins();
    if (this.terminating || this.client.destroyed || bound.length > 0) {
      if (!this.terminating && !this.client.destroyed) {
        const why = bound.length > 0 ? `the session's ${bound.join(', ')} lived there` : 'the server closed the connection unexpectedly';
        this.client.write(errorResponse(errors.backendLost(link.node, why)));
      }
      this.finish();
      this.client.end();
      this.closeAll();
      return;
    }
    if (this.copyLink === link) this.copyLink = null;
    const heldTransaction = this.txStatus !== IDLE && this.cut === null && (this.sticky === link || this.sticky === null);
    if (this.sticky === link) this.sticky = null;
    const lost = this.inflight.filter((u) => u.link === link);
    this.inflight.splice(0, this.inflight.length, ...this.inflight.filter((u) => u.link !== link));
    this.ctx.log.warn({ pid: this.key.pid, node: link.node, in_flight: lost.length, in_transaction: heldTransaction }, 'primary connection lost; the session waits for a primary');
    if (lost.length > 0) this.answerLost(lost, link.node, true);
    else if (heldTransaction) this.cutIdleTransaction(errors.primaryLost(link.node, false));
    this.pump();
  }

  private readonly onClientClose = () => {
    if (this.closed) return;
    if (!this.terminating) for (const l of this.links.values()) if (l.busy) this.cancelLink(l);
    this.finish();
    this.closeAll();
  };

  private cancelLink(l: ServerLink): void {
    this.ctx.stats.cancelRequests++;
    // Until the server has the cancel, the connection serves nobody else (it would cancel their statement).
    l.cancelling++;
    void sendCancel(l.host, l.port, encodeCancelRequest(l.conn.pid, l.conn.secret)).finally(() => l.cancelDone());
  }

  cancel(): void {
    const link = this.inflight[0]?.link;
    if (link) this.cancelLink(link);
    else this.ctx.stats.cancelRequests++;
  }

  drain(): void {
    if (this.idle) this.end(errors.shuttingDown());
    else this.drainRequested = true;
  }

  /** Close the session if it has been idle longer than a configured timeout (called by the listener's sweep). */
  checkIdle(now: number, limits: ClientLimits): void {
    if (this.closed || this.inflight.length > 0 || this.queue.length > 0 || this.batch !== null) return;
    const err = idleTimeoutError(this.txStatus, now - this.lastActivity, limits);
    if (err) {
      this.ctx.log.info({ pid: this.key.pid, user: this.user, code: err.code }, 'closing an idle client');
      this.end(err);
    }
  }

  end(err: ProxyError): void {
    if (this.closed) return;
    this.clientSlot.handler = () => {};
    closeSocket(this.client, errorResponse(err));
    for (const l of this.links.values()) if (l.busy) this.cancelLink(l);
    this.finish();
    this.closeAll();
  }

  private closeAll(): void {
    // Back to the pool if nothing of the session stays on it (idle, no transaction, no temp tables, LISTEN, …).
    const clean = this.txStatus === IDLE && this.cut === null && this.state.serverPins().length === 0;
    for (const l of [...this.links.values()]) this.release(l, clean && !l.copyIn && !this.inflight.some((u) => u.link === l));
    if (this.terminating) {
      this.finish();
      this.client.end();
    }
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.resume();
    for (const l of this.links.values()) l.conn.socket.resume();
    if (this.waitingOn !== null) {
      this.waitingOn.cancelWait(this.primaryWaiter);
      this.waitingOn.cancelWait(this.replicaWaiter);
      this.waitingOn = null;
    }
    if (this.holdTimer !== null) {
      clearTimeout(this.holdTimer);
      this.holdTimer = null;
      this.ctx.topology.off('primary', this.holdWake);
    }
    this.prepared.releaseAll();
    this.onEnd(this);
  }

  destroy(): void {
    this.finish();
    this.client.destroy();
    for (const l of this.links.values()) l.conn.socket.destroy();
  }
}
