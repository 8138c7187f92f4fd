// Protocol fuzzer generators: a seeded PRNG and plans of mutated and random frontend traffic for every session state.

/** mulberry32: small, fast, good enough for fuzzing, and the same sequence on every platform for a seed. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** [0, 1) */
  float(): number {
    return this.u32() / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(xs: readonly (readonly [number, T])[]): T {
    const total = xs.reduce((a, [w]) => a + w, 0);
    let r = this.float() * total;
    for (const [w, v] of xs) {
      if ((r -= w) < 0) return v;
    }
    return xs[xs.length - 1][1];
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      for (let j = 0; j < 4 && i + j < n; j++) b[i + j] = (v >>> (8 * j)) & 0xff;
    }
    return b;
  }
  /** A length biased towards small values, sometimes larger: most fuzz findings need few bytes. */
  smallLen(max = 64): number {
    return this.chance(0.8) ? this.int(Math.min(max, 16) + 1) : this.int(max + 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Wire encoding
// ---------------------------------------------------------------------------------------------

export const PROTOCOL_3_0 = 196608;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

export const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n | 0, 0);
  return b;
};
export const i16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE((n << 16) >> 16, 0);
  return b;
};
export const cstr = (s: string | Buffer): Buffer => Buffer.concat([typeof s === 'string' ? Buffer.from(s) : s, Buffer.from([0])]);
const cat = (...parts: Buffer[]): Buffer => Buffer.concat(parts);
const code = (c: string | number): number => (typeof c === 'string' ? c.charCodeAt(0) : c);

/** A typed message; `len` overrides the length word (which normally is body + 4). */
export function frame(type: string | number, body: Buffer, len?: number): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = code(type);
  out.writeInt32BE((len ?? body.length + 4) | 0, 1);
  body.copy(out, 5);
  return out;
}

/** A startup-phase packet (no type byte): length word, then the code, then the rest. */
export function packet(codeWord: number, rest: Buffer = Buffer.alloc(0), len?: number): Buffer {
  return cat(i32(len ?? 8 + rest.length), i32(codeWord), rest);
}

export function startupParams(params: readonly (readonly [string | Buffer, string | Buffer])[], terminate = true): Buffer {
  return cat(...params.flatMap(([k, v]) => [cstr(k), cstr(v)]), terminate ? Buffer.from([0]) : Buffer.alloc(0));
}

export const startupPacket = (params: readonly (readonly [string, string])[], version = PROTOCOL_3_0): Buffer => packet(version, startupParams(params));

// Frontend messages, well-formed.
export const Q = (sql: string | Buffer): Buffer => frame('Q', cstr(sql));
export const Parse = (name: string, sql: string, oids: number[] = []): Buffer => frame('P', cat(cstr(name), cstr(sql), i16(oids.length), ...oids.map(i32)));
export function Bind(portal: string, stmt: string, params: (Buffer | null)[] = [], formats: number[] = [], resultFormats: number[] = []): Buffer {
  return frame(
    'B',
    cat(
      cstr(portal),
      cstr(stmt),
      i16(formats.length),
      ...formats.map(i16),
      i16(params.length),
      ...params.map((p) => (p === null ? i32(-1) : cat(i32(p.length), p))),
      i16(resultFormats.length),
      ...resultFormats.map(i16),
    ),
  );
}
export const Describe = (kind: 'S' | 'P', name: string): Buffer => frame('D', cat(Buffer.from(kind), cstr(name)));
export const Execute = (portal: string, maxRows = 0): Buffer => frame('E', cat(cstr(portal), i32(maxRows)));
export const Sync = (): Buffer => frame('S', Buffer.alloc(0));
export const Flush = (): Buffer => frame('H', Buffer.alloc(0));
export const Close = (kind: 'S' | 'P', name: string): Buffer => frame('C', cat(Buffer.from(kind), cstr(name)));
export const CopyData = (data: string | Buffer): Buffer => frame('d', typeof data === 'string' ? Buffer.from(data) : data);
export const CopyDone = (): Buffer => frame('c', Buffer.alloc(0));
export const CopyFail = (why: string): Buffer => frame('f', cstr(why));
export const Terminate = (): Buffer => frame('X', Buffer.alloc(0));
export function FunctionCall(oid: number, args: (Buffer | null)[], formats: number[] = [], resultFormat = 0): Buffer {
  return frame('F', cat(i32(oid), i16(formats.length), ...formats.map(i16), i16(args.length), ...args.map((a) => (a === null ? i32(-1) : cat(i32(a.length), a))), i16(resultFormat)));
}
export const SASLInitial = (mechanism: string | Buffer, data: Buffer, len = data.length): Buffer => frame('p', cat(cstr(mechanism), i32(len), data));
export const SASLResponse = (data: string | Buffer): Buffer => frame('p', typeof data === 'string' ? Buffer.from(data) : data);

// ---------------------------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------------------------

/** One generated message: its bytes, a short label for reports, and whether its length word tells the truth. */
export interface Msg {
  bytes: Buffer;
  label: string;
  framed: boolean;
}

