// Helpers for the cut-transaction tests: cutting a session's backend, watching the proxy notice, outcomes and ReadyForQuery statuses, a raw protocol client.
import { decodeErrorFields } from '../../src/protocol/backend-messages.js';
import net from 'node:net';
import pg from 'pg';
import type { ClusterInfo, ClusterNode } from '../harness/cluster.js';
import type { RunningProxy } from '../harness/proxy.js';
import { directClient, eventually, startupMessage, using } from './helpers.js';

/** Routing is on unless the suite runs through the plain relay. */
export const ROUTING = process.env.PGSPLIT_TEST_ROUTING !== '0';

/**
 * Counts the server connections the proxy has seen close, per node. The proxy's own close listener runs in
 * the same 'close' emission as the session's, so once the count moves the session has reacted to the loss.
 */
export function watchBackendCloses(proxy: RunningProxy): (node: string) => number {
  const counts = new Map<string, number>();
  const stats = proxy.stats;
  const original = stats.backendClosed.bind(stats);
  stats.backendClosed = (node: string) => {
    counts.set(node, (counts.get(node) ?? 0) + 1);
    original(node);
  };
  return (node) => counts.get(node) ?? 0;
}

/** pg_terminate_backend of the client backends with this application_name on a node; returns how many were hit. */
export async function terminateBackends(node: ClusterNode, info: ClusterInfo, appName: string): Promise<number> {
  return using(directClient(node, info), async (d) => {
    const r = await d.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name = $1 AND pid <> pg_backend_pid()) t",
      [appName],
    );
    return r.rows[0]!.n;
  });
}

/** Terminates the session's backend on `node` and waits until the proxy has seen that connection close. */
export async function cutBackend(proxy: RunningProxy, closes: (node: string) => number, node: ClusterNode, info: ClusterInfo, appName: string): Promise<void> {
  const before = closes(node.name);
  const hit = await terminateBackends(node, info, appName);
  if (hit !== 1) throw new Error(`expected exactly one backend named ${appName} on ${node.name}, terminated ${hit}`);
  await eventually(`the proxy to see the connection to ${node.name} close`, () => (closes(node.name) > before ? true : undefined), 10_000, 5);
}

/** Waits until a backend with this application_name on the node is running a statement that contains `needle`. */
export async function waitActive(node: ClusterNode, info: ClusterInfo, appName: string, needle: string): Promise<void> {
  await using(directClient(node, info), (d) =>
    eventually(`${appName} to be running ${needle} on ${node.name}`, async () => {
      const r = await d.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE $2", [appName, `%${needle}%`]);
      return r.rowCount! > 0 ? true : undefined;
    }, 10_000, 20),
  );
}

export type Outcome = { ok: true; command: string } | { ok: false; code: string | undefined; severity: string | undefined; message: string };

/** What a query ended with, without throwing. */
export async function outcome(p: Promise<pg.QueryResult>): Promise<Outcome> {
  try {
    const r = await p;
    return { ok: true, command: r.command };
  } catch (err) {
    const e = err as Error & { code?: string; severity?: string };
    return { ok: false, code: e.code, severity: e.severity, message: e.message };
  }
}

/** What a settled query ended with (for Promise.allSettled over pipelined queries). */
export function settledOutcome(s: PromiseSettledResult<pg.QueryResult>): Promise<Outcome> {
  return outcome(s.status === 'fulfilled' ? Promise.resolve(s.value) : Promise.reject(s.reason));
}

/** A statement as node-postgres takes it: text (simple protocol, unless the client pipelines) or a query config. */
export type Step = string | pg.QueryConfig;

/**
 * Runs the statements one after another, or, pipelined, submits them all at once (a client in pipeline mode then has
 * them all on the wire before the first answer); each one's result or error, in order, without throwing.
 */
export async function runSteps(c: pg.Client, steps: Step[], pipelined: boolean): Promise<PromiseSettledResult<pg.QueryResult>[]> {
  const submit = (q: Step): Promise<pg.QueryResult> => (typeof q === 'string' ? c.query(q) : c.query(q));
  if (pipelined) return Promise.allSettled(steps.map(submit));
  const out: PromiseSettledResult<pg.QueryResult>[] = [];
  for (const q of steps) out.push((await Promise.allSettled([submit(q)]))[0]!);
  return out;
}

/** Records the status byte of every ReadyForQuery a node-postgres client receives (I, T or E). */
export function recordStatuses(c: pg.Client): string[] {
  const statuses: string[] = [];
  (c as unknown as { connection: { on(ev: 'readyForQuery', fn: (m: { status: string }) => void): void } }).connection.on('readyForQuery', (m) => statuses.push(m.status));
  return statuses;
}

/** Records whether node-postgres saw its connection end. */
export function recordEnd(c: pg.Client): { ended: boolean } {
  const s = { ended: false };
  c.on('end', () => (s.ended = true));
  return s;
}

