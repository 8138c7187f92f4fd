// Protocol fuzzer runtime: a raw-socket client (own SCRAM-SHA-256 login, streaming reader) that plays one generated case against the proxy.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Rng, Q, SASLInitial, SASLResponse, startupPacket, Sync, Terminate, planMessages, type Case, type Ending, type FuzzTargets, type Msg } from './fuzz.js';

export interface BackendMsg {
  type: number;
  /** Body, or null when it was larger than the reader keeps (it is skipped, not buffered). */
  body: Buffer | null;
}

const KEEP_BODY = 64 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A client connection that reads backend messages as a stream: it keeps bodies up to 64 kB and skips larger
 * ones, so a big DataRow or ErrorResponse costs the fuzzer no memory. Before the startup is answered (pre-auth
 * cases) it only keeps the first bytes received.
 */
export class RawConn {
  readonly sock: net.Socket;
  closed = false;
  /** Everything received, counted; `raw` keeps the first 64 kB when `framing` is off. */
  bytesIn = 0;
  raw: Buffer[] = [];
  private rawLen = 0;
  framing = true;
  /** Set when the proxy sent a length word below 4 (not a protocol frame). */
  malformed: string | null = null;
  /** While set, messages go here; otherwise they queue for next(). */
  onMessage: ((m: BackendMsg) => void) | null = null;
  private readonly queue: BackendMsg[] = [];
  private waiters: (() => void)[] = [];
  private readonly head = Buffer.alloc(5);
  private headFill = 0;
  private remaining = 0;
  private body: Buffer | null = null;
  private bodyFill = 0;
  private type = 0;
  private inBody = false;
  readonly ready: Promise<boolean>;

