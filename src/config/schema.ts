// Zod schema for pgsplit.yaml: validates the file, applies defaults and converts durations to milliseconds.
import { z } from 'zod';
import { parseDuration, parseSize } from './units.js';

// Leaves are hand-rolled on top of z.unknown() instead of z.string()/z.number() for two reasons: zod aborts
// the whole parent on a type mismatch (hiding sibling checks such as duplicate names), and we want every
// message to say what was expected and what was found, which zod's defaults do not.

const INVALID = Symbol('invalid');
type Parsed<T> = T | typeof INVALID;

// Node's timers overflow above 2^31-1 ms and silently fire after 1 ms instead.
const MAX_TIMER_MS = 2 ** 31 - 1;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const AUTH_METHODS = ['scram-sha-256', 'md5', 'trust'] as const;
export const LOAD_BALANCE = ['round-robin', 'random', 'least-connections'] as const;
export const PRIMARY_READS = ['fallback', 'include', 'never'] as const;
export const CONSISTENCY = ['read-your-writes', 'eventual'] as const;
export const REPLICATION_MODES = ['async', 'semi-sync', 'sync'] as const;
export const SYNCHRONOUS_COMMIT = ['on', 'remote_write', 'remote_apply'] as const;
export const CLIENT_TLS_MODES = ['disable', 'allow', 'require'] as const;
export const SERVER_TLS_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export const POOL_MODES = ['transaction', 'session'] as const;

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

function leaf<T>(expected: string, parse: (v: unknown) => Parsed<T>, secret = false) {
  return z.unknown().transform((v, ctx): T => {
    const out = v === undefined ? INVALID : parse(v);
    if (out !== INVALID) return out;
    const message =
      v === undefined ? `required; expected ${expected}` : secret ? `expected ${expected}` : `expected ${expected}, got ${show(v)}`;
    ctx.addIssue({ code: z.ZodIssueCode.custom, message });
    return z.NEVER;
  });
}

const str = (opts: { pattern?: RegExp; expected?: string; secret?: boolean; allowEmpty?: boolean } = {}) =>
  leaf(
    opts.expected ?? (opts.allowEmpty ? 'a string' : 'a non-empty string'),
    (v) =>
      typeof v === 'string' && (opts.allowEmpty || v !== '') && (!opts.pattern || opts.pattern.test(v)) ? v : INVALID,
    opts.secret,
  );

// Digit strings are accepted because ${VAR} interpolation always produces strings (e.g. port: ${PGPORT}).
const int = (min: number, max: number, expected = `an integer ${min}..${max}`) =>
  leaf(expected, (v) => {
    const n = typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v;
    return typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max ? n : INVALID;
  });

const port = () => int(0, 65535);

/** workers: "auto" (one per core) or a count; resolved to a number by resolveWorkers(). */
const workerCount = () =>
  leaf('"auto" or a number of worker processes from 1 to 64', (v) => {
    if (v === 'auto') return 'auto' as const;
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 64 ? n : INVALID;
  });

const bool = () => leaf('true or false', (v) => (v === true || v === 'true' ? true : v === false || v === 'false' ? false : INVALID));

const oneOf = <T extends string>(values: readonly T[]) =>
  leaf(`one of ${values.join(', ')}`, (v) => (values.includes(v as T) ? (v as T) : INVALID));

/**
 * Descriptions that mark leaves parsed into milliseconds (DURATION) or bytes (SIZE), so that config/display.ts can
 * show a parsed config in the units it is written in: `check-config` prints "30s", which loads again, not 30000.
 */
export const DURATION = 'pgsplit:duration';
export const SIZE = 'pgsplit:size';

const duration = (allowZero = false) =>
  leaf(`a duration with a unit like "500ms", "2s", "1m" or "1h" (${allowZero ? '>= 0' : '> 0'}, at most 596h)`, (v) => {
    if (typeof v !== 'string') return INVALID;
    try {
      const ms = parseDuration(v);
      return (allowZero || ms > 0) && ms <= MAX_TIMER_MS ? ms : INVALID;
    } catch {
      return INVALID;
    }
  }).describe(DURATION);

