// A client session when routing is off: relays bytes both ways unchanged to the primary, tracking ReadyForQuery and in-flight queries.
import type net from 'node:net';
import type { Logger } from '../util/logger.js';
import { errors, type ProxyError } from '../errors.js';
import { B, F } from '../protocol/codes.js';
import { errorResponse, decodeErrorFields } from '../protocol/backend-messages.js';
import { COLLECT, FrameScanner, frameModes, NOTICE, type FrameSink } from '../protocol/frame-scanner.js';
import { encodeCancelRequest } from '../protocol/startup.js';
import { terminate } from '../protocol/frontend-messages.js';
import { sendCancel, type ServerConnection } from '../backend/connect.js';
import type { CancelRegistry } from './cancel-registry.js';
import { relayWrite, type ReadSlot } from '../util/read-slot.js';
import type { ProxyStats } from './stats.js';
import { peerAddress, type ClientInfo, type ClientSession } from './client-session.js';
import type { ClientLimits } from './client-startup.js';
import { FrameError } from '../protocol/frame-scanner.js';
import { closeSocket } from '../util/close-socket.js';
import { idleTimeoutError } from './idle.js';

export interface RelaySessionContext {
  stats: ProxyStats;
  cancels: CancelRegistry;
  log: Logger;
  limits(): ClientLimits;
}

// Query, Sync and FunctionCall each produce exactly one ReadyForQuery; Parse/Bind/Execute may start work
// before their Sync arrives; Terminate ends the session.
const CLIENT_MODES = frameModes({ Q: NOTICE, S: NOTICE, F: NOTICE, X: NOTICE, P: NOTICE, B: NOTICE, E: NOTICE });
const OWES_READY = frameModes({ Q: 1, S: 1, F: 1 });
// Server messages the proxy reads: ReadyForQuery for the transaction status, ErrorResponse for FATALs.
const SERVER_MODES = frameModes({ Z: COLLECT, E: COLLECT });

export class RelaySession implements ClientSession {
  /** The relay's server connection is its own for the whole session: nothing to pin. */
  readonly pinned = false;

  /** Transaction status from the last ReadyForQuery: I idle, T in a transaction, E failed transaction. */
  txStatus = 0x49;
  /** ReadyForQuery messages still owed by the server for what the client has sent. */
  private pending = 0;
  /** Extended-protocol messages were sent since the last Sync (the server may be executing them). */
  private unsynced = false;
  private terminating = false;
  private closed = false;
  private serverSentFatal = false;
  private drainRequested = false;
  /** Set by the scanner when a drain may close the session; acted on after the chunk is relayed. */
  private drainNow = false;
  private readonly clientScanner: FrameScanner;
  private readonly serverScanner: FrameScanner;
  private clientFrames = 0;
  private serverFrames = 0;
  /** Last time the client sent something or the server finished a unit (for the idle timeouts). */
  private lastActivity = Date.now();

  constructor(
    private readonly client: net.Socket,
    private readonly clientSlot: ReadSlot,
    private readonly server: ServerConnection,
    private readonly serverAddress: { host: string; port: number },
    readonly key: { pid: number; secret: number },
    readonly user: string,
    private readonly ctx: RelaySessionContext,
    private readonly onEnd: (s: RelaySession) => void,
    /** The database and application_name it logged in with (SHOW CLIENTS). */
    private readonly login: { database: string; applicationName: string } = { database: '', applicationName: '' },
  ) {
    const clientSink: FrameSink = {
      onFrameHeader: (type) => {
        if (type === F.Terminate) this.terminating = true;
        else if (OWES_READY[type] === 1) {
          this.pending++;
          if (type === F.Sync) this.unsynced = false;
        } else this.unsynced = true;
      },
      onFrame() {},
    };
    const serverSink: FrameSink = {
      onFrameHeader() {},
      onFrame: (type, body) => {
        if (type === B.ReadyForQuery) {
          this.txStatus = body[0];
          this.lastActivity = Date.now();
          if (this.pending > 0) this.pending--;
          if (this.drainRequested && this.idle) this.drainNow = true;
        } else {
          const severity = decodeErrorFields(body).V;
          if (severity === 'FATAL' || severity === 'PANIC') this.serverSentFatal = true;
        }
      },
    };
    this.clientScanner = new FrameScanner(CLIENT_MODES, clientSink, { maxFrame: ctx.limits().maxMessageSize });
    // A server message of any size streams through; only the head of an ErrorResponse is looked at.
    this.serverScanner = new FrameScanner(SERVER_MODES, serverSink, { maxCollect: 64 * 1024, truncate: true });
  }

  private readonly connectedAt = Date.now();

  info(): ClientInfo {
    const state = this.pending > 0 ? 'active' : this.txStatus === 0x54 ? 'in transaction' : this.txStatus === 0x45 ? 'in failed transaction' : 'idle';
    const { database, applicationName } = this.login;
    const server = { node: this.server.node, user: this.user, database, state: 'active' as const, client: this.key.pid, backendPid: this.server.pid, connectedAt: this.connectedAt, since: this.connectedAt };
    return { pid: this.key.pid, user: this.user, database, applicationName, address: peerAddress(this.client), state, connectedAt: this.connectedAt, pins: [], target: this.server.node, replica: null, servers: [server] };
  }

  get node(): string {
    return this.server.node;
  }

