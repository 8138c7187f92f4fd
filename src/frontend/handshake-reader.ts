// Reads a client's startup packets and handshake messages one at a time, before the session starts relaying.
import type net from 'node:net';
import { errors } from '../errors.js';
import { MAX_STARTUP_PACKET } from '../protocol/startup.js';

export class ClientGone extends Error {
  constructor() {
    super('client closed the connection during the handshake');
  }
}

/** limits.client_login_timeout passed while the reader waited for the client. */
export class LoginTimeout extends Error {
  constructor() {
    super('timed out waiting for the client during startup');
  }
}

const MAX_HANDSHAKE_MESSAGE = 1 << 16;
// What the reader holds at most: one whole handshake message and change. A client that sends more before
// the proxy has asked for it is not read until the reader has used what it has (it cannot grow memory).
const MAX_BUFFERED = MAX_HANDSHAKE_MESSAGE + MAX_STARTUP_PACKET;

export class HandshakeReader {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private closed = false;
  private paused = false;

  constructor(private readonly socket: net.Socket) {
    socket.on('close', this.onClose);
    socket.on('error', this.onClose);
  }

  /** Bytes read from the client; copied, since the caller's buffer is reused after the call. */
  readonly push = (chunk: Buffer) => {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    if (this.buf.length >= MAX_BUFFERED && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    this.wake();
  };

  /** Bytes the client sent that the handshake has not used yet. */
  get buffered(): number {
    return this.buf.length;
  }

  private readonly onClose = () => {
    this.closed = true;
    this.wake();
  };

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async need(n: number, deadline: number): Promise<void> {
    if (this.paused && this.buf.length < MAX_BUFFERED) {
      this.paused = false;
      this.socket.resume();
    }
    while (this.buf.length < n) {
      if (this.closed) throw new ClientGone();
      const wait = deadline - Date.now();
      if (wait <= 0) throw new LoginTimeout();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  private take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** A startup-phase packet (length word first), whole, including its length. */
  async startupPacket(deadline: number): Promise<Buffer> {
    await this.need(4, deadline);
    const len = this.buf.readInt32BE(0);
    if (len < 8 || len > MAX_STARTUP_PACKET) throw errors.protocolViolation(`invalid length of startup packet (${len})`);
    await this.need(len, deadline);
    return this.take(len);
  }

  /** A typed message; returns its type and body. */
  async message(deadline: number): Promise<{ type: number; body: Buffer }> {
    await this.need(5, deadline);
    const type = this.buf[0];
    const len = this.buf.readInt32BE(1);
    if (len < 4 || len > MAX_HANDSHAKE_MESSAGE) throw errors.protocolViolation(`invalid message length ${len} during authentication`);
    await this.need(len + 1, deadline);
    const frame = this.take(len + 1);
    return { type, body: frame.subarray(5) };
  }

  /** Stop reading; returns bytes the client sent beyond the handshake. */
  detach(): Buffer {
    this.socket.removeListener('close', this.onClose);
    this.socket.removeListener('error', this.onClose);
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