/**
 * How a connection ends after its traffic was written:
 * - abrupt: destroy at once; linger: read for a moment, then destroy; half-close: end() and wait for the close;
 * - terminate: send Terminate, wait for the close; probe: Sync + a query that must be answered (or the session closed);
 * - login-timeout: stay silent past client_login_timeout and see whether the proxy closes the socket.
 */
export type Ending = 'abrupt' | 'linger' | 'half-close' | 'terminate' | 'probe' | 'login-timeout';

export interface PreAuthPlan {
  phase: 'pre-auth';
  msgs: Msg[];
  ending: Ending;
  /** Bytes streamed after the messages (a body a length word promised, or junk after an error). */
  flood?: number;
}

export interface AuthPlan {
  phase: 'auth';
  user: string;
  /** Sent after AuthenticationSASL (instead of, or as, the client-first message). */
  first: Msg[];
  /** When set, `first` was a valid client-first with this nonce; the function builds what follows the server-first. */
  final: ((serverFirst: string) => Msg[]) | null;
  finalCount: number;
  ending: Ending;
  flood?: number;
}

export type SessionState = 'idle' | 'tx' | 'failed-tx' | 'copy-in';

export interface PostAuthPlan {
  phase: 'post-auth';
  state: SessionState;
  msgs: Msg[];
  /** A partial frame written last (truncated frame, then disconnect). */
  tail: Buffer | null;
  ending: Ending;
  flood?: number;
}

export type Plan = PreAuthPlan | AuthPlan | PostAuthPlan;

export interface Case {
  seed: number;
  plan: Plan;
  /** How the bytes are cut into writes (sizes); the runner writes them one by one. */
  splits: number;
}

export interface FuzzTargets {
  user: string;
  password: string;
  database: string;
  /** schema-qualified table (id serial, v text) that COPY and INSERTs go to. */
  table: string;
}

/** Messages a plan sends, as counted in the fuzzer's totals. */
export function planMessages(p: Plan): number {
  if (p.phase === 'auth') return 1 + p.first.length + p.finalCount;
  if (p.phase === 'post-auth') return p.msgs.length + (p.tail ? 1 : 0);
  return p.msgs.length;
}

export function describePlan(c: Case): string {
  const p = c.plan;
  const labels = (ms: Msg[]): string => {
    const out: string[] = [];
    for (let i = 0; i < ms.length; ) {
      let j = i;
      while (j < ms.length && ms[j].label === ms[i].label) j++;
      out.push(j - i > 1 ? `${ms[i].label} x${j - i}` : ms[i].label);
      i = j;
    }
    return out.join(' ');
  };
  const flood = p.flood ? ` +${p.flood >> 20}MB streamed` : '';
  if (p.phase === 'pre-auth') return `pre-auth: ${labels(p.msgs)}${flood} | ${p.ending}`;
  if (p.phase === 'auth') return `auth(user=${p.user}): ${labels(p.first)}${p.final ? ` <server-first> ${p.finalCount} msg(s)` : ''}${flood} | ${p.ending}`;
  return `post-auth(${p.state}): ${labels(p.msgs)}${p.tail ? ` tail(${p.tail.length}B)` : ''}${flood} | ${p.ending}`;
}

/** Mix a master seed and a case index into a case seed (so one case can be replayed alone). */
export function caseSeed(master: number, index: number): number {
  const r = new Rng((master ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0);
  r.u32();
  return r.u32();
}

export function generateCase(seed: number, t: FuzzTargets, o: { maxPerConnection?: number } = {}): Case {
  const rng = new Rng(seed);
  const phase = rng.weighted([
    [30, 'pre-auth'],
    [15, 'auth'],
    [55, 'post-auth'],
  ] as const);
  const plan = phase === 'pre-auth' ? preAuthPlan(rng, t) : phase === 'auth' ? authPlan(rng, t) : postAuthPlan(rng, t, o.maxPerConnection ?? 20);
  return { seed, plan, splits: rng.weighted([[6, 1], [2, 2], [1, 4], [1, 16]] as const) };
}

// ---------------------------------------------------------------------------------------------
// (a) Before authentication: startup packets and friends
// ---------------------------------------------------------------------------------------------

const m = (bytes: Buffer, label: string, framed = true): Msg => ({ bytes, label, framed });

function randomString(rng: Rng, max = 12): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz_0123456789.-= ,\'"\\$';
  let s = '';
  for (let i = rng.int(max + 1); i > 0; i--) s += alphabet[rng.int(alphabet.length)];
  return s;
}

function wrongLength(rng: Rng, actual: number): number {
  return rng.pick([-1, -(2 ** 31), 0, 1, 4, 7, actual - 1, actual + 1, actual + rng.range(2, 100), 10_001, 65_536, 1 << 20, 0x7fffffff]);
}