  /** No query in flight and no transaction open: the session can be closed without losing work. */
  get idle(): boolean {
    return this.pending === 0 && this.txStatus === 0x49;
  }

  /** The server may be running something for this client right now. */
  private get busy(): boolean {
    return this.pending > 0 || this.unsynced;
  }

  start(leftover: Buffer): void {
    const c = this.client;
    const s = this.server.socket;
    this.clientSlot.handler = this.onClientData;
    this.server.slot.handler = this.onServerData;
    c.on('drain', () => s.resume());
    s.on('drain', () => c.resume());
    c.on('close', this.onClientClose);
    c.on('error', this.onClientError);
    s.on('close', this.onServerClose);
    s.on('error', this.onServerError);
    if (leftover.length > 0) this.onClientData(leftover);
  }

  private readonly onClientData = (chunk: Buffer) => {
    if (this.closed) return;
    const stats = this.ctx.stats;
    stats.bytesFromClients += chunk.length;
    this.lastActivity = Date.now();
    try {
      this.clientScanner.push(chunk);
    } catch (err) {
      if (err instanceof FrameError && err.kind === 'too-large') this.end(errors.messageTooLarge(err.type, err.bodyLength, this.ctx.limits().maxMessageSize));
      else if (err instanceof FrameError) this.end(errors.protocolViolation(err.message));
      else this.fail(err);
      return;
    }
    stats.messagesFromClients += this.clientScanner.frames - this.clientFrames;
    this.clientFrames = this.clientScanner.frames;
    if (!relayWrite(this.server.socket, chunk, this.clientSlot) && !this.server.socket.destroyed) this.client.pause();
  };

  private readonly onServerData = (chunk: Buffer) => {
    // After the client is gone the server's remaining output (a cancel's error, ReadyForQuery) is dropped,
    // but still read, so the socket sees the server's end and closes.
    if (this.closed) return;
    const stats = this.ctx.stats;
    stats.bytesFromServers += chunk.length;
    try {
      this.serverScanner.push(chunk);
    } catch (err) {
      this.ctx.log.error({ node: this.node, err: (err as Error).message }, 'invalid data from server');
      this.end(errors.backendLost(this.node, `invalid data from server: ${(err as Error).message}`));
      return;
    }
    stats.messagesFromServers += this.serverScanner.frames - this.serverFrames;
    this.serverFrames = this.serverScanner.frames;
    if (!relayWrite(this.client, chunk, this.server.slot) && !this.client.destroyed) this.server.socket.pause();
    if (this.drainNow) this.end(errors.shuttingDown());
  };

  private readonly onClientError = (err: Error) => {
    this.ctx.log.debug({ pid: this.key.pid, err: err.message }, 'client socket error');
  };

  private readonly onServerError = (err: Error) => {
    if (this.terminating || this.closed) return;
    this.ctx.log.warn({ pid: this.key.pid, node: this.node, err: err.message }, 'server socket error');
  };

  private readonly onClientClose = () => {
    if (this.closed) return;
    // A client that vanished mid-query must not leave its query running on the server.
    if (this.busy && !this.terminating) this.cancel();
    this.finish();
    const s = this.server.socket;
    if (!s.destroyed) {
      if (this.terminating) s.end();
      else s.end(terminate());
    }
  };

  private readonly onServerClose = () => {
    if (this.closed) return;
    if (!this.terminating && !this.serverSentFatal && !this.client.destroyed) {
      this.client.write(errorResponse(errors.backendLost(this.node, 'the server closed the connection unexpectedly')));
    }
    this.finish();
    this.client.end();
  };

  /** A bug, not the client's doing: this session ends with XX000 and a log line; nothing else is affected. */
  private fail(err: unknown): void {
    this.ctx.log.error({ pid: this.key.pid, err: (err as Error)?.stack ?? String(err) }, 'internal error in a relay session; closing it');
    this.end(errors.internal((err as Error)?.message ?? String(err)));
  }

  /** Close the session if it has been idle longer than a configured timeout (called by the listener's sweep). */
  checkIdle(now: number, limits: ClientLimits): void {
    if (this.closed || this.pending > 0 || this.unsynced) return;
    const err = idleTimeoutError(this.txStatus, now - this.lastActivity, limits);
    if (err) {
      this.ctx.log.info({ pid: this.key.pid, user: this.user, code: err.code }, 'closing an idle client');
      this.end(err);
    }
  }

  cancel(): void {
    this.ctx.stats.cancelRequests++;
    void sendCancel(this.serverAddress.host, this.serverAddress.port, encodeCancelRequest(this.server.pid, this.server.secret));
  }

  /** Ask the session to close once it is idle (SIGTERM drain). */
  drain(): void {
    if (this.idle) this.end(errors.shuttingDown());
    else this.drainRequested = true;
  }

  /** Close the session now, telling the client why. */
  end(err: ProxyError): void {
    if (this.closed) return;
    this.clientSlot.handler = () => {};
    closeSocket(this.client, errorResponse(err));
    if (this.busy) this.cancel();
    this.finish();
    const s = this.server.socket;
    if (!s.destroyed) s.end(terminate());
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.resume();
    this.server.socket.resume();
    this.onEnd(this);
  }

  destroy(): void {
    this.finish();
    this.client.destroy();
    this.server.socket.destroy();
  }
}
