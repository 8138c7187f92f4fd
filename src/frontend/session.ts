// A client session after startup with routing on: every unit goes to the primary or a replica, session state stays whole.
//
// The session's parts, each in its own file, all working on the state in session-core.ts:
//   client-messages.ts  client messages cut into units (a Query, a FunctionCall, a batch up to Sync or Flush);
//   unit-dispatch.ts    units sent in order to the server placeUnit chooses, prepared first, retried on the primary;
//   session-links.ts    the server connections the session holds, and its primary connection's states;
//   server-output.ts    server output relayed to the client, each unit's end settling the transaction state;
//   link-loss.ts        a server connection lost under the session (no statement of a cut transaction runs outside it).
// This file ties them to the client socket and the session's life (login, cancel, drain, idle timeouts, end).
import type net from 'node:net';
import { errors, ProxyError } from '../errors.js';
import { TX } from '../protocol/codes.js';
import { errorResponse } from '../protocol/backend-messages.js';
import { collectAll, FrameError, FrameScanner, type FrameSink } from '../protocol/frame-scanner.js';
import { encodeCancelRequest } from '../protocol/startup.js';
import { sendCancel } from '../backend/connect.js';
import { UNKNOWN_SETTINGS, type ServerLink, type LinkOwner } from '../backend/server-link.js';
import type { ReadSlot } from '../util/read-slot.js';
import { closeSocket } from '../util/close-socket.js';
import { peerAddress, type ClientInfo, type ClientSession } from './client-session.js';
import type { ClientLimits } from './client-startup.js';
import { own } from './unit.js';
import { SessionState } from './session-state.js';
import { PreparedStatements } from './prepared-statements.js';
import { ReplicaChoice } from './replica-choice.js';
import type { PgsplitSettings } from './intercept.js';
import { idleTimeoutError } from './idle.js';
import { SessionCore, type RoutingSettings, type SessionContext, type SessionStartup } from './session-core.js';
import { SessionLinks } from './session-links.js';
import { clientMessage } from './client-messages.js';
import { flow, stopPeeking } from './unit-dispatch.js';
import { forward, unitDone } from './server-output.js';
import { linkLost } from './link-loss.js';

export type { RoutingSettings, SessionContext, SessionStartup } from './session-core.js';

export class Session extends SessionCore implements ClientSession, LinkOwner, PgsplitSettings {
  readonly links: SessionLinks;
  readonly replicas: ReplicaChoice;
  readonly state: SessionState;
  readonly prepared: PreparedStatements;
  /** SET pgsplit.read_tags / startup option; null = the user's or the configured tags. */
  private readTags: readonly string[] | null;
  private readonly scanner: FrameScanner;
  /** Set while login() waits: a lost server ends the login. */
  private loginFailed: ((err: Error) => void) | null = null;

  constructor(
    client: net.Socket,
    clientSlot: ReadSlot,
    first: ServerLink,
    startupSettings: { key: string; sql: string }[],
    key: { pid: number; secret: number },
    user: string,
    ctx: SessionContext,
    private readonly onEnd: (s: Session) => void,
    startup: SessionStartup,
  ) {
    super(client, clientSlot, key, user, ctx, startup);
    this.readTags = startup.readTags;
    this.prepared = new PreparedStatements(ctx.classifier, () => ctx.limits().maxPreparedStatements, ctx.statements?.keys ?? null, () => ctx.limits().maxPreparedBytes);
    this.state = new SessionState(startup.poolMode === 'transaction');
    this.replicas = new ReplicaChoice(ctx.topology, ctx.lsn, ctx.stats);
    this.links = new SessionLinks(this, this);
    this.state.setStartup(startupSettings);
    this.links.adoptHome(first);
    const sink: FrameSink = {
      onFrameHeader() {},
      onFrame: (type, body, frame) => {
        if (!this.closed) clientMessage(this, type, body, frame);
      },
    };
    this.scanner = new FrameScanner(collectAll(), sink, { maxCollect: ctx.limits().maxMessageSize });
  }

  /** Pinned: state only its server connection has keeps it there (temp tables, LISTEN, …). */
  get pinned(): boolean {
    return this.state.pins.size > 0;
  }

  get idle(): boolean {
    return this.inflight.length === 0 && this.queue.length === 0 && this.batch === null && this.txStatus === TX.Idle;
  }

  setReadTags(tags: readonly string[] | null): void {
    this.readTags = tags;
    this.replicas.invalidate(); // the current replica may not carry the new tags
  }

  readTagsInEffect(settings: RoutingSettings = this.ctx.routing()): readonly string[] {
    return this.readTags ?? settings.userReadTags.get(this.user) ?? settings.readTags;
  }

