// Support for the hardening tests: a raw protocol client (trust auth), frame builders, socket watchers and the proxy child's memory.
import { decodeErrorFields } from '../../src/protocol/backend-messages.js';
import fs from 'node:fs';
import net from 'node:net';
import pg from 'pg';
import { expect } from 'vitest';
import type { ClusterInfo, ClusterNode } from '../harness/cluster.js';
import { spawnProxy, type ProxyProcess, type RunningProxy } from '../harness/proxy.js';
import { directClient, proxyClient } from './helpers.js';

// ---- frontend frames --------------------------------------------------------------------------

/** One typed frontend message: type byte, int32 length, body. */
export function frame(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');
export const queryMsg = (sql: string): Buffer => frame('Q', cstr(sql));
export const parseMsg = (name: string, sql: string): Buffer => frame('P', Buffer.concat([cstr(name), cstr(sql), Buffer.from([0, 0])]));
export const syncMsg = (): Buffer => frame('S');
export const flushMsg = (): Buffer => frame('H');
/** Bind of `statement` to `portal`, no parameters, text results. */
export const bindMsg = (portal: string, statement: string): Buffer => frame('B', Buffer.concat([cstr(portal), cstr(statement), Buffer.from([0, 0, 0, 0, 0, 0])]));
/** Execute of `portal`, at most `maxRows` rows (0: all). */
export const executeMsg = (portal: string, maxRows = 0): Buffer => {
  const rows = Buffer.alloc(4);
  rows.writeInt32BE(maxRows, 0);
  return frame('E', Buffer.concat([cstr(portal), rows]));
};
export const copyData = (data: Buffer): Buffer => frame('d', data);
export const copyDone = (): Buffer => frame('c');

// ---- backend messages -------------------------------------------------------------------------

export interface BackendMessage {
  type: string;
  body: Buffer;
}

/** The fields of an ErrorResponse/NoticeResponse body, by field code (C, M, S …): the proxy's own decoder. */
export const messageFields = decodeErrorFields;

/** A raw protocol-3.0 connection that keeps every backend message it receives (for small answers only). */
export class RawConn {
  readonly messages: BackendMessage[] = [];
  /** The peer sent FIN (it may still be reading: a half-close). */
  ended = false;
  closed = false;
  error: Error | null = null;
  private pending: Buffer = Buffer.alloc(0);
  private readIndex = 0;
  private wake: (() => void) | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.pending = this.pending.length === 0 ? d : Buffer.concat([this.pending, d]);
      while (this.pending.length >= 5) {
        const len = this.pending.readInt32BE(1);
        if (this.pending.length < len + 1) break;
        this.messages.push({ type: String.fromCharCode(this.pending[0]!), body: Buffer.from(this.pending.subarray(5, len + 1)) });
        this.pending = this.pending.subarray(len + 1);
      }
      this.poke();
    });
    socket.on('error', (err) => {
      this.error = err;
      this.poke();
    });
    socket.on('end', () => {
      this.ended = true;
      this.poke();
    });
    socket.on('close', () => {
      this.closed = true;
      this.poke();
    });
  }

  static open(port: number, o: { allowHalfOpen?: boolean } = {}): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: o.allowHalfOpen ?? false });
      s.setNoDelay(true);
      s.once('error', reject);
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(new RawConn(s));
      });
    });
  }

  /** Opens a connection and logs in with trust auth (the proxy must have auth.method: trust). */
  static async login(port: number, params: Record<string, string>, timeoutMs = 10_000): Promise<RawConn> {
    const c = await RawConn.open(port);
    c.socket.write(startupPacket(params));
    const auth = await c.next('authentication', timeoutMs);
    if (auth.type !== 'R' || auth.body.readInt32BE(0) !== 0) {
      c.socket.destroy();
      throw new Error(`expected AuthenticationOk, got '${auth.type}' ${auth.type === 'E' ? JSON.stringify(messageFields(auth.body)) : ''}`);
    }
    await c.until('Z', timeoutMs);
    return c;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits (event-driven, with a deadline) until check returns something other than undefined. */
  async waitFor<T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** The next unread message; fails if the connection closes first. */
  next(what: string, timeoutMs: number): Promise<BackendMessage> {
    return this.waitFor(what, () => {
      if (this.readIndex < this.messages.length) return this.messages[this.readIndex++];
      if (this.closed) throw new Error(`connection closed while waiting for ${what}${this.error ? ` (${this.error.message})` : ''}`);
      return undefined;
    }, timeoutMs);
  }

  /** Unread messages up to and including the first of `type`. */
  async until(type: string, timeoutMs: number): Promise<BackendMessage[]> {
    const out: BackendMessage[] = [];
    for (;;) {
      const m = await this.next(`a '${type}' message`, timeoutMs);
      out.push(m);
      if (m.type === type) return out;
    }
  }

  /** Simple-protocol query: its messages up to ReadyForQuery. */
  async query(sql: string, timeoutMs = 10_000): Promise<BackendMessage[]> {
    this.socket.write(queryMsg(sql));
    return this.until('Z', timeoutMs);
  }

  /**
   * True once the peer has closed the connection for good, false if it has not within timeoutMs. With
   * allowHalfOpen a FIN alone is not enough: after it, a byte is written now and then, which a closed
   * socket answers with a reset while a half-closed one (still reading) takes it in.
   */
  closedWithin(timeoutMs: number): Promise<boolean> {
    return this.waitFor('close', () => {
      if (this.closed) return true;
      if (this.ended && !this.socket.destroyed && this.socket.writable) this.socket.write(PROBE);
      return undefined;
    }, timeoutMs).catch(() => false);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const PROBE = Buffer.from([0]);

/** A StartupMessage for protocol 3.0. */
export function startupPacket(params: Record<string, string>, version = 196608): Buffer {
  const body = Buffer.concat([...Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)), Buffer.from([0])]);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(version, 4);
  return Buffer.concat([head, body]);
}