  constructor(port: number) {
    this.sock = net.connect({ host: '127.0.0.1', port });
    this.sock.setNoDelay(true);
    this.sock.on('error', () => {});
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    this.ready = new Promise((resolve) => {
      this.sock.once('connect', () => resolve(true));
      this.sock.once('close', () => resolve(false));
    });
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** Resolves at the next event (data, close) or after ms. */
  private waitEvent(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, Math.max(0, ms));
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  private onData(d: Buffer): void {
    this.bytesIn += d.length;
    if (!this.framing) {
      if (this.rawLen < KEEP_BODY) {
        this.raw.push(Buffer.from(d.subarray(0, KEEP_BODY - this.rawLen)));
        this.rawLen += Math.min(d.length, KEEP_BODY - this.rawLen);
      }
      this.wake();
      return;
    }
    let off = 0;
    while (off < d.length && this.malformed === null) {
      if (!this.inBody) {
        const n = Math.min(5 - this.headFill, d.length - off);
        d.copy(this.head, this.headFill, off, off + n);
        this.headFill += n;
        off += n;
        if (this.headFill < 5) break;
        this.headFill = 0;
        this.type = this.head[0];
        const len = this.head.readInt32BE(1);
        if (len < 4) {
          this.malformed = `proxy sent type 0x${this.type.toString(16)} with length ${len}`;
          this.sock.destroy();
          break;
        }
        this.remaining = len - 4;
        this.body = this.remaining <= KEEP_BODY ? Buffer.allocUnsafe(this.remaining) : null;
        this.bodyFill = 0;
        this.inBody = true;
      }
      const n = Math.min(this.remaining, d.length - off);
      if (this.body) d.copy(this.body, this.bodyFill, off, off + n);
      this.bodyFill += n;
      this.remaining -= n;
      off += n;
      if (this.remaining === 0) {
        this.inBody = false;
        const msg = { type: this.type, body: this.body };
        this.body = null;
        if (this.onMessage) this.onMessage(msg);
        else this.queue.push(msg);
      }
    }
    this.wake();
  }

  /** The next queued message, or null when the connection closed or the deadline passed. */
  async next(deadline: number): Promise<BackendMsg | null> {
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.closed || Date.now() >= deadline) return null;
      await this.waitEvent(deadline - Date.now());
    }
  }

  /** Waits until the predicate holds, the connection closes, or the deadline passes; returns the predicate's value. */
  async until(pred: () => boolean, deadline: number): Promise<boolean> {
    for (;;) {
      if (pred()) return true;
      if (this.closed || Date.now() >= deadline) return pred();
      await this.waitEvent(deadline - Date.now());
    }
  }

  /** Writes and waits until the bytes were handed to the kernel (or the socket is gone, or the deadline passed). */
  async write(b: Buffer, deadline: number): Promise<boolean> {
    if (this.closed || this.sock.destroyed) return false;
    let flushed = false;
    const p = new Promise<void>((resolve) => {
      this.sock.write(b, () => {
        flushed = true;
        resolve();
      });
    });
    await Promise.race([p, this.until(() => flushed, deadline)]);
    return flushed;
  }

  rawReceived(): Buffer {
    return Buffer.concat(this.raw);
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/** SQLSTATE of an ErrorResponse body. */
export function sqlstate(body: Buffer | null): string | null {
  if (!body) return null;
  return fields(body).C ?? null;
}

export function fields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let p = 0;
  while (p < body.length && body[p] !== 0) {
    const end = body.indexOf(0, p + 1);
    if (end < 0) break;
    out[String.fromCharCode(body[p])] = body.subarray(p + 1, end).toString('utf8');
    p = end + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// SCRAM-SHA-256, client side (RFC 5802/7677), as small as a test needs: ASCII passwords only.
// ---------------------------------------------------------------------------------------------

const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();
const saltedCache = new Map<string, Buffer>();

function scramFinal(password: string, clientNonce: string, serverFirst: string): { final: string; serverSignature: Buffer } {
  const a = new Map(serverFirst.split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)] as const));
  const nonce = a.get('r') ?? '';
  const salt = a.get('s') ?? '';
  const iterations = Number(a.get('i'));
  if (!nonce.startsWith(clientNonce) || !salt || !Number.isInteger(iterations) || iterations < 1 || iterations > 1_000_000) {
    throw new Error(`bad SCRAM server-first-message: ${serverFirst.slice(0, 200)}`);
  }
  // The proxy keeps one salt per user, so the PBKDF2 runs once per run, not once per login.
  const key = `${password}\0${salt}\0${iterations}`;
  let salted = saltedCache.get(key);
  if (!salted) {
    salted = pbkdf2Sync(password, Buffer.from(salt, 'base64'), iterations, 32, 'sha256');
    saltedCache.set(key, salted);
  }
  const clientKey = hmac(salted, 'Client Key');
  const storedKey = createHash('sha256').update(clientKey).digest();
  const withoutProof = `c=biws,r=${nonce}`;
  const authMessage = `n=*,r=${clientNonce},${serverFirst},${withoutProof}`;
  const sig = hmac(storedKey, authMessage);
  const proof = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) proof[i] = clientKey[i] ^ sig[i];
  return { final: `${withoutProof},p=${proof.toString('base64')}`, serverSignature: hmac(hmac(salted, 'Server Key'), authMessage) };
}

/**
 * Logs in with SCRAM-SHA-256 and waits for the first ReadyForQuery. Returns null on success, else why not.
 * Leaves nothing queued on success.
 */