function startupMsg(rng: Rng, t: FuzzTargets): Msg {
  const kind = rng.weighted([
    [3, 'valid'],
    [3, 'bad-length'],
    [2, 'version'],
    [2, 'no-nul'],
    [1, 'many-params'],
    [1, 'big-params'],
    [2, 'odd-params'],
    [1, 'unicode'],
    [1, 'pq-options'],
    [1, 'replication'],
    [1, 'no-user'],
  ] as const);
  const user = rng.pick([t.user, t.user, 'nosuchuser', '', 'postgres', 'x'.repeat(rng.range(60, 300))]);
  const base: [string, string][] = [
    ['user', user],
    ['database', rng.pick([t.database, t.database, 'nosuchdb', 'postgres', ''])],
  ];
  if (rng.chance(0.3)) base.push(['application_name', randomString(rng, 30)]);
  if (rng.chance(0.2)) base.push(['options', rng.pick(['-c pgsplit.route=primary', '--pgsplit.max_lag=notaduration', '-c search_path=x', '-c', randomString(rng, 40)])]);
  switch (kind) {
    case 'valid':
      return m(startupPacket(base), 'startup');
    case 'bad-length': {
      const body = startupParams(base);
      const len = wrongLength(rng, 8 + body.length);
      return m(packet(PROTOCOL_3_0, body, len), `startup(len=${len})`, false);
    }
    case 'version': {
      const v = rng.pick([2 << 16, (3 << 16) | 1, (3 << 16) | 0xffff, (4 << 16) | 0, 0, 1234 << 16, rng.u32() | 0, 0xffffffff | 0, (3 << 16) | 2]);
      return m(startupPacket(base, v), `startup(version=${v >>> 16}.${v & 0xffff})`);
    }
    case 'no-nul': {
      // Names and values without terminators, or a packet that stops in the middle of a string.
      const raw = Buffer.from(base.map(([k, v]) => `${k}${rng.chance(0.5) ? '\0' : ''}${v}`).join(''));
      return m(packet(PROTOCOL_3_0, raw), 'startup(no-nul)');
    }
    case 'many-params': {
      const n = rng.pick([500, 1000, 3000, 5000]);
      const params: [string, string][] = [...base];
      for (let i = 0; i < n; i++) params.push([`p${i}`, rng.chance(0.5) ? '' : 'v']);
      return m(startupPacket(params), `startup(${n} params)`);
    }
    case 'big-params': {
      // Just under and just over PostgreSQL's 10000-byte ceiling.
      const size = rng.pick([9_000, 9_990, 10_001, 20_000, 100_000]);
      return m(startupPacket([...base, ['application_name', 'a'.repeat(size)]]), `startup(param ${size}B)`);
    }
    case 'odd-params': {
      const raw = rng.pick([
        Buffer.from('user\0'),
        Buffer.from(`user\0${t.user}\0database`),
        Buffer.from(`\0\0\0\0`),
        Buffer.from(`user\0${t.user}\0user\0other\0\0`),
        Buffer.from(`\0user\0${t.user}\0\0`),
        Buffer.from(`=\0=\0\0`),
        Buffer.concat([Buffer.from(`user\0${t.user}\0`), rng.bytes(rng.smallLen(40))]),
      ]);
      return m(packet(PROTOCOL_3_0, raw), 'startup(odd-params)');
    }
    case 'unicode':
      return m(packet(PROTOCOL_3_0, startupParams([...base, ['application_name', Buffer.from([0x61, 0xc3, 0x28, 0xff, 0xfe])]])), 'startup(bad-utf8)');
    case 'pq-options':
      return m(startupPacket([...base, ['_pq_.protocol_managed_params', 'x'], ['_pq_.' + randomString(rng), randomString(rng)]], (3 << 16) | rng.int(3)), 'startup(_pq_)');
    case 'replication':
      return m(startupPacket([...base, ['replication', rng.pick(['true', 'database', 'off', 'yes', ''])]]), 'startup(replication)');
    case 'no-user':
      return m(startupPacket([['database', t.database]]), 'startup(no-user)');
  }
}

function requestMsg(rng: Rng): Msg {
  const which = rng.pick([SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST]);
  const name = which === SSL_REQUEST ? 'SSLRequest' : which === GSSENC_REQUEST ? 'GSSENCRequest' : 'CancelRequest';
  const rest = which === CANCEL_REQUEST ? Buffer.concat([i32(rng.u32()), i32(rng.u32())]) : Buffer.alloc(0);
  const variant = rng.weighted([
    [4, 'valid'],
    [2, 'len'],
    [1, 'trailing'],
    [1, 'short'],
  ] as const);
  if (variant === 'valid') return m(packet(which, rest), name);
  if (variant === 'trailing') return m(packet(which, Buffer.concat([rest, rng.bytes(rng.range(1, 24))])), `${name}(trailing)`);
  if (variant === 'short') return m(packet(which, rest.subarray(0, rng.int(rest.length + 1)), which === CANCEL_REQUEST ? 16 : 8), `${name}(short)`, false);
  const len = wrongLength(rng, 8 + rest.length);
  return m(packet(which, rest, len), `${name}(len=${len})`, false);
}