/** The values of column v for `tag` in a table, read directly on a node (committed rows only). */
export async function committedRows(node: ClusterNode, info: ClusterInfo, table: string, tag: string): Promise<number[]> {
  return using(directClient(node, info, { database: info.app.database }), async (d) =>
    (await d.query<{ v: number }>(`SELECT v FROM ${table} WHERE tag = $1 ORDER BY v`, [tag])).rows.map((r) => r.v),
  );
}

// ---- a raw protocol client ---------------------------------------------------------------------

export interface Msg {
  type: string;
  body: Buffer;
}

function msg(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');
function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
}
function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

/** Frontend messages, encoded. */
export const fe = {
  query: (sql: string): Buffer => msg('Q', cstr(sql)),
  parse: (name: string, sql: string): Buffer => msg('P', Buffer.concat([cstr(name), cstr(sql), int16(0)])),
  /** Bind with text parameters (null for NULL), text results. */
  bind: (portal: string, stmt: string, params: (string | null)[]): Buffer => {
    const parts: Buffer[] = [cstr(portal), cstr(stmt), int16(0), int16(params.length)];
    for (const p of params) {
      if (p === null) parts.push(int32(-1));
      else {
        const v = Buffer.from(p, 'utf8');
        parts.push(int32(v.length), v);
      }
    }
    parts.push(int16(0));
    return msg('B', Buffer.concat(parts));
  },
  execute: (portal: string): Buffer => msg('E', Buffer.concat([cstr(portal), int32(0)])),
  flush: (): Buffer => msg('H', Buffer.alloc(0)),
  sync: (): Buffer => msg('S', Buffer.alloc(0)),
  terminate: (): Buffer => msg('X', Buffer.alloc(0)),
};

/** The fields of an ErrorResponse/NoticeResponse body by code letter (the proxy's own decoder). */
export const errorFields = decodeErrorFields;

/** A short description of a backend message, for assertions: 'E:08006', 'Z:I', 'C:INSERT 0 1', '1', ... */
export function describeMsg(m: Msg): string {
  if (m.type === 'E') return `E:${errorFields(m.body).C ?? '?'}`;
  if (m.type === 'Z') return `Z:${String.fromCharCode(m.body[0]!)}`;
  if (m.type === 'C') return `C:${m.body.toString('utf8', 0, m.body.length - 1)}`;
  return m.type;
}

/** A PostgreSQL protocol client over a plain socket: send frames, read backend messages one by one with deadlines. */
export class RawClient {
  private buf = Buffer.alloc(0);
  private readonly messages: Msg[] = [];
  private waiter: (() => void) | null = null;
  closed = false;

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1);
        if (this.buf.length < 1 + len) break;
        this.messages.push({ type: String.fromCharCode(this.buf[0]!), body: Buffer.from(this.buf.subarray(5, 1 + len)) });
        this.buf = this.buf.subarray(1 + len);
      }
      this.wake();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Connects and logs in (the proxy must use auth: trust); returns once the first ReadyForQuery arrived. */
  static async connect(port: number, params: Record<string, string>): Promise<RawClient> {
    const sock = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const c = new RawClient(sock);
    sock.write(startupMessage(params));
    const login = await c.untilReady(10_000);
    const auth = login.find((m) => m.type === 'R');
    if (!auth || auth.body.readInt32BE(0) !== 0) throw new Error(`raw login did not succeed: ${login.map(describeMsg).join(' ')}`);
    return c;
  }

  send(...frames: Buffer[]): void {
    this.sock.write(Buffer.concat(frames));
  }

  /** The next backend message, or null if the connection closed first; fails after timeoutMs. */
  async next(timeoutMs = 10_000): Promise<Msg | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.shift();
      if (m) return m;
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no backend message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** Messages up to and including the next ReadyForQuery (or until the connection closes). */
  async untilReady(timeoutMs = 10_000): Promise<Msg[]> {
    const out: Msg[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (m === null) return out;
      out.push(m);
      if (m.type === 'Z') return out;
    }
  }

  /** Messages up to and including the ReadyForQuery that follows a message described as `marker` (or until the connection closes). */
  async through(marker: string, timeoutMs = 15_000): Promise<Msg[]> {
    const out: Msg[] = [];
    const deadline = Date.now() + timeoutMs;
    let seen = false;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (m === null) return out;
      out.push(m);
      if (describeMsg(m) === marker) seen = true;
      if (seen && m.type === 'Z') return out;
    }
  }

  /** Messages that arrived so far, without waiting. */
  pending(): Msg[] {
    return this.messages.splice(0);
  }

  close(): void {
    if (!this.sock.destroyed) this.sock.end(fe.terminate());
    this.sock.destroy();
  }
}