// Sizes are bytes after parsing; the default upper bound is PostgreSQL's own limit on a query string (1GB).
const size = (min: number, max: number, maxLabel = '1GB') =>
  leaf(`a size with a unit like "64kB" or "1MB" (${min}B..${maxLabel})`, (v) => {
    if (typeof v !== 'string') return INVALID;
    try {
      const bytes = parseSize(v);
      return bytes >= min && bytes <= max ? bytes : INVALID;
    } catch {
      return INVALID;
    }
  }).describe(SIZE);

// A function name as routing lists hold it: "f" (any schema) or "schema.f".
const functionName = () =>
  str({ pattern: /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/, expected: 'a function name like "f" or "schema.f"' });

// Node and session tags (nodes[].tags, routing.read_tags): short words, compared exactly.
const tag = () => str({ pattern: /^[A-Za-z0-9_.-]+$/, expected: 'a tag made of letters, digits, "_", "." or "-"' });
const tagList = () => z.array(tag(), { errorMap: typeMap('a list of tags') });

/** A leaf that may also be omitted or null (then null: "no bound"). */
function orNone<T>(inner: z.ZodType<T, z.ZodTypeDef, unknown>) {
  const outer = z.unknown().transform((v, ctx): T | null => {
    if (v === undefined || v === null) return null;
    const r = inner.safeParse(v);
    if (r.success) return r.data;
    for (const issue of r.error.issues) ctx.addIssue({ code: z.ZodIssueCode.custom, message: issue.message });
    return z.NEVER;
  });
  // The inner leaf is hidden in the closure, so its unit marker (DURATION, SIZE) is carried out here.
  return inner.description === undefined ? outer : outer.describe(inner.description);
}

function typeMap(expected: string): z.ZodErrorMap {
  return (issue, ctx) =>
    issue.code === z.ZodIssueCode.invalid_type
      ? { message: ctx.data === undefined ? `required; expected ${expected}` : `expected ${expected}, got ${show(ctx.data)}` }
      : { message: ctx.defaultError };
}

function section<S extends z.ZodRawShape>(shape: S) {
  const keys = Object.keys(shape).join(', ');
  return z.object(shape, { errorMap: typeMap(`a mapping with keys ${keys}`) }).strict(`unknown key (allowed: ${keys})`);
}

function uniqueNames(what: string, list: string) {
  return (items: { name: unknown }[], ctx: z.RefinementCtx) => {
    const seen = new Map<string, number>();
    items.forEach((item, i) => {
      if (typeof item.name !== 'string') return;
      const first = seen.get(item.name);
      if (first === undefined) seen.set(item.name, i);
      else ctx.addIssue({ code: z.ZodIssueCode.custom, path: [i, 'name'], message: `duplicate ${what} name "${item.name}" (also used by ${list}[${first}])` });
    });
  };
}

// TLS towards PostgreSQL servers (server_tls, and nodes[].tls to override it per node); files are PEM paths.
const serverTlsSchema = section({
  mode: oneOf(SERVER_TLS_MODES).default('disable'),
  /** CA bundle that signs the servers' certificates (verify-ca, verify-full); default: the system's. */
  ca: str().optional(),
  /** Client certificate and key, for servers that ask for one (hba "cert"). */
  cert: str().optional(),
  key: str().optional(),
});

const nodeSchema = section({
  name: str({ pattern: /^[A-Za-z0-9_.-]+$/, expected: 'a name made of letters, digits, "_", "." or "-"' }),
  host: str({ expected: 'a non-empty host name or IP address' }),
  port: port().default(5432),
  /** Share of the reads this node gets relative to the other replicas; 0 = no ordinary reads. */
  weight: int(0, 1000).default(1),
  tags: tagList().default([]),
  /** A deliberately delayed replica: serves reads only to sessions that ask for one of its tags. */
  delayed: bool().default(false),
  /** Failover preference between candidates with the same WAL position (higher first). */
  priority: int(0, 1000).default(0),
  /** Overrides server_tls for this node. */
  tls: serverTlsSchema.optional(),
  /** Send the stored password in cleartext when this server asks for it (hba "password") without TLS. */
  allow_cleartext_password: bool().default(false),
});

