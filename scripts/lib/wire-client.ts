// A minimal PostgreSQL client on a raw socket (startup, SCRAM-SHA-256/MD5/cleartext login, simple Query), cheap enough to hold 10,000 idle sessions in the benchmark.
import crypto from 'node:crypto';
import net from 'node:net';
import saslprep from '@mongodb-js/saslprep';

export interface WireClientOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  applicationName?: string;
  /** Deadline for connect + login, in ms. */
  timeoutMs?: number;
}

/** A login or query error; `code` is the SQLSTATE when the server sent one. */
export class WireError extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

// SCRAM keys depend only on the password, salt and iteration count; the proxy under test usually hands out the
// same salt every time, so one PBKDF2 serves every login and the client side stays cheap.
const scramKeys = new Map<string, { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer }>();

const hmac = (key: Buffer, text: string): Buffer => crypto.createHmac('sha256', key).update(text).digest();
const sha256 = (b: Buffer): Buffer => crypto.createHash('sha256').update(b).digest();
const prep = (pw: string): string => (/^[\x20-\x7e]*$/.test(pw) ? pw : saslprep(pw, { allowUnassigned: true }));

function keysFor(password: string, salt: string, iterations: number): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const k = `${password}\0${salt}\0${iterations}`;
  let keys = scramKeys.get(k);
  if (!keys) {
    const salted = crypto.pbkdf2Sync(prep(password), Buffer.from(salt, 'base64'), iterations, 32, 'sha256');
    const clientKey = hmac(salted, 'Client Key');
    keys = { clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
    if (scramKeys.size > 1000) scramKeys.clear();
    scramKeys.set(k, keys);
  }
  return keys;
}

function frame(type: string | null, body: Buffer): Buffer {
  const head = Buffer.alloc(type ? 5 : 4);
  if (type) {
    head.write(type, 0, 'latin1');
    head.writeInt32BE(body.length + 4, 1);
  } else head.writeInt32BE(body.length + 4, 0);
  return Buffer.concat([head, body]);
}

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');

function errorFields(body: Buffer): { message: string; code: string | null } {
  const f: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const t = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    f[t] = body.toString('utf8', i + 1, end < 0 ? body.length : end);
    i = end < 0 ? body.length : end + 1;
  }
  return { message: `${f.S ?? 'ERROR'} ${f.C ?? ''} ${f.M ?? '(no message)'}`.replace(/\s+/g, ' ').trim(), code: f.C ?? null };
}

export class WireClient {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private pendingError: WireError | null = null;
  private nonce = '';
  private clientFirstBare = '';
  private serverSignature: Buffer | null = null;
  /** Why the connection ended when nobody was waiting on it (an idle session the server or proxy closed), else null. */
  lostReason: string | null = null;
  private ended = false;
  private loggedIn = false;

  private constructor(
    private readonly sock: net.Socket,
    private readonly o: WireClientOptions,
  ) {}