export async function scramLogin(c: RawConn, t: Pick<FuzzTargets, 'user' | 'password' | 'database'>, deadline: number): Promise<string | null> {
  if (!(await c.ready)) return 'could not connect';
  await c.write(startupPacket([['user', t.user], ['database', t.database], ['application_name', 'fuzz-client']]), deadline);
  const clientNonce = randomBytes(18).toString('base64');
  let expected: Buffer | null = null;
  for (;;) {
    const m = await c.next(deadline);
    if (!m) return c.closed ? 'the proxy closed the connection during login' : 'login timed out';
    const type = String.fromCharCode(m.type);
    if (type === 'E') return `login refused: ${JSON.stringify(m.body ? fields(m.body) : {})}`;
    if (type === 'Z') return null;
    if (type !== 'R' || !m.body) continue;
    const kind = m.body.readInt32BE(0);
    if (kind === 10) await c.write(SASLInitial('SCRAM-SHA-256', Buffer.from(`n,,n=*,r=${clientNonce}`)), deadline);
    else if (kind === 11) {
      const { final, serverSignature } = scramFinal(t.password, clientNonce, m.body.subarray(4).toString());
      expected = serverSignature;
      await c.write(SASLResponse(final), deadline);
    } else if (kind === 12) {
      const v = /v=([^,]*)/.exec(m.body.subarray(4).toString())?.[1];
      if (!expected || !v || !Buffer.from(v, 'base64').equals(expected)) return 'the proxy sent a wrong SCRAM server signature';
    } else if (kind !== 0) return `unexpected authentication request ${kind}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Playing a case
// ---------------------------------------------------------------------------------------------

export interface CaseContext {
  port: number;
  targets: FuzzTargets;
  /** limits.client_login_timeout of the proxy under test. */
  loginTimeoutMs: number;
  /** How long a probe may go unanswered before the case counts as hung. */
  probeTimeoutMs: number;
}

export interface CaseOutcome {
  seed: number;
  messages: number;
  /** The proxy closed the connection (rather than the fuzzer). */
  closedByProxy: boolean;
  /** SQLSTATEs the proxy sent in ErrorResponses. */
  sqlstates: string[];
  /** Something a robust proxy must never do (a hang, a refused legitimate login, a malformed frame). */
  failure: string | null;
  /** Observations that are not failures of this case but are worth a line in the report. */
  notes: string[];
  ms: number;
}

/** Cuts bytes into `splits` writes at seeded positions. */
function chunks(bytes: Buffer, splits: number, rng: Rng): Buffer[] {
  if (splits <= 1 || bytes.length < 2) return [bytes];
  const cuts = new Set<number>();
  for (let i = 1; i < splits; i++) cuts.add(1 + rng.int(bytes.length - 1));
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}

async function writeAll(c: RawConn, msgs: Msg[], extra: Buffer | null, splits: number, rng: Rng, deadline: number): Promise<void> {
  const bytes = Buffer.concat([...msgs.map((x) => x.bytes), ...(extra ? [extra] : [])]);
  for (const part of chunks(bytes, splits, rng)) {
    if (!(await c.write(part, deadline))) return;
    if (splits > 1 && rng.chance(0.3)) await sleep(rng.int(3));
  }
}

const FLOOD_CHUNK = Buffer.alloc(64 * 1024, 0x61);

/** Streams `bytes` more after a case's messages, as fast as the proxy reads; notes whether it ever stopped us. */
async function flood(c: RawConn, bytes: number, deadline: number, out: CaseOutcome): Promise<void> {
  const until = Math.min(deadline, Date.now() + 15_000);
  let sent = 0;
  while (sent < bytes && !c.closed && Date.now() < until) {
    if (!(await c.write(FLOOD_CHUNK, until))) break;
    sent += FLOOD_CHUNK.length;
  }
  // Let the proxy catch up with what is in flight, then see whether it ended the connection.
  await c.until(() => false, Math.min(deadline, Date.now() + 2_000));
  if (!c.closed && sent >= bytes) out.notes.push(`took a ${bytes >> 20} MB stream after a refused or oversized message without closing the connection`);
}

async function finish(c: RawConn, ending: Ending, ctx: CaseContext, deadline: number, out: CaseOutcome, startedAt: number): Promise<void> {
  switch (ending) {
    case 'abrupt':
      break;
    case 'linger':
      await c.until(() => false, Math.min(deadline, Date.now() + 150));
      break;
    case 'half-close':
      c.sock.end();
      await c.until(() => false, Math.min(deadline, Date.now() + 1_000));
      break;
    case 'terminate':
      await c.write(Terminate(), deadline);
      await c.until(() => false, Math.min(deadline, Date.now() + 1_000));
      break;
    case 'login-timeout': {
      // From accept, the proxy has client_login_timeout to finish the login; then the socket must be gone.
      const limit = startedAt + ctx.loginTimeoutMs + 5_000;
      await c.until(() => false, Math.min(deadline, limit));
      if (!c.closed) out.failure = `login timeout not enforced: the connection was still open ${Date.now() - startedAt} ms after it was accepted without a completed login (client_login_timeout ${ctx.loginTimeoutMs} ms)`;
      break;
    }
    case 'probe':
      break; // handled by the post-auth player
  }
  out.closedByProxy = c.closed;
  c.destroy();
}

/** Plays one case on its own connection; never throws, never outlives its deadline. */
export async function playCase(fc: Case, ctx: CaseContext): Promise<CaseOutcome> {
  const startedAt = Date.now();
  const out: CaseOutcome = { seed: fc.seed, messages: planMessages(fc.plan), closedByProxy: false, sqlstates: [], failure: null, notes: [], ms: 0 };
  const p = fc.plan;
  // Write timing and cut points come from their own stream so that they do not shift the plan's.
  const rng = new Rng(fc.seed ^ 0x5bd1e995);
  const deadline = startedAt + (p.phase === 'post-auth' ? 30_000 : ctx.loginTimeoutMs + 20_000);
  const c = new RawConn(ctx.port);
  try {
    if (!(await c.ready)) {
      out.failure = 'could not connect to the proxy';
      return out;
    }
    const collect = (m: BackendMsg): void => {
      if (m.type === 0x45 && m.body) {
        const f = fields(m.body);
        // PostgreSQL's own errors name their source file (F); the proxy's do not.
        if (f.C) out.sqlstates.push(f.C === 'XX000' && f.F ? 'XX000(server)' : f.C);
        // By design a bug in a session ends it with XX000; whatever a client sends must never reach one.
        if (f.C === 'XX000' && !f.F && !out.failure) out.failure = `the proxy answered with an internal error (XX000): ${(f.M ?? '').slice(0, 160)}`;
      }
    };

    if (p.phase === 'pre-auth') {
      c.framing = false;
      await writeAll(c, p.msgs, null, fc.splits, rng, deadline);
      if (p.flood) await flood(c, p.flood, deadline, out);
      await finish(c, p.ending, ctx, deadline, out, startedAt);
      const raw = c.rawReceived();
      let i = 0;
      while (i < raw.length && raw[i] === 0x4e) i++; // 'N' answers to SSLRequest/GSSENCRequest
      if (raw[i] === 0x45 && raw.length >= i + 5) collect({ type: 0x45, body: raw.subarray(i + 5, i + 1 + raw.readInt32BE(i + 1)) });
      return out;
    }

    if (p.phase === 'auth') {
      await c.write(startupPacket([['user', p.user], ['database', ctx.targets.database]]), deadline);
      const sasl = await c.next(Math.min(deadline, Date.now() + 10_000));
      if (!sasl || sasl.type !== 0x52 || sasl.body?.readInt32BE(0) !== 10) {
        if (sasl?.type === 0x45) collect(sasl);
        out.notes.push(`no AuthenticationSASL after a startup for ${p.user} (${sasl ? `got '${String.fromCharCode(sasl.type)}'` : c.closed ? 'closed' : 'timeout'})`);
        c.destroy();
        return out;
      }
      await writeAll(c, p.first, null, fc.splits, rng, deadline);
      if (p.final) {
        const cont = await c.next(Math.min(deadline, Date.now() + 10_000));
        if (cont?.type === 0x52 && cont.body?.readInt32BE(0) === 11) {
          await writeAll(c, p.final(cont.body.subarray(4).toString()), null, fc.splits, rng, deadline);
        } else if (cont) collect(cont);
      }
      if (p.flood) await flood(c, p.flood, deadline, out);
      c.onMessage = collect;
      for (let got = await c.next(0); got; got = await c.next(0)) collect(got);
      await finish(c, p.ending, ctx, deadline, out, startedAt);
      return out;
    }

    // After authentication.
    const why = await scramLogin(c, ctx.targets, Math.min(deadline, Date.now() + 15_000));
    if (why) {
      out.failure = `a well-formed SCRAM login failed: ${why}`;
      c.destroy();
      return out;
    }
    const setup: Record<typeof p.state, { sql: string[]; until: (m: BackendMsg) => boolean }> = {
      idle: { sql: [], until: () => true },
      tx: { sql: ['BEGIN'], until: (m) => m.type === 0x5a && m.body?.[0] === 0x54 },
      'failed-tx': { sql: ['BEGIN', 'SELECT 1/0'], until: (m) => m.type === 0x5a && m.body?.[0] === 0x45 },
      'copy-in': { sql: [`COPY ${ctx.targets.table}(v) FROM STDIN`], until: (m) => m.type === 0x47 },
    };
    const s = setup[p.state];
    for (const [i, q] of s.sql.entries()) {
      await c.write(Q(q), deadline);
      const last = i === s.sql.length - 1;
      for (;;) {
        const m = await c.next(Math.min(deadline, Date.now() + 10_000));
        if (!m) {
          out.failure = `setting up state ${p.state}: no answer to ${JSON.stringify(q)} (${c.closed ? 'closed' : 'timeout'})`;
          c.destroy();
          return out;
        }
        if (last ? s.until(m) : m.type === 0x5a) break;
      }
    }
    let probeToken: string | null = null;
    let answered = false;
    let probes = 0;
    let probing = false;
    const afterProbe: string[] = [];
    c.onMessage = (m) => {
      collect(m);
      if (probing && afterProbe.length < 40) afterProbe.push(m.type === 0x45 ? `E(${sqlstate(m.body)})` : String.fromCharCode(m.type));
      if (!probing) return;
      if (m.type === 0x44 && probeToken && m.body?.includes(probeToken)) answered = true;
      else if (m.type === 0x5a && !answered && probes < 6) sendProbe();
    };
    const sendProbe = (): void => {
      probeToken = `fuzzprobe-${fc.seed}-${++probes}`;
      c.sock.write(Buffer.concat([Sync(), Q('ROLLBACK'), Q(`SELECT '${probeToken}'`)]));
    };
    await writeAll(c, p.msgs, p.tail, fc.splits, rng, deadline);
    if (p.flood) await flood(c, p.flood, deadline, out);
    if (p.ending !== 'probe') {
      await finish(c, p.ending, ctx, deadline, out, startedAt);
      return out;
    }
    probing = true;
    sendProbe();
    const probeDeadline = Math.min(deadline, Date.now() + ctx.probeTimeoutMs);
    await c.until(() => answered, probeDeadline);
    if (c.malformed) out.failure = c.malformed;
    else if (!answered && !c.closed && !out.failure) {
      const got = afterProbe.length ? `; what came back after the first probe: ${afterProbe.join(' ')}` : '; nothing came back';
      out.failure = `hang: the session neither ran a query sent after Sync and ROLLBACK nor closed within ${ctx.probeTimeoutMs} ms (${probes} probe(s) sent${got})`;
    }
    out.closedByProxy = c.closed;
    c.destroy();
    return out;
  } catch (err) {
    out.failure = `fuzzer error: ${(err as Error).stack ?? String(err)}`;
    c.destroy();
    return out;
  } finally {
    if (c.malformed && !out.failure) out.failure = c.malformed;
    out.ms = Date.now() - startedAt;
  }
}
