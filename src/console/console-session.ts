// One admin console connection after login: reads simple Query messages (at most 64 kB), runs their commands one at a time, answers with result sets.
import type net from 'node:net';
import { errors, ProxyError } from '../errors.js';
import { F, TX } from '../protocol/codes.js';
import { errorResponse, readyForQuery } from '../protocol/backend-messages.js';
import { collectAll, FrameError, FrameScanner, type FrameSink } from '../protocol/frame-scanner.js';
import { MessageWriter } from '../protocol/writer.js';
import type { ReadSlot } from '../util/read-slot.js';
import type { Logger } from '../util/logger.js';
import { closeSocket } from '../util/close-socket.js';
import type { ClientLimits } from '../frontend/client-startup.js';
import { peerAddress, type ClientInfo, type ClientSession } from '../frontend/client-session.js';
import { idleTimeoutError } from '../frontend/idle.js';
import { parseCommands, type ConsoleCommand } from './parse-command.js';
import { encodeReply } from './result-set.js';
import type { ConsoleReply } from './reply.js';

/** A console command is short; anything longer is not one (and a hostile client must not make the proxy hold more). */
export const MAX_CONSOLE_MESSAGE = 64 * 1024;

/** Where commands run: here (single process) or in the coordinator (a worker forwards them). Never rejects. */
export interface ConsoleBackend {
  run(command: ConsoleCommand): Promise<ConsoleReply>;
}

export interface ConsoleLogin {
  socket: net.Socket;
  slot: ReadSlot;
  user: string;
  applicationName: string;
  log: Logger;
  limits(): ClientLimits;
  onEnd(s: ClientSession): void;
}

const EXTENDED = new Set<number>([F.Parse, F.Bind, F.Describe, F.Execute, F.Close, F.Flush]);
const emptyQueryResponse = () => MessageWriter.message(0x49, () => {});

export class ConsoleSession implements ClientSession {
  readonly key = { pid: 0, secret: 0 };
  readonly pinned = false;
  readonly user: string;
  private readonly socket: net.Socket;
  private readonly connectedAt = Date.now();
  private lastActivity = Date.now();
  /** Whole messages read and not yet handled (at most what one read brought: the socket is paused while a command runs). */
  private readonly pending: { type: number; body: Buffer }[] = [];
  private running = false;
  /** An extended-protocol message was refused: the rest up to Sync is dropped, Sync gets ReadyForQuery. */
  private refusingUntilSync = false;
  private drainRequested = false;
  private closed = false;
  private readonly scanner: FrameScanner;

  constructor(private readonly login: ConsoleLogin, private readonly backend: ConsoleBackend) {
    this.user = login.user;
    this.socket = login.socket;
    const sink: FrameSink = {
      onFrameHeader() {},
      // The body is a view into the read buffer: copied, since it may wait for the command before it.
      onFrame: (type, body) => this.pending.push({ type, body: Buffer.from(body) }),
    };
    this.scanner = new FrameScanner(collectAll(), sink, { maxCollect: MAX_CONSOLE_MESSAGE, maxFrame: MAX_CONSOLE_MESSAGE });
  }

