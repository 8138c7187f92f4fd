// Sockets that read into a buffer of their own (net's `onread`) instead of a new Buffer per read, and the write rule that keeps this safe.
//
// Why: on the relay's hot path Node's default read path allocates a buffer and runs the Readable stream
// machinery for every chunk; reading into a reused buffer cut the proxy's CPU per pgbench transaction
// by about 15% in our measurements. The price is one rule: a chunk is only valid during the handler, so
// a write that Node could not complete at once must own its bytes (see relayWrite).
import net from 'node:net';

const SIZE = 16 * 1024;
// A client connection reads into a small buffer until a read fills it (thousands of idle clients each hold one).
const SMALL = 1024;
// Small reads in a row before a grown buffer is given back.
const SHRINK_AFTER = 16;

/** Called with each chunk read; the chunk is only valid during the call. */
export type ReadHandler = (chunk: Buffer) => void;

export class ReadSlot {
  private buf: Buffer;
  private lastRead = 0;
  private smallReads = 0;
  handler: ReadHandler = () => {};
  /** Chunks are fresh buffers nobody reuses (a TLS socket's 'data' events): writes may keep them as they are. */
  fresh = false;
  readonly onread = {
    // Node asks for the buffer of the next read after each read.
    buffer: () => (this.adaptive ? this.sized() : this.buf),
    callback: (n: number, b: Buffer): boolean => {
      this.lastRead = n;
      this.handler(b.subarray(0, n));
      return true;
    },
  };

  /** `adaptive`: start small and grow only for a connection whose reads fill the buffer (clients). */
  constructor(private readonly adaptive = false) {
    // Not from Node's shared 8 kB slabs: a long-lived small buffer would keep a whole slab of short-lived ones alive.
    this.buf = adaptive ? Buffer.allocUnsafeSlow(SMALL) : Buffer.allocUnsafe(SIZE);
  }

  private sized(): Buffer {
    const n = this.lastRead;
    if (this.buf.length === SMALL) {
      if (n === SMALL) this.buf = Buffer.allocUnsafe(SIZE);
    } else if (n <= SMALL) {
      if (++this.smallReads >= SHRINK_AFTER) {
        this.smallReads = 0;
        this.buf = Buffer.allocUnsafeSlow(SMALL);
      }
    } else this.smallReads = 0;
    return this.buf;
  }

  /** The last chunk is now referenced by a pending write: read into a fresh buffer from now on. */
  detach(): void {
    if (!this.fresh) this.buf = Buffer.allocUnsafeSlow(this.buf.length);
  }

  /**
   * Read from `stream`'s 'data' events from now on (a TLS socket layered over the one this slot read for):
   * the same handler gets the chunks, which are fresh buffers, so writes need not copy them.
   */
  follow(stream: NodeJS.ReadableStream): void {
    this.fresh = true;
    stream.on('data', (chunk: Buffer) => this.handler(chunk));
  }
}

/** Write a chunk that came from `from`'s read buffer, without letting a pending write see it overwritten. */
export function relayWrite(to: net.Socket, chunk: Buffer, from: ReadSlot): boolean {
  if (from.fresh) return to.write(chunk);
  if (to.writableLength > 0) return to.write(Buffer.from(chunk));
  const ok = to.write(chunk);
  if (to.writableLength > 0) from.detach();
  return ok;
}

interface SocketInternals {
  _handle: unknown;
  _server: net.Server | null;
  server: net.Server | null;
}

/**
 * Move an accepted socket's handle (from a server created with pauseOnConnect) into a new Socket that
 * reads through `slot`. net.Server has no `onread` option, so this is the one way to use it for clients.
 * The server's connection count is carried over so that server.close() still waits for this socket.
 */
export function adoptAccepted(accepted: net.Socket, slot: ReadSlot): net.Socket {
  const old = accepted as unknown as SocketInternals;
  const handle = old._handle;
  const server = old._server;
  old._handle = null;
  old._server = null;
  old.server = null;
  const s = new net.Socket({ handle, onread: slot.onread, readable: true, writable: true } as net.SocketConstructorOpts);
  const adopted = s as unknown as SocketInternals;
  adopted._server = server;
  adopted.server = server;
  s.setNoDelay(true);
  return s;
}

/** A raw TCP handle passed over IPC (a coordinator hands a worker its client) into a Socket that reads through `slot`. */
export function adoptHandle(handle: unknown, slot: ReadSlot): net.Socket {
  const s = new net.Socket({ handle, onread: slot.onread, readable: true, writable: true } as net.SocketConstructorOpts);
  s.setNoDelay(true);
  return s;
}