/** The first ErrorResponse among messages, as fields, or undefined. */
export function errorIn(messages: BackendMessage[]): Record<string, string> | undefined {
  const e = messages.find((m) => m.type === 'E');
  return e ? messageFields(e.body) : undefined;
}

// ---- streaming writes -------------------------------------------------------------------------

export interface StreamResult {
  /** Bytes handed to the socket (accepted by write()). */
  written: number;
  /** The socket closed (or errored) before everything was written. */
  closed: boolean;
  /** Nothing more could be written for stallMs: the peer stopped reading. */
  stalled: boolean;
  /** The deadline passed first. */
  timedOut: boolean;
}

/**
 * Writes chunk(i) for i = 0, 1, … until `total` bytes were written, honouring backpressure. Stops early
 * when the socket closes, when the peer has not read anything for `stallMs` (if given), or at the deadline.
 */
export async function streamInto(socket: net.Socket, total: number, chunk: (i: number) => Buffer, o: { deadline: number; stallMs?: number }): Promise<StreamResult> {
  let written = 0;
  let closed = socket.destroyed;
  const onClose = () => (closed = true);
  socket.on('close', onClose);
  socket.on('error', onClose);
  try {
    for (let i = 0; written < total; i++) {
      if (closed || socket.destroyed || socket.writableEnded) return { written, closed: true, stalled: false, timedOut: false };
      if (Date.now() > o.deadline) return { written, closed: false, stalled: false, timedOut: true };
      const b = chunk(i);
      written += b.length;
      if (socket.write(b)) continue;
      // Wait for the peer to take the queued bytes, or for it to stop reading (stall), close, or the deadline.
      const outcome = await new Promise<'drain' | 'closed' | 'stalled' | 'deadline'>((resolve) => {
        const timers: NodeJS.Timeout[] = [];
        const done = (v: 'drain' | 'closed' | 'stalled' | 'deadline') => {
          for (const t of timers) clearTimeout(t);
          socket.removeListener('drain', onDrain);
          socket.removeListener('close', onEnd);
          resolve(v);
        };
        const onDrain = () => done('drain');
        const onEnd = () => done('closed');
        socket.once('drain', onDrain);
        socket.once('close', onEnd);
        timers.push(setTimeout(() => done('deadline'), Math.max(0, o.deadline - Date.now())));
        if (o.stallMs !== undefined) {
          // A stall: the kernel's send queue has not moved for stallMs.
          let last = socket.bytesWritten;
          let still = 0;
          const tick = () => {
            const now = socket.bytesWritten;
            still = now === last ? still + 100 : 0;
            last = now;
            if (still >= o.stallMs!) done('stalled');
            else timers.push(setTimeout(tick, 100));
          };
          timers.push(setTimeout(tick, 100));
        }
        if (closed) done('closed');
      });
      if (outcome === 'closed') return { written, closed: true, stalled: false, timedOut: false };
      if (outcome === 'stalled') return { written, closed: false, stalled: true, timedOut: false };
      if (outcome === 'deadline') return { written, closed: false, stalled: false, timedOut: true };
    }
    return { written, closed, stalled: false, timedOut: false };
  } finally {
    socket.removeListener('close', onClose);
    socket.removeListener('error', onClose);
  }
}

// ---- the proxy process ------------------------------------------------------------------------