function preAuthPlan(rng: Rng, t: FuzzTargets): PreAuthPlan {
  const msgs: Msg[] = [];
  const kind = rng.weighted([
    [3, 'random'],
    [6, 'startup'],
    [3, 'requests'],
    [2, 'requests-then-startup'],
    [1, 'many-ssl'],
    [1, 'typed-before-startup'],
    [0.6, 'flood'],
  ] as const);
  if (kind === 'random') {
    const n = rng.chance(0.1) ? rng.range(10_000, 200_000) : rng.range(1, 300);
    msgs.push(m(rng.bytes(n), `random(${n}B)`, false));
  } else if (kind === 'startup') {
    msgs.push(startupMsg(rng, t));
    // Sometimes more after the startup: a second startup, junk, or a premature password.
    if (rng.chance(0.3)) msgs.push(rng.pick([startupMsg(rng, t), m(rng.bytes(rng.range(1, 64)), 'junk', false), m(SASLResponse(rng.bytes(rng.smallLen())), 'p(early)')]));
  } else if (kind === 'requests') {
    for (let i = rng.range(1, 4); i > 0; i--) msgs.push(requestMsg(rng));
  } else if (kind === 'requests-then-startup') {
    for (let i = rng.range(1, 3); i > 0; i--) msgs.push(m(packet(rng.pick([SSL_REQUEST, GSSENC_REQUEST])), 'SSL/GSSRequest'));
    msgs.push(startupMsg(rng, t));
  } else if (kind === 'many-ssl') {
    for (let i = rng.range(5, 60); i > 0; i--) msgs.push(m(packet(SSL_REQUEST), 'SSLRequest'));
  } else if (kind === 'flood') {
    // Megabytes after something the proxy must refuse: they are to be discarded (or the socket closed), never kept.
    msgs.push(
      rng.pick([
        () => m(packet(CANCEL_REQUEST, Buffer.concat([i32(rng.u32()), i32(rng.u32())])), 'CancelRequest'),
        () => m(Buffer.concat([i32(1 << 30), i32(PROTOCOL_3_0)]), 'startup(len=1GB, header only)', false),
        () => m(Buffer.concat([i32(0x7fffffff), i32(PROTOCOL_3_0)]), 'startup(len=2^31-1, header only)', false),
        () => m(startupPacket([['database', t.database]]), 'startup(no-user)'),
        () => m(startupPacket([['user', t.user]], 2 << 16), 'startup(version=2.0)'),
        () => m(rng.bytes(64), 'random(64B)', false),
      ])(),
    );
    return { phase: 'pre-auth', msgs, ending: rng.pick(['abrupt', 'linger'] as const), flood: rng.pick([1, 4, 8]) << 20 };
  } else {
    // A typed message where the startup packet belongs.
    msgs.push(m(rng.pick([Q('SELECT 1'), Sync(), Terminate(), SASLResponse('n,,n=,r=abc')]), 'typed-before-startup'));
  }
  const framed = msgs.every((x) => x.framed);
  const ending = rng.weighted([
    [3, 'abrupt'],
    [5, 'linger'],
    [2, 'half-close'],
    [framed ? 0.3 : 0.1, 'login-timeout'],
  ] as const);
  return { phase: 'pre-auth', msgs, ending };
}

// ---------------------------------------------------------------------------------------------
// (b) During authentication: after AuthenticationSASL
// ---------------------------------------------------------------------------------------------