const userSchema = section({
  name: str(),
  password: str({ secret: true, allowEmpty: true }),
  /** Overrides routing.read_tags for this user's sessions. */
  read_tags: tagList().optional(),
  /** Overrides pool.mode for this user's sessions. */
  pool_mode: oneOf(POOL_MODES).optional(),
});

// Admin console users authenticate with SCRAM-SHA-256 only, so an empty password would lock them out: refused here.
const adminUserSchema = section({
  name: str(),
  password: str({ secret: true }),
});

export const configSchema = section({
  listen: section({
    host: str().default('127.0.0.1'),
    port: port().default(6432),
    max_client_connections: int(1, Number.MAX_SAFE_INTEGER, 'an integer >= 1').default(1000),
  }).default({}),
  admin: section({
    host: str().default('127.0.0.1'),
    port: port().default(9930),
    enabled: bool().default(true),
    /** Credentials for mutating endpoints (and for reads when protect_reads): a bearer token and/or basic auth. */
    auth: section({
      token: str({ secret: true }).optional(),
      user: str().optional(),
      password: str({ secret: true }).optional(),
      /** true: /status and the other read endpoints need the credentials too (/health, /ready and /metrics stay open). */
      protect_reads: bool().default(false),
    }).default({}),
    /** Who may log in to the admin console (database "pgsplit" on the listen port), each with its own password (SCRAM-SHA-256). */
    users: z.array(adminUserSchema, { errorMap: typeMap('a list of { name, password }') }).default([]).superRefine(uniqueNames('admin user', 'admin.users')),
    /** A PAUSE in the admin console lifts itself after this long if nobody sent RESUME (held statements then run). */
    pause_timeout: duration().default('60s'),
    /** Serve /metrics on its own port (e.g. bound to 0.0.0.0 for a remote Prometheus); null: on the admin port. */
    metrics_port: orNone(port()),
    metrics_host: str().default('127.0.0.1'),
  }).default({}),
  /** TLS towards clients: SSLRequest is answered 'S' and TLS terminated here. */
  tls: section({
    mode: oneOf(CLIENT_TLS_MODES).default('disable'),
    cert: str().optional(),
    key: str().optional(),
    /** CA bundle for client certificates (optional; clients are still authenticated by password). */
    ca: str().optional(),
  }).default({}),
  server_tls: serverTlsSchema.default({}),
  /** Bounds on what one client can make the proxy hold or wait for. */
  limits: section({
    /** A client message larger than this ends its session (54000); PostgreSQL's own ceiling (1GB) is far too much per client. */
    max_message_size: size(1024, 1024 ** 3).default('64MB'),
    /** From accept to the end of authentication; then the connection is closed. */
    client_login_timeout: duration().default('60s'),
    /** Close a client that sent nothing for this long outside a transaction; 0 = never. */
    client_idle_timeout: duration(true).default('0s'),
    /** Close a client that sits in an open transaction doing nothing for this long; 0 = never. */
    idle_transaction_timeout: duration(true).default('0s'),
    /** Client data queued in the proxy (pipelined statements waiting for a server); beyond it the client is not read. */
    max_pipeline: size(64 * 1024, 1024 ** 3).default('16MB'),
    /** Named prepared statements per client session (protocol-level Parse); one more gets 53400. */
    max_prepared_statements: int(1, 10_000_000).default(10000),
    /**
     * Total size of a session's named prepared statements (their Parse messages, kept to prepare them on other
     * servers); one more gets 53400. Also what each server connection keeps prepared (least recently used closed beyond it).
     */
    max_prepared_bytes: size(64 * 1024, 1024 ** 3).default('16MB'),
    /** Session settings (SET) recorded per client for replay on other servers; one more gets 53400. */
    max_session_settings: int(1, 100_000).default(1000),
    /** Total length of those recorded SET statements (the text replayed on another server); beyond it a SET gets 53400. */
    max_session_settings_bytes: size(1024, 1024 ** 3).default('1MB'),
  }).default({}),
  /** Server connections shared by client sessions, per node, user and database. */
  pool: section({
    /** transaction: a client holds a server connection only while a transaction (or an extended-protocol batch) runs; session: for its whole life. */
    mode: oneOf(POOL_MODES).default('transaction'),
    /** Server connections per node, user and database, for the whole instance. */
    size: int(1, 100_000).default(20),
    /** Idle server connections kept open per node, user and database (opened ahead of need). */
    min_idle: int(0, 100_000).default(0),
    /** A client that waits this long for a server connection gets 53300; 0 = wait for ever (not recommended). */
    max_client_wait: duration(true).default('30s'),
    /** An idle server connection is closed after this long (down to min_idle); 0 = never. */
    server_idle_timeout: duration(true).default('10m'),
    /** A server connection is closed at its next release once it is this old; 0 = never. */
    server_lifetime: duration(true).default('1h'),
    /** Protocol-level prepared statements kept per server connection (least recently used closed beyond it). */
    max_prepared_statements: int(1, 100_000).default(500),
  }).default({}),
  auth: section({ method: oneOf(AUTH_METHODS).default('scram-sha-256') }).default({}),
  users: z.array(userSchema, { errorMap: typeMap('a list of { name, password }') }).default([]).superRefine(uniqueNames('user', 'users')),
  nodes: z
    .array(nodeSchema, { errorMap: typeMap('a list of { name, host, port }') })
    .min(1, 'expected at least one node')
    .superRefine(uniqueNames('node', 'nodes')),
  monitor: section({
    user: str().default('postgres'),
    password: str({ secret: true, allowEmpty: true }).default(''),
    database: str().default('postgres'),
    interval: duration().default('1s'),
    connect_timeout: duration().default('2s'),
    probe_timeout: duration().default('2s'),
  }).default({}),
  backend: section({ connect_timeout: duration().default('5s') }).default({}),
  routing: section({
    enabled: bool().default(true),
    read_only_functions: z.array(functionName(), { errorMap: typeMap('a list of function names') }).default([]),
    write_functions: z.array(functionName(), { errorMap: typeMap('a list of function names') }).default([]),
    max_parse_length: size(1, 1024 ** 3).default('64kB'),
    parse_cache_size: int(0, 10_000_000).default(10000),
    load_balance: oneOf(LOAD_BALANCE).default('round-robin'),
    primary_reads: oneOf(PRIMARY_READS).default('fallback'),
    consistency: oneOf(CONSISTENCY).default('read-your-writes'),
    max_replica_lag: section({
      bytes: orNone(size(0, 2 ** 50, '1PB')),
      time: orNone(duration(true)),
    }).default({ bytes: '16MB', time: '2s' }),
    unban_after: duration(true).default('2s'),
    read_tags: tagList().default([]),
  }).default({}),
  /** Statement statistics (GET /statements, SHOW STATEMENTS): what pg_stat_statements shows, seen from the proxy with the routing decision. */
  stats: section({
    /** Count every statement a routing session sends to a server: calls, target and reason, time, rows, errors. */
    enabled: bool().default(true),
    /** Distinct normalized statements kept (per process with workers: N); the least used make room for new ones. */
    max_statements: int(10, 1_000_000).default(1000),
  }).default({}),
  failover: section({
    enabled: bool().default(true),
    /** Consecutive failed probes of the primary before it is considered lost (then confirmed by the replicas). */
    failure_threshold: int(1, 1000).default(3),
    /** Statements (and new connections) wait this long for a primary while none is known, then fail. */
    hold_timeout: duration(true).default('10s'),
    promote_timeout: duration().default('30s'),
    /** Shell command run after a promotion (DNS, alerts); gets PGSPLIT_* variables. */
    hook_command: str({ allowEmpty: true }).default(''),
    /** Shell command that turns a fenced old primary into a replica of the current one (e.g. pg_rewind). */
    rejoin_command: str({ allowEmpty: true }).default(''),
    /** Shell command that demotes the old primary during a switchover (stop it, or restart it as a standby); without one it is made read-only. */
    demote_command: str({ allowEmpty: true }).default(''),
    /** How long a switchover waits for open transactions on the old primary and for the target to catch up. */
    switchover_timeout: duration().default('30s'),
    /** hook_command, rejoin_command and demote_command are killed (their whole process group) after this long and count as failed. */
    hook_timeout: duration().default('30s'),
  }).default({}),
  replication: section({
    mode: oneOf(REPLICATION_MODES).default('async'),
    /** true: writes wait when no synchronous replica is available instead of degrading to async. */
    strict: bool().default(false),
    synchronous_commit: oneOf(SYNCHRONOUS_COMMIT).default('on'),
  }).default({}),
  /** Several pgsplit instances in front of one cluster: one leader acts on it, all follow its published state through etcd. */
  coordination: section({
    /** This instance's name among the others (default: host name and listen port). */
    name: str({ allowEmpty: true, pattern: /^[A-Za-z0-9_.:-]*$/, expected: 'a name made of letters, digits, "_", ".", ":" or "-"' }).default(''),
    etcd: section({
      /** etcd client URLs (http:// or https://); empty: this instance runs alone. */
      endpoints: z.array(str({ pattern: /^https?:\/\/[^\s/]+$/, expected: 'an etcd client URL like "http://10.0.0.1:2379"' }), { errorMap: typeMap('a list of etcd client URLs') }).default([]),
      /** Keys live under this prefix (one per pgsplit cluster). */
      prefix: str({ pattern: /^\/[A-Za-z0-9_./-]*[^/]$/, expected: 'a key prefix like "/pgsplit/main"' }).default('/pgsplit/default'),
      /** The leader's lease, and how long an instance that cannot confirm the published state goes on writing. */
      lease_ttl: duration().default('5s'),
      user: str({ allowEmpty: true }).default(''),
      password: str({ secret: true, allowEmpty: true }).default(''),
      ca: str().optional(),
      cert: str().optional(),
      key: str().optional(),
    }).default({}),
    /** etcd unreachable for every instance (they ask each other): writes go on to the primary they agree on; nobody promotes. */
    failsafe: bool().default(false),
  }).default({}),
  /** Processes that serve clients (they share listen.port); one coordinator keeps the monitor, failover and admin. 1 = one process does everything. */
  workers: workerCount().default(1),
  shutdown: section({ drain_timeout: duration(true).default('30s') }).default({}),
  log: section({ level: oneOf(LOG_LEVELS).default('info') }).default({}),
}).superRefine((c, ctx) => {
  if (c.tls.mode !== 'disable') {
    for (const k of ['cert', 'key'] as const) {
      if (!c.tls[k]) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['tls', k], message: `required when tls.mode is ${c.tls.mode} (a PEM file)` });
    }
  }
  const a = c.admin.auth;
  if ((a.user === undefined) !== (a.password === undefined)) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['admin', 'auth', a.user === undefined ? 'user' : 'password'], message: 'admin.auth.user and admin.auth.password go together' });
  }
  if (a.protect_reads && a.token === undefined && a.user === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['admin', 'auth', 'protect_reads'], message: 'needs admin.auth.token or admin.auth.user/password' });
  }
  // Only scram/md5 need client passwords; PostgreSQL itself never accepts an empty one for those methods.
  if (c.auth.method !== 'scram-sha-256' && c.auth.method !== 'md5') return;
  if (c.users.length === 0) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['users'], message: `expected at least one user when auth.method is ${c.auth.method} (use auth.method: trust to allow anyone)` });
  }
  c.users.forEach((u, i) => {
    if (u.password === '') {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['users', i, 'password'], message: `must not be empty when auth.method is ${c.auth.method}` });
    }
  });
});

export type Config = z.output<typeof configSchema>;