/** Resident memory of a process in MB (VmRSS from /proc). */
export function rssMB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/** Samples a process's RSS every 50 ms until stop(); returns the highest value seen. */
export function rssPeak(pid: number): { stop(): number } {
  let peak = 0;
  const sample = () => {
    try {
      peak = Math.max(peak, rssMB(pid));
    } catch {
      /* exited */
    }
  };
  sample();
  const t = setInterval(sample, 50);
  return {
    stop() {
      clearInterval(t);
      sample();
      return peak;
    },
  };
}

/** A pgsplit child process plus the tail of its stderr, to explain a crash in an assertion message. */
export class ChildProxy {
  proc!: ProxyProcess;
  private stderr = '';

  /** listenExtra: keys added to the listen section (e.g. `max_client_connections: 5`), which `extra` cannot repeat. */
  constructor(
    private readonly info: ClusterInfo,
    private readonly options: NonNullable<Parameters<typeof spawnProxy>[1]>,
    private readonly listenExtra?: string,
  ) {}

  get port(): number {
    return this.proc.port;
  }

  get pid(): number {
    return this.proc.child.pid!;
  }

  get alive(): boolean {
    return !!this.proc && this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }

  /** Starts the process, or a new one if the previous one died (so one crash does not fail every later test). */
  async ensure(): Promise<void> {
    // A process that just crashed may not have reported its exit yet: a refused connection tells.
    if (this.alive && (await accepts(this.port))) return;
    if (this.proc) {
      const exited = this.alive ? new Promise((r) => this.proc.child.once('exit', r)) : null;
      if (exited) await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      await this.stop();
    }
    this.stderr = '';
    this.proc = await spawnProxy(this.info, this.listenExtra ? { ...this.options, listenExtra: this.listenExtra } : this.options);
    this.proc.child.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
  }

  /**
   * A new process: memory measurements need one whose heap has not grown (and kept the pages) in an
   * earlier test, or buffering there would hide buffering here.
   */
  async fresh(): Promise<void> {
    await this.stop();
    this.proc = undefined as unknown as ProxyProcess;
    await this.ensure();
  }

  /** Asserts the process is still running, showing how it ended if not. */
  expectAlive(): void {
    const c = this.proc.child;
    expect(this.alive, `pgsplit exited (code ${c.exitCode}, signal ${c.signalCode}); stderr tail:\n${this.stderr}`).toBe(true);
  }

  /** Stops the process; bounded (the harness's stop waits for an exit that a signal-killed child already had). */
  async stop(): Promise<void> {
    if (this.proc) await Promise.race([this.proc.stop(), new Promise((r) => setTimeout(r, 12_000))]);
  }

  /** A node-postgres client through this proxy as the app user. */
  async client(o: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
    return proxyClient({ listenPort: this.port } as RunningProxy, this.info, o);
  }

  /** A fresh client runs SELECT 1 (and is closed): the proxy still serves. */
  async stillServes(): Promise<void> {
    const c = await this.client();
    try {
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await c.end().catch(() => {});
    }
  }
}

/** True when something accepts a TCP connection on the port (within 2 s). */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), 2_000);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** The node that is out of recovery now (failover tests may have moved the primary). */
export async function currentPrimary(info: ClusterInfo): Promise<ClusterNode> {
  for (const n of info.nodes) {
    try {
      const c = await directClient(n, info);
      try {
        if ((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r === false) return n;
      } finally {
        await c.end().catch(() => {});
      }
    } catch {
      /* node down */
    }
  }
  throw new Error('no primary found in the cluster');
}

/** The socket underneath a connected node-postgres client, for writing raw bytes on its session. */
export function socketOf(c: pg.Client): net.Socket {
  return (c as unknown as { connection: { stream: net.Socket } }).connection.stream;
}

/** Resolves with the first 'error' the client emits (a FATAL sent outside a query, or a lost connection), or null at the deadline. */
export function nextClientError(c: pg.Client, timeoutMs: number): Promise<(Error & { code?: string }) | null> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      c.removeListener('error', on);
      resolve(null);
    }, timeoutMs);
    const on = (err: Error & { code?: string }) => {
      clearTimeout(t);
      resolve(err);
    };
    c.once('error', on);
  });
}

/** Resolves true when the client's connection ends, false at the deadline. */
export function endedWithin(c: pg.Client, timeoutMs: number): Promise<boolean> {
  const s = socketOf(c);
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), timeoutMs);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Runs p with a deadline; rejects with a clear message if it takes longer. */
export function within<T>(what: string, p: Promise<T>, timeoutMs: number): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
    }),
  ]);
}