  /** Connects and logs in; resolves once the server says ReadyForQuery. */
  static connect(o: WireClientOptions): Promise<WireClient> {
    const sock = net.connect({ host: o.host, port: o.port });
    sock.setNoDelay(true);
    const c = new WireClient(sock, o);
    return new Promise<WireClient>((resolve, reject) => {
      const timer = setTimeout(() => c.fail(new WireError(`login did not finish within ${o.timeoutMs ?? 30_000} ms`)), o.timeoutMs ?? 30_000);
      c.waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve(c);
        },
        reject: (e) => {
          clearTimeout(timer);
          c.destroy();
          reject(e);
        },
      };
      sock.on('connect', () => {
        const params = Buffer.concat([
          Buffer.from([0, 3, 0, 0]),
          cstr('user'), cstr(o.user),
          cstr('database'), cstr(o.database),
          cstr('application_name'), cstr(o.applicationName ?? 'pgsplit-bench'),
          Buffer.from([0]),
        ]);
        sock.write(frame(null, params));
      });
      sock.on('data', (d: Buffer) => c.onData(d));
      sock.on('error', (err) => c.fail(new WireError(`socket error: ${err.message}`)));
      sock.on('close', () => c.fail(new WireError('connection closed by the server')));
    });
  }

  /** Runs one simple-protocol Query and waits for ReadyForQuery; rejects with the server's error. */
  query(sql: string): Promise<void> {
    if (this.ended) return Promise.reject(new WireError(this.lostReason ?? 'connection is closed'));
    return new Promise<void>((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.sock.write(frame('Q', cstr(sql)));
    });
  }

  /** Sends Terminate and closes the socket. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.sock.end(frame('X', Buffer.alloc(0)));
    this.sock.destroy();
  }

  private destroy(): void {
    this.ended = true;
    this.sock.destroy();
  }

  private fail(err: WireError): void {
    const w = this.waiter;
    this.waiter = null;
    if (w) w.reject(err);
    else if (!this.ended && this.lostReason === null) this.lostReason = this.pendingError?.message ?? err.message;
    this.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= 5) {
      const len = this.buf.readInt32BE(1);
      if (this.buf.length < len + 1) break;
      const type = String.fromCharCode(this.buf[0]!);
      const body = this.buf.subarray(5, len + 1);
      this.buf = this.buf.subarray(len + 1);
      try {
        this.onMessage(type, body);
      } catch (err) {
        this.fail(err instanceof WireError ? err : new WireError((err as Error).message));
        return;
      }
    }
    // Keep an idle session's buffer small: copy the unread tail out of the (possibly large) chunk.
    if (this.buf.length === 0) this.buf = Buffer.alloc(0);
    else if (this.buf.length < 64) this.buf = Buffer.from(this.buf);
  }

  private onMessage(type: string, body: Buffer): void {
    switch (type) {
      case 'R':
        this.onAuth(body.readInt32BE(0), body.subarray(4));
        return;
      case 'E': {
        const e = errorFields(body);
        const err = new WireError(e.message, e.code);
        // During login an error is final (the server closes); after it, wait for ReadyForQuery.
        if (!this.loggedIn) throw err;
        this.pendingError = err;
        return;
      }
      case 'Z': {
        this.loggedIn = true;
        const w = this.waiter;
        this.waiter = null;
        const err = this.pendingError;
        this.pendingError = null;
        if (w) {
          if (err) w.reject(err);
          else w.resolve();
        }
        return;
      }
      default:
        // ParameterStatus, BackendKeyData, NoticeResponse, RowDescription, DataRow, CommandComplete, EmptyQueryResponse: nothing to do.
        return;
    }
  }

  private onAuth(code: number, data: Buffer): void {
    const o = this.o;
    switch (code) {
      case 0: // AuthenticationOk
        return;
      case 3: // cleartext
        this.sock.write(frame('p', cstr(o.password)));
        return;
      case 5: {
        // MD5: md5(md5(password + user) + salt)
        const inner = crypto.createHash('md5').update(o.password + o.user).digest('hex');
        const outer = crypto.createHash('md5').update(Buffer.concat([Buffer.from(inner), data.subarray(0, 4)])).digest('hex');
        this.sock.write(frame('p', cstr(`md5${outer}`)));
        return;
      }
      case 10: {
        // AuthenticationSASL: a list of mechanisms.
        const mechs = data.toString('utf8').split('\0').filter(Boolean);
        if (!mechs.includes('SCRAM-SHA-256')) throw new WireError(`server offers no SCRAM-SHA-256 (got ${mechs.join(', ')})`);
        this.nonce = crypto.randomBytes(18).toString('base64');
        this.clientFirstBare = `n=,r=${this.nonce}`;
        const first = Buffer.from(`n,,${this.clientFirstBare}`, 'utf8');
        const len = Buffer.alloc(4);
        len.writeInt32BE(first.length, 0);
        this.sock.write(frame('p', Buffer.concat([cstr('SCRAM-SHA-256'), len, first])));
        return;
      }
      case 11: {
        // AuthenticationSASLContinue: server-first-message.
        const serverFirst = data.toString('utf8');
        const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
        const r = attrs.r ?? '';
        if (!r.startsWith(this.nonce)) throw new WireError('SCRAM: server nonce does not extend ours');
        const keys = keysFor(o.password, attrs.s ?? '', Number(attrs.i));
        const finalWithoutProof = `c=biws,r=${r}`;
        const authMessage = `${this.clientFirstBare},${serverFirst},${finalWithoutProof}`;
        const sig = hmac(keys.storedKey, authMessage);
        const proof = Buffer.alloc(sig.length);
        for (let i = 0; i < sig.length; i++) proof[i] = keys.clientKey[i]! ^ sig[i]!;
        this.serverSignature = hmac(keys.serverKey, authMessage);
        this.sock.write(frame('p', Buffer.from(`${finalWithoutProof},p=${proof.toString('base64')}`, 'utf8')));
        return;
      }
      case 12: {
        // AuthenticationSASLFinal: check the server knows the password too.
        const v = /(?:^|,)v=([^,]+)/.exec(data.toString('utf8'))?.[1];
        if (!v || !this.serverSignature || !crypto.timingSafeEqual(Buffer.from(v, 'base64'), this.serverSignature)) throw new WireError('SCRAM: bad server signature');
        return;
      }
      default:
        throw new WireError(`unsupported authentication request ${code}`);
    }
  }
}