  start(leftover: Buffer): void {
    this.login.slot.handler = this.onData;
    this.socket.on('close', () => this.finish());
    this.socket.on('error', (err) => this.login.log.debug({ err: err.message }, 'admin console socket error'));
    if (leftover.length > 0) this.onData(leftover);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.closed) return;
    this.lastActivity = Date.now();
    try {
      this.scanner.push(chunk);
    } catch (err) {
      if (err instanceof FrameError && err.kind === 'too-large') {
        this.end(new ProxyError('54000', 'console_message_too_large', `pgsplit: admin console messages are at most ${MAX_CONSOLE_MESSAGE} bytes (got one of ${err.bodyLength})`, 'FATAL'));
      } else this.end(errors.protocolViolation((err as Error).message));
      return;
    }
    void this.work();
  };

  private async work(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.socket.pause();
    try {
      while (this.pending.length > 0 && !this.closed) await this.handle(this.pending.shift()!);
    } catch (err) {
      this.login.log.error({ err: (err as Error)?.stack ?? String(err) }, 'internal error in an admin console session; closing it');
      this.end(errors.internal((err as Error)?.message ?? String(err)));
    } finally {
      this.running = false;
      this.lastActivity = Date.now();
      if (this.drainRequested) this.end(errors.shuttingDown());
      else if (!this.closed) this.socket.resume();
    }
  }

  private async handle(m: { type: number; body: Buffer }): Promise<void> {
    switch (m.type) {
      case F.Query: {
        const end = m.body.indexOf(0);
        await this.query(m.body.toString('utf8', 0, end < 0 ? m.body.length : end));
        return;
      }
      case F.Terminate:
        this.login.slot.handler = () => {};
        this.finish();
        // closeSocket reads on (the socket was paused for this command) so the client's close is seen, and bounds it.
        closeSocket(this.socket);
        return;
      case F.Sync:
        this.refusingUntilSync = false;
        this.write([readyForQuery('I')]);
        return;
      case F.FunctionCall:
        this.write([errorResponse(simpleOnly()), readyForQuery('I')]);
        return;
      default:
        if (EXTENDED.has(m.type)) {
          if (!this.refusingUntilSync) this.write([errorResponse(simpleOnly())]);
          this.refusingUntilSync = true;
          return;
        }
        this.end(errors.protocolViolation(`unexpected message type '${String.fromCharCode(m.type)}' on the admin console`));
    }
  }

  private async query(text: string): Promise<void> {
    const parsed = parseCommands(text);
    if (!parsed.ok) {
      this.write([...encodeReply(parsed.error), readyForQuery('I')]);
      return;
    }
    if (parsed.commands.length === 0) {
      this.write([emptyQueryResponse(), readyForQuery('I')]);
      return;
    }
    for (const c of parsed.commands) {
      const reply = await this.backend.run(c);
      if (this.closed) return;
      this.write(encodeReply(reply));
      // As in a multi-statement Query on PostgreSQL, an error ends it.
      if (reply.kind === 'error') break;
    }
    this.write([readyForQuery('I')]);
  }

  private write(messages: Buffer[]): void {
    if (!this.closed && !this.socket.destroyed) this.socket.write(messages.length === 1 ? messages[0] : Buffer.concat(messages));
  }

  /** A console command runs to its end (a switchover must not be abandoned half-way): cancel requests do nothing. */
  cancel(): void {}

  drain(): void {
    if (this.running) this.drainRequested = true;
    else this.end(errors.shuttingDown());
  }

  checkIdle(now: number, limits: ClientLimits): void {
    if (this.closed || this.running) return;
    const err = idleTimeoutError(TX.Idle, now - this.lastActivity, limits);
    if (err) this.end(err);
  }

  end(err: ProxyError): void {
    if (this.closed) return;
    this.login.slot.handler = () => {};
    closeSocket(this.socket, errorResponse(err));
    this.finish();
  }

  destroy(): void {
    this.finish();
    this.socket.destroy();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending.length = 0;
    this.login.onEnd(this);
  }

  info(): ClientInfo {
    return {
      pid: this.key.pid, user: this.user, database: 'pgsplit', applicationName: this.login.applicationName, address: peerAddress(this.socket),
      state: this.running ? 'active' : 'idle', connectedAt: this.connectedAt, pins: [], target: null, replica: null, servers: [],
    };
  }
}

function simpleOnly(): ProxyError {
  return new ProxyError('0A000', 'console_simple_query_only', 'pgsplit: the admin console speaks the simple query protocol only', 'ERROR', undefined,
    'Send commands as plain text without parameters (psql does; node-postgres does for client.query(text) without values).');
}