  // LinkOwner: events of the server connections the session holds.
  linkClosed(link: ServerLink): void {
    if (this.loginFailed !== null) {
      this.loginFailed(errors.backendConnect(link.node, 'the server closed the connection during login'));
      this.loginFailed = null;
    }
    try {
      linkLost(this, link);
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
    flow(this);
  }

  linkError(link: ServerLink, err: Error): void {
    if (!this.terminating && !this.closed) this.ctx.log.warn({ pid: this.key.pid, node: link.node, err: err.message }, 'server socket error');
  }

  forward(link: ServerLink, chunk: Buffer, owned: boolean): void {
    forward(this, link, chunk, owned);
  }

  ready(link: ServerLink, status: number, failed: boolean, readOnlyRefusal: boolean): void {
    unitDone(this, link, status, failed, readOnlyRefusal);
  }

  messages(n: number): void {
    this.ctx.stats.messagesFromServers += n;
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

  /** The login failed: the server connection goes back (or is closed), and the session never started. */
  abandon(): void {
    this.closed = true;
    this.closeAll();
    this.prepared.releaseAll();
  }

  start(leftover: Buffer): void {
    this.clientSlot.handler = this.onClientData;
    this.client.on('drain', () => {
      for (const l of this.links.all()) l.conn.socket.resume();
    });
    this.client.on('close', this.onClientClose);
    this.client.on('error', (err) => this.ctx.log.debug({ pid: this.key.pid, err: err.message }, 'client socket error'));
    if (leftover.length > 0) this.onClientData(leftover);
    this.links.releaseIdle();
  }

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
      flow(this);
    } catch (err) {
      if (err instanceof FrameError && err.kind === 'too-large') this.end(errors.messageTooLarge(err.type, err.bodyLength, this.ctx.limits().maxMessageSize));
      else if (err instanceof FrameError) this.end(errors.protocolViolation(err.message));
      else if (err instanceof ProxyError) this.end(err);
      // A message whose fields do not add up (a string without its terminator, a count past the end).
      else if (err instanceof RangeError) this.end(errors.protocolViolation(`invalid message from the client: ${err.message}`));
      else this.fail(err);
    }
  };

  info(): ClientInfo {
    const now = this.inflight[0]?.link ?? this.sticky ?? this.home;
    const state =
      this.inflight.length > 0 ? 'active'
      : this.queue.length > 0 || this.batch !== null ? 'waiting'
      : this.txStatus === TX.InTransaction ? 'in transaction'
      : this.txStatus === TX.Failed ? 'in failed transaction'
      : 'idle';
    const servers = [...this.links.all()].map((l) => ({
      node: l.node, user: this.user, database: this.database, state: 'active' as const, client: this.key.pid, backendPid: l.conn.pid, connectedAt: l.createdAt, since: l.adoptedAt,
    }));
    return {
      pid: this.key.pid, user: this.user, database: this.database, applicationName: this.applicationName, address: peerAddress(this.client), state,
      connectedAt: this.connectedAt, pins: [...this.state.pins], target: now?.node ?? null, replica: this.replicas.current, servers,
    };
  }

  fail(err: unknown): void {
    this.ctx.log.error({ pid: this.key.pid, err: (err as Error)?.stack ?? String(err) }, 'internal error in a session; closing it');
    this.end(errors.internal((err as Error)?.message ?? String(err)));
  }

  private readonly onClientClose = () => {
    if (this.closed) return;
    if (!this.terminating) for (const l of this.links.all()) if (l.busy) this.cancelLink(l);
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
    for (const l of this.links.all()) if (l.busy) this.cancelLink(l);
    this.finish();
    this.closeAll();
  }

  closeAll(): void {
    // Back to the pool if nothing of the session stays on it (idle, no transaction, no temp tables, LISTEN, …).
    const clean = this.txStatus === TX.Idle && this.cut === null && this.state.serverPins().length === 0;
    for (const l of [...this.links.all()]) this.links.release(l, clean && !l.copyIn && !this.inflight.some((u) => u.link === l));
    if (this.terminating) {
      this.finish();
      this.client.end();
    }
  }

  finish(): void {
    if (this.closed) return;
    this.closed = true;
    stopPeeking(this);
    this.client.resume();
    for (const l of this.links.all()) l.conn.socket.resume();
    this.links.finish();
    this.prepared.releaseAll();
    if (this.pauseWait !== null) this.ctx.topology.off('resume', this.pauseWait);
    this.pauseWait = null;
    this.onEnd(this);
  }

  destroy(): void {
    this.finish();
    this.client.destroy();
    for (const l of this.links.all()) l.conn.socket.destroy();
  }
}