function authPlan(rng: Rng, t: FuzzTargets): AuthPlan {
  const user = rng.pick([t.user, t.user, t.user, 'nosuchuser']);
  const nonce = rng.bytes(18).toString('base64');
  const validFirst = SASLInitial('SCRAM-SHA-256', Buffer.from(`n,,n=*,r=${nonce}`));
  const kind = rng.weighted([
    [3, 'garbage-first'],
    [2, 'wrong-type'],
    [2, 'oversized'],
    [0.5, 'flood'],
    [3, 'bad-final'],
    [1, 'wait-after-first'],
  ] as const);
  const plan: AuthPlan = { phase: 'auth', user, first: [], final: null, finalCount: 0, ending: rng.pick(['abrupt', 'linger', 'linger', 'half-close'] as const) };
  if (kind === 'garbage-first') {
    const variant = rng.int(9);
    const cf = Buffer.from(`n,,n=*,r=${nonce}`);
    const msg = [
      () => m(SASLResponse(rng.bytes(rng.smallLen(200))), 'p(random)'),
      () => m(SASLInitial(rng.pick(['SCRAM-SHA-1', 'SCRAM-SHA-256-PLUS', '', 'PLAIN']), cf), 'p(mechanism)'),
      () => m(SASLInitial('SCRAM-SHA-256', cf, rng.pick([-1, -2, 0, cf.length + 1, cf.length + 1000, 0x7fffffff])), 'p(bad data length)'),
      () => m(SASLInitial('SCRAM-SHA-256', Buffer.from(rng.pick(['', 'n,,', 'y,,n=*', 'p=tls-server-end-point,,n=*,r=x', 'n,,n=*', 'n,a=x', ',,,,', 'n,,r=,n=', 'n,,n=*,r=' + 'x'.repeat(5000)]))), 'p(bad client-first)'),
      () => m(frame('p', Buffer.from('SCRAM-SHA-256')), 'p(no NUL)'),
      () => m(frame('p', Buffer.concat([cstr('SCRAM-SHA-256'), Buffer.from([0, 0])])), 'p(short int)'),
      () => m(frame('p', cstr('md5' + 'a'.repeat(32))), 'p(md5 password)'),
      () => m(frame('p', Buffer.alloc(0)), 'p(empty)'),
      () => m(SASLInitial('SCRAM-SHA-256', Buffer.from(`n,,n=*,r=${nonce}\0\xff\xfe`)), 'p(NUL in client-first)'),
    ][variant]();
    plan.first.push(msg);
  } else if (kind === 'wrong-type') {
    const type = rng.pick(['Q', 'X', 'S', 'P', 'd', 'R', 'Z', '\0', '\xff']);
    plan.first.push(m(frame(type, rng.chance(0.5) ? cstr('SELECT 1') : rng.bytes(rng.smallLen())), `${JSON.stringify(type)}(instead of p)`));
  } else if (kind === 'oversized') {
    const len = rng.pick([65_537, 1 << 20, 64 << 20, 0x7fffffff, 3, 0, -1]);
    const data = rng.bytes(len > 4 && rng.chance(0.3) ? Math.min(len, 200_000) : rng.smallLen());
    plan.first.push(m(frame('p', data, len), `p(len=${len}, ${data.length}B)`, len === data.length + 4));
  } else if (kind === 'flood') {
    const len = rng.pick([64 << 20, 1 << 30, 0x7fffffff]);
    const type = rng.pick(['p', 'p', 'Q']);
    plan.first.push(m(frame(type, Buffer.alloc(0), len), `${type}(len=${len}, body streamed)`, false));
    plan.flood = rng.pick([1, 4, 8]) << 20;
    plan.ending = 'linger';
  } else if (kind === 'wait-after-first') {
    plan.first.push(m(validFirst, 'p(client-first)'));
    plan.ending = rng.pick(['login-timeout', 'abrupt', 'half-close'] as const);
  } else {
    plan.first.push(m(validFirst, 'p(client-first)'));
    const variant = rng.int(9);
    const proof = rng.bytes(32).toString('base64');
    const pick = rng.int(1000);
    const junk = rng.bytes(rng.smallLen(100));
    plan.finalCount = 1;
    plan.final = (serverFirst) => {
      const r = /r=([^,]*)/.exec(serverFirst)?.[1] ?? nonce;
      return [
        [m(SASLResponse(`c=biws,r=${r},p=${proof}`), 'p(wrong proof)')],
        [m(SASLResponse(`c=biws,r=${nonce},p=${proof}`), 'p(wrong nonce)')],
        [m(SASLResponse(`c=eSws,r=${r},p=${proof}`), 'p(wrong channel binding)')],
        [m(SASLResponse(`c=biws,r=${r},p=!!notbase64!!`), 'p(bad base64)')],
        [m(SASLResponse(`c=biws,r=${r}`), 'p(no proof)')],
        [m(SASLResponse(junk), 'p(random)')],
        [m(SASLResponse(`c=biws,r=${r},p=${'A'.repeat(40_000 + pick)}`), 'p(long proof)')],
        [m(frame('p', Buffer.from(`c=biws,r=${r},p=${proof}`), 0x7fffffff), 'p(len=2^31-1)', false)],
        [m(Q('SELECT 1'), 'Q(instead of final)')],
      ][variant];
    };
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------
// (c) After authentication: every frontend message type, valid and mutated
// ---------------------------------------------------------------------------------------------

function sqlPool(t: FuzzTargets): string[] {
  return [
    'SELECT 1',
    'SELECT 1 AS a, 2 AS b',
    `SELECT count(*) FROM ${t.table}`,
    `SELECT v FROM ${t.table} ORDER BY id DESC LIMIT 3`,
    `INSERT INTO ${t.table}(v) VALUES ('fuzz')`,
    `UPDATE ${t.table} SET v = v WHERE id < 0`,
    'BEGIN',
    'BEGIN READ ONLY',
    'COMMIT',
    'ROLLBACK',
    'SAVEPOINT s1',
    'ROLLBACK TO SAVEPOINT s1',
    'RELEASE s1',
    "SET application_name = 'fuzz'",
    'SET LOCAL statement_timeout = 1000',
    'RESET ALL',
    'SHOW application_name',
    'SET pgsplit.route = primary',
    'SHOW pgsplit.route',
    'SET pgsplit.route = banana',
    'SELECT 1/0',
    'SELEC 1',
    '',
    ';',
    'SELECT 1; SELECT 2',
    `BEGIN; INSERT INTO ${t.table}(v) VALUES ('multi'); COMMIT`,
    'SELECT now(), random()',
    'SELECT pg_is_in_recovery()',
    'SELECT $1::int',
    'SELECT $1::text || $2::text',
    "SELECT 'ünïcödé ✓'",
    'LISTEN fuzz_channel',
    "NOTIFY fuzz_channel, 'x'",
    'UNLISTEN *',
    'PREPARE fz AS SELECT 1',
    'EXECUTE fz',
    'DEALLOCATE ALL',
    'DISCARD ALL',
    `COPY ${t.table}(v) FROM STDIN`,
    `COPY (SELECT v FROM ${t.table} LIMIT 5) TO STDOUT`,
    "SELECT repeat('x', 100000)",
    'SELECT generate_series(1, 1000)',
    "DO $$ BEGIN RAISE NOTICE 'hi'; END $$",
    'SELECT pg_sleep(0.01)',
    'SELECT 1 FROM pg_stat_activity LIMIT 1',
  ];
}

const STMT_NAMES = ['', '', 's1', 's2', 'fz', 'nosuch', 'x'.repeat(70)];
const PORTAL_NAMES = ['', '', 'p1', 'nosuch'];

/** A statement whose text is long: over routing.max_parse_length, sometimes over max_message_size. */
function longSql(rng: Rng): string {
  const target = rng.weighted([
    [6, rng.range(70_000, 200_000)],
    [1, rng.range((1 << 20) + 1, (3 << 20) / 2)],
  ] as const);
  return `SELECT ${'1+'.repeat(Math.floor(target / 2))}1`;
}

/** Valid SQL, occasionally statements that make the server send something large (a big DataRow or ErrorResponse). */
function sql(rng: Rng, t: FuzzTargets): string {
  if (rng.chance(0.02)) return longSql(rng);
  // A DataRow or an ErrorResponse (the value quoted in 'invalid input syntax') larger than any client limit.
  if (rng.chance(0.03)) return `SELECT repeat('x', ${rng.pick([1 << 20, 17 << 20])})${rng.chance(0.5) ? '::int' : ''}`;
  return rng.pick(sqlPool(t));
}

function paramValue(rng: Rng): Buffer | null {
  return rng.weighted([
    [4, Buffer.from(String(rng.range(-5, 1000)))],
    [1, null],
    [1, Buffer.alloc(0)],
    [1, rng.bytes(rng.smallLen(32))],
    [1, Buffer.from('x'.repeat(rng.range(100, 5000)))],
  ] as const);
}

/** A valid extended-protocol round trip (P B D E S), sometimes with Flush, Close, or without the Sync. */
function validExtended(rng: Rng, t: FuzzTargets): Msg[] {
  const name = rng.pick(STMT_NAMES.slice(0, 5));
  const portal = rng.pick(PORTAL_NAMES.slice(0, 3));
  const text = sql(rng, t);
  const nParams = (text.match(/\$\d/g) ?? []).length;
  const out: Msg[] = [m(Parse(name, text, rng.chance(0.5) ? [] : Array.from({ length: nParams }, () => rng.pick([0, 23, 25]))), 'P')];
  const params = Array.from({ length: nParams }, () => Buffer.from(String(rng.int(100))));
  out.push(m(Bind(portal, name, params, rng.chance(0.3) ? [0] : [], rng.chance(0.2) ? [1] : []), 'B'));
  if (rng.chance(0.5)) out.push(m(Describe(rng.pick(['S', 'P'] as const), rng.chance(0.5) ? name : portal), 'D'));
  out.push(m(Execute(portal, rng.pick([0, 0, 1, 2])), 'E'));
  if (rng.chance(0.2)) out.push(m(Flush(), 'H'));
  if (rng.chance(0.2)) out.push(m(Close(rng.pick(['S', 'P'] as const), rng.pick(STMT_NAMES)), 'C'));
  if (rng.chance(0.85)) out.push(m(Sync(), 'S'));
  return out;
}

/** One message of a frontend type with fields that lie (counts, terminators, lengths inside the body). */
function lyingMessage(rng: Rng, t: FuzzTargets): Msg {
  const type = rng.pick(['Q', 'P', 'B', 'D', 'E', 'S', 'H', 'C', 'F', 'd', 'c', 'f', 'X'] as const);
  const name = rng.pick(STMT_NAMES);
  const text = type === 'Q' || type === 'P' ? sql(rng, t) : '';
  const r = (label: string, body: Buffer): Msg => m(frame(type, body), `${type}(${label})`);
  switch (type) {
    case 'Q':
      return rng.pick([
        () => r('no NUL', Buffer.from(text)),
        () => r('NUL inside', Buffer.concat([cstr('SELECT 1'), cstr(text)])),
        () => r('bad utf8', cstr(Buffer.concat([Buffer.from("SELECT '"), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from("'")]))),
        () => r('empty body', Buffer.alloc(0)),
      ])();
    case 'P':
      return rng.pick([
        () => r('param count lies', Buffer.concat([cstr(name), cstr(text), i16(rng.pick([1, 5, 32767, -1, -32768]))])),
        () => r('param oids unknown', Buffer.concat([cstr(name), cstr('SELECT $1'), i16(1), i32(rng.pick([999_999, -1, 0x7fffffff]))])),
        () => r('no query NUL', Buffer.concat([cstr(name), Buffer.from(text)])),
        () => r('no name NUL', Buffer.from(name + text)),
        () => r('trailing junk', Buffer.concat([cstr(name), cstr(text), i16(0), rng.bytes(rng.range(1, 16))])),
        () => r('65535 params', Buffer.concat([cstr(name), cstr('SELECT 1'), i16(-1), ...Array.from({ length: rng.pick([10, 1000, 32767]) }, () => i32(23))])),
      ])();
    case 'B': {
      const stmt = rng.pick(STMT_NAMES);
      const portal = rng.pick(PORTAL_NAMES);
      return rng.pick([
        () => r('unknown statement', Bind(portal, 'nosuch_' + rng.int(1000), []).subarray(5)),
        () => r('format count lies', Buffer.concat([cstr(portal), cstr(stmt), i16(rng.pick([3, -1, 32767])), i16(0), i16(0), i16(0)])),
        () => r('bad format code', Buffer.concat([cstr(portal), cstr(stmt), i16(1), i16(rng.pick([2, -1, 7])), i16(0), i16(0)])),
        () => r('param count lies', Buffer.concat([cstr(portal), cstr(stmt), i16(0), i16(rng.pick([2, 100, -1, 32767])), i32(1), Buffer.from('1'), i16(0)])),
        () => r('param length lies', Buffer.concat([cstr(portal), cstr(stmt), i16(0), i16(1), i32(rng.pick([-2, 5, 1 << 20, 0x7fffffff, -(2 ** 31)])), Buffer.from('1'), i16(0)])),
        () => r('many params', Bind(portal, stmt, Array.from({ length: rng.pick([2, 100, 5000]) }, () => paramValue(rng))).subarray(5)),
        () => r('no result formats', Buffer.concat([cstr(portal), cstr(stmt), i16(0), i16(0)])),
        () => r('truncated body', Bind(portal, stmt, [paramValue(rng)], [0], [0]).subarray(5, 5 + rng.range(0, 8))),
      ])();
    }
    case 'D':
    case 'C':
      return rng.pick([
        () => r('bad kind', Buffer.concat([Buffer.from([rng.pick([0, 0x58, 0xff, 0x73])]), cstr(name)])),
        () => r('no NUL', Buffer.concat([Buffer.from(rng.pick(['S', 'P'])), Buffer.from(name || 'x')])),
        () => r('empty body', Buffer.alloc(0)),
        () => r('unknown name', Buffer.concat([Buffer.from(rng.pick(['S', 'P'])), cstr('nosuch_' + rng.int(1000))])),
      ])();
    case 'E':
      return rng.pick([
        () => r('no max rows', cstr(rng.pick(PORTAL_NAMES))),
        () => r('negative max rows', Buffer.concat([cstr(rng.pick(PORTAL_NAMES)), i32(rng.pick([-1, -(2 ** 31)]))])),
        () => r('unknown portal', Buffer.concat([cstr('nosuch_' + rng.int(1000)), i32(0)])),
        () => r('no NUL', Buffer.from('p1xxxx')),
      ])();
    case 'S':
    case 'H':
    case 'c':
    case 'X':
      return r('with body', rng.bytes(rng.range(1, 32)));
    case 'F':
      return rng.pick([
        () => m(FunctionCall(rng.pick([177, 1299, 0, 999_999, -1]), [Buffer.from('1'), Buffer.from('2')]), 'F(call)'),
        () => m(FunctionCall(177, [i32(1), i32(2)], [1], 0), 'F(binary args)'),
        () => r('arg count lies', Buffer.concat([i32(177), i16(0), i16(rng.pick([5, -1, 32767])), i32(1), Buffer.from('1'), i16(0)])),
        () => r('arg length lies', Buffer.concat([i32(177), i16(0), i16(1), i32(rng.pick([1 << 20, -2, 0x7fffffff])), i16(0)])),
        () => r('format count lies', Buffer.concat([i32(177), i16(rng.pick([9, -1])), i16(0), i16(0)])),
        () => r('truncated', Buffer.from([0, 0, 0])),
      ])();
    case 'd':
      return rng.pick([
        () => m(CopyData(rng.bytes(rng.smallLen(200))), 'd(random)'),
        () => m(CopyData(`${randomString(rng)}\n`), 'd(row)'),
        () => m(CopyData('\\.\n'), 'd(end marker)'),
        () => m(CopyData(Buffer.alloc(0)), 'd(empty)'),
        () => m(CopyData('a\tb\tc\td\n'), 'd(too many columns)'),
      ])();
    case 'f':
      return rng.pick([
        () => m(CopyFail('fuzz says no'), 'f'),
        () => r('no NUL', Buffer.from('no terminator')),
        () => r('empty body', Buffer.alloc(0)),
      ])();
  }
}

/** Byte-level mutation of any message: flipped bytes, cut or padded bodies, a new type byte, a length word that lies. */
function mutate(rng: Rng, msg: Msg): Msg {
  const b = Buffer.from(msg.bytes);
  const body = b.subarray(5);
  const kind = rng.weighted([
    [3, 'flip'],
    [2, 'cut'],
    [1, 'pad'],
    [2, 'type'],
    [3, 'length'],
    [1, 'strip-nul'],
  ] as const);
  switch (kind) {
    case 'flip':
      for (let i = rng.range(1, 4); i > 0 && body.length > 0; i--) body[rng.int(body.length)] = rng.int(256);
      return m(b, `${msg.label}~flip`, msg.framed);
    case 'cut': {
      const keep = rng.int(body.length + 1);
      return m(frame(b[0], body.subarray(0, keep)), `${msg.label}~cut`, msg.framed);
    }
    case 'pad':
      return m(frame(b[0], Buffer.concat([body, rng.bytes(rng.range(1, 64))])), `${msg.label}~pad`, msg.framed);
    case 'type': {
      const type = rng.pick([0, 0x01, 0x41, 0x5a, 0x52, 0x70, 0x71, 0x7f, 0xff, rng.int(256)]);
      b[0] = type;
      return m(b, `${msg.label}~type=0x${type.toString(16)}`, msg.framed);
    }
    case 'length': {
      const actual = body.length + 4;
      const len = rng.pick([-1, -(2 ** 31), 0, 3, 4, actual - 1, Math.max(4, actual - rng.range(1, 8)), actual + 1, actual + rng.range(2, 200), 1 << 20, (1 << 20) + 1, 64 << 20, 0x7fffffff]);
      b.writeInt32BE(len | 0, 1);
      return m(b, `${msg.label}~len=${len}`, len === actual && msg.framed);
    }
    case 'strip-nul':
      for (let i = 0; i < body.length; i++) if (body[i] === 0) body[i] = 0x78;
      return m(b, `${msg.label}~nonul`, msg.framed);
  }
}

/** Bytes that are not a frontend message type at all (or not one a client may send after startup). */
function invalidType(rng: Rng): Msg {
  const type = rng.pick([0x00, 0x01, 0x20, 0x41, 0x4b, 0x52, 0x5a, 0x61, 0x70, 0x71, 0x7e, 0x80, 0xff]);
  return m(frame(type, rng.bytes(rng.smallLen(40))), `type=0x${type.toString(16)}`);
}

function copyMessage(rng: Rng): Msg {
  return rng.weighted([
    [6, () => m(CopyData(Array.from({ length: rng.range(1, 20) }, () => `row${rng.int(1e6)}\n`).join('')), 'd(rows)')],
    [1, () => m(CopyData(Buffer.alloc(rng.range(100_000, 300_000), 0x61)), 'd(big, no newline)')],
    [rng.chance(0.05) ? 1 : 0, () => m(CopyData(Buffer.alloc((1 << 20) + rng.range(1, 1000), 0x61)), 'd(over max_message_size)')],
    [1, () => m(CopyData('a\\\n'), 'd(bad escape)')],
    [1, () => m(CopyDone(), 'c')],
    [1, () => m(CopyFail('fuzz'), 'f')],
  ] as const)();
}

function postAuthPlan(rng: Rng, t: FuzzTargets, maxPerConnection: number): PostAuthPlan {
  const state = rng.weighted([
    [4, 'idle'],
    [2, 'tx'],
    [1, 'failed-tx'],
    [2, 'copy-in'],
  ] as const);
  const n = rng.chance(0.15) ? rng.range(1, maxPerConnection * 4) : rng.range(1, maxPerConnection);
  const msgs: Msg[] = [];
  let inCopy = state === 'copy-in';
  while (msgs.length < n) {
    if (inCopy && rng.chance(0.85)) {
      const c = copyMessage(rng);
      msgs.push(c);
      if (c.label === 'c' || c.label === 'f') inCopy = false;
      continue;
    }
    const what = rng.weighted([
      [3, 'simple'],
      [3, 'extended'],
      [4, 'lying'],
      [2, 'mutated'],
      [0.4, 'invalid-type'],
      [0.2, 'terminate'],
    ] as const);
    if (what === 'simple') {
      const q = sql(rng, t);
      msgs.push(m(Q(q), `Q(${q.length > 40 ? `${q.slice(0, 24)}…${q.length}B` : q})`));
      if (/COPY .* FROM STDIN/.test(q)) inCopy = true;
    } else if (what === 'extended') msgs.push(...validExtended(rng, t));
    else if (what === 'lying') msgs.push(lyingMessage(rng, t));
    else if (what === 'mutated') msgs.push(mutate(rng, rng.chance(0.5) ? lyingMessage(rng, t) : rng.pick(validExtended(rng, t))));
    else {
      // After these PostgreSQL ends the session, so nothing else is worth sending.
      msgs.push(what === 'invalid-type' ? invalidType(rng) : m(Terminate(), 'X'));
      break;
    }
  }
  // Everything after the first length that lies is framed differently from what the labels say; stop there.
  const firstLie = msgs.findIndex((x) => !x.framed);
  if (firstLie >= 0 && rng.chance(0.5)) msgs.length = firstLie + 1;
  if (rng.chance(0.05)) {
    // A header that promises more than max_message_size, then its body streamed: memory must follow what arrived.
    const len = rng.pick([2 << 20, 64 << 20, 1 << 30, 0x7fffffff]);
    const type = rng.pick(['Q', 'P', 'B', 'd', 'F', 'p']);
    const head = frame(type, Buffer.alloc(0), len);
    msgs.push(m(head, `${type}(len=${len}, body streamed)`, false));
    return { phase: 'post-auth', state, msgs, tail: null, ending: rng.pick(['abrupt', 'linger'] as const), flood: rng.pick([2, 4, 8]) << 20 };
  }
  const framed = msgs.every((x) => x.framed);
  let tail: Buffer | null = null;
  let ending: Ending;
  if (framed && rng.chance(0.15)) {
    // Truncated frame, then disconnect.
    const whole = rng.chance(0.5) ? Q(sql(rng, t)) : rng.pick(validExtended(rng, t)).bytes;
    tail = whole.subarray(0, rng.range(1, whole.length - 1));
    ending = rng.pick(['abrupt', 'linger', 'half-close'] as const);
  } else if (framed) {
    ending = rng.weighted([
      [7, 'probe'],
      [1, 'terminate'],
      [1, 'abrupt'],
      [1, 'linger'],
    ] as const);
  } else {
    ending = rng.pick(['abrupt', 'linger', 'linger', 'half-close'] as const);
  }
  return { phase: 'post-auth', state, msgs, tail, ending };
}
