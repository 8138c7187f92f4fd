// The admin HTTP port: /metrics (Prometheus), /health (liveness), /ready (a primary is known and may be written to), /status (JSON), POST /switchover, POST /reload, GET /statements, POST /statements/reset; locked by admin.auth.
import http from 'node:http';
import type net from 'node:net';
import type { Registry } from 'prom-client';
import type { Topology } from '../topology/topology.js';
import { SwitchoverRefused } from '../errors.js';
import { redact } from '../config/redact.js';
import { checkCredentials, challenges, type AdminAuth } from './auth.js';
import { statusPage } from './status-page.js';
import { DEFAULT_STATEMENT_ROWS, type StatementsSource } from '../stats/statements-source.js';

export interface AdminContext {
  registry: Registry;
  topology: Topology;
  /** Everything GET /status shows; the server masks its secrets (and drops the user list unless the reader is authenticated). */
  status(): unknown;
  /** Called before /metrics and /status are answered (a coordinator gathers its workers' counters); never rejects. */
  refresh?(): Promise<void>;
  /** Planned promotion of a replica; rejects with SwitchoverRefused when it cannot be done. */
  switchover?(to: string): Promise<unknown>;
  /** Re-read the config file pgsplit was started from; the answer is sent as JSON (a rejected file gets 422). */
  reload?(): Promise<{ result: string }>;
  /** Several instances: what this one tells its peers (GET /coordination). */
  coordination?(): unknown;
  /** The last minutes the status page charts (GET /history); 404 without it. */
  history?(): unknown;
  /** Statement statistics (GET /statements, POST /statements/reset). */
  statements?: StatementsSource;
  /** admin.auth; without a token or user/password every mutating request is refused (403). */
  auth?: AdminAuth;
}

export interface AdminServerOptions {
  /** 'admin': every endpoint; 'metrics': only /metrics and /health (admin.metrics_port). */
  role?: 'admin' | 'metrics';
  /** Concurrent connections; more are refused by the kernel-level accept + close. */
  maxConnections?: number;
  /** A client must have sent its request headers within this long, and the whole request within requestTimeoutMs. */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxBodyBytes?: number;
}

/** Read endpoints that stay open even with admin.auth.protect_reads (probes and Prometheus). */
const OPEN_READS = new Set(['/health', '/ready', '/metrics']);

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new HttpError(413, `request body too large (at most ${limit} bytes)`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.pause();
        reject(new HttpError(413, `request body too large (at most ${limit} bytes)`));
        return;
      }
      chunks.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, code: number, type: string, body: string, headers: http.OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  res.end(body);
}

const json = (res: http.ServerResponse, code: number, body: unknown, headers?: http.OutgoingHttpHeaders) =>
  send(res, code, 'application/json', JSON.stringify(body) + '\n', headers);

/** "application/json" or "application/json; charset=utf-8" (any case). */
function isJson(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase() === 'application/json';
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

export class AdminServer {
  private readonly server: http.Server;
  private readonly role: 'admin' | 'metrics';
  private readonly maxBodyBytes: number;
  private configuredHost = '';

  constructor(private readonly ctx: AdminContext, opts: AdminServerOptions = {}) {
    this.role = opts.role ?? 'admin';
    this.maxBodyBytes = opts.maxBodyBytes ?? 64 * 1024;
    const requestTimeout = opts.requestTimeoutMs ?? 10_000;
    this.server = http.createServer(
      {
        headersTimeout: Math.min(opts.headersTimeoutMs ?? 5_000, requestTimeout),
        requestTimeout,
        // How often Node checks the two timeouts above (default 30 s would let a slow client sit that long).
        connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(requestTimeout / 4))),
        keepAliveTimeout: 5_000,
      },
      (req, res) => {
        this.handle(req, res).catch((err) => {
          if (err instanceof HttpError) {
            json(res, err.status, { error: err.message }, { connection: 'close' });
            return;
          }
          send(res, 500, 'text/plain', `error: ${(err as Error).message}\n`);
        });
      },
    );
    this.server.maxConnections = opts.maxConnections ?? 100;
  }

  private get auth(): AdminAuth {
    return this.ctx.auth ?? { protect_reads: false };
  }

  /** admin.auth reloaded: the next request is checked against these credentials. */
  setAuth(auth: AdminAuth): void {
    this.ctx.auth = auth;
  }

  /** A browser page of another origin must not reach this port: an Origin header must name this server itself. */
  private originAllowed(req: http.IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return false; // includes "null" (sandboxed frames, file: pages)
    }
    const localPort = req.socket.localPort;
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    if (url.protocol !== 'http:' || port !== localPort) return false;
    const host = url.hostname.toLowerCase();
    const local = req.socket.localAddress ?? '';
    const configured = this.configuredHost.toLowerCase();
    // A wildcard bind address is no origin of ours (browsers reach http://0.0.0.0 as the local host).
    const own = [local, local.replace(/^::ffff:/, ''), `[${local}]`];
    if (configured !== '0.0.0.0' && configured !== '::') own.push(configured, `[${configured}]`);
    return LOOPBACK.has(host) || own.includes(host);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (!this.originAllowed(req)) {
      json(res, 403, { error: `requests from origin ${JSON.stringify(req.headers.origin)} are refused; the admin port is not for web pages` });
      return;
    }
    if (this.role === 'metrics') return this.metricsPort(req, res, path);
    const method = req.method ?? 'GET';
    if (method === 'GET' || method === 'HEAD') return this.read(req, res, path);
    if (method !== 'POST') {
      send(res, 405, 'text/plain', `method ${method} not allowed on ${path}\n`, { allow: 'GET, HEAD, POST' });
      return;
    }
    // Every POST mutates something: credentials, then a JSON body (a cross-site form or text/plain POST cannot send one without a preflight).
    if (!this.guard(req, res)) return;
    if (!isJson(req.headers['content-type'])) {
      json(res, 415, { error: 'POST bodies must be sent with Content-Type: application/json' });
      return;
    }
    switch (path) {
      case '/switchover':
        return this.switchover(req, res);
      case '/reload':
        return this.reload(req, res);
      case '/statements/reset':
        return this.resetStatements(req, res);
      default:
        json(res, 404, { error: `no POST endpoint ${path}; try POST /switchover, POST /reload or POST /statements/reset` });
    }
  }

  /** Mutating requests: refused without admin.auth (403), and without the right credentials (401). */
  private guard(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const check = checkCredentials(req.headers.authorization, this.auth);
    if (check === 'unconfigured') {
      json(res, 403, { error: 'mutating admin endpoints are disabled: set admin.auth.token (or admin.auth.user and admin.auth.password) in the config to enable them' });
      return false;
    }
    if (check === 'denied') {
      json(res, 401, { error: 'credentials required: Authorization: Bearer <admin.auth.token> or HTTP basic auth with admin.auth.user/password' }, { 'www-authenticate': challenges(this.auth) });
      return false;
    }
    return true;
  }

  private async read(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    if (path === '/switchover') {
      json(res, 405, { error: 'use POST /switchover with {"to": "<node name>"}' }, { allow: 'POST' });
      return;
    }
    if (path === '/statements/reset') {
      json(res, 405, { error: 'use POST /statements/reset (with Content-Type: application/json)' }, { allow: 'POST' });
      return;
    }
    if (path === '/reload') {
      json(res, 405, { error: 'use POST /reload (with Content-Type: application/json)' }, { allow: 'POST' });
      return;
    }
    const authenticated = checkCredentials(req.headers.authorization, this.auth) === 'ok';
    if (!OPEN_READS.has(path) && this.auth.protect_reads && !authenticated) {
      json(res, 401, { error: 'credentials required (admin.auth.protect_reads): Authorization: Bearer <token> or HTTP basic auth' }, { 'www-authenticate': challenges(this.auth) });
      return;
    }
    switch (path) {
      case '/metrics':
        await this.ctx.refresh?.();
        send(res, 200, this.ctx.registry.contentType, await this.ctx.registry.metrics());
        return;
      case '/health':
        send(res, 200, 'text/plain', 'ok\n');
        return;
      case '/ready': {
        const t = this.ctx.topology;
        const p = t.primary;
        // A load balancer in front of several instances sends nobody to one that may not write (see coordination).
        if (p && Date.now() >= t.writableUntil) send(res, 503, 'text/plain', 'not ready: this instance has not confirmed the cluster state within coordination.etcd.lease_ttl\n');
        else if (p) send(res, 200, 'text/plain', `ready: primary is ${p.name}\n`);
        else send(res, 503, 'text/plain', 'not ready: no primary is known\n');
        return;
      }
      case '/coordination': {
        const view = this.ctx.coordination?.();
        if (view === undefined) json(res, 404, { error: 'this instance runs alone (no coordination.etcd)' });
        else json(res, 200, view);
        return;
      }
      case '/statements':
        return this.statements(req, res);
      case '/': {
        // The status page: HTML whose script reads /status, /history and /statements, sending the same credentials.
        const page = statusPage();
        send(res, 200, 'text/html; charset=utf-8', page.body, page.headers);
        return;
      }
      case '/history':
        if (!this.ctx.history) json(res, 404, { error: 'no history is kept here' });
        else json(res, 200, this.ctx.history());
        return;
      case '/status':
        await this.ctx.refresh?.();
        send(res, 200, 'application/json', JSON.stringify(redact(this.ctx.status(), { showUsers: authenticated }), null, 2) + '\n');
        return;
      default:
        send(res, 404, 'text/plain', 'not found; try /metrics, /health, /ready, /status or /statements\n');
    }
  }

  private async metricsPort(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain', `method ${req.method} not allowed on the metrics port\n`, { allow: 'GET, HEAD' });
      return;
    }
    if (path === '/metrics') {
      await this.ctx.refresh?.();
      send(res, 200, this.ctx.registry.contentType, await this.ctx.registry.metrics());
    }
    else if (path === '/health') send(res, 200, 'text/plain', 'ok\n');
    else send(res, 404, 'text/plain', 'not found; this port serves only /metrics and /health\n');
  }

  private async switchover(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (!this.ctx.switchover) return json(res, 404, { error: 'switchover is not available' });
    let to: unknown;
    const body = await readBody(req, this.maxBodyBytes);
    try {
      to = (JSON.parse(body || '{}') as { to?: unknown } | null)?.to;
    } catch {
      return json(res, 400, { error: 'the body must be JSON like {"to": "pg2"}' });
    }
    if (typeof to !== 'string' || to === '') return json(res, 400, { error: 'missing "to": the name of the replica to promote' });
    try {
      const event = await this.ctx.switchover(to);
      json(res, 200, { ok: true, event: redact(event, { showUsers: false }) });
    } catch (err) {
      json(res, err instanceof SwitchoverRefused ? 409 : 500, { error: (err as Error).message });
    }
  }

  private async statements(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const src = this.ctx.statements;
    if (!src) return json(res, 404, { error: 'statement statistics are not available here' });
    const raw = new URL(req.url ?? '/', 'http://admin').searchParams.get('limit');
    const limit = raw === null ? DEFAULT_STATEMENT_ROWS : /^\d{1,7}$/.test(raw) ? Number(raw) : NaN;
    if (!(limit >= 1)) return json(res, 400, { error: `limit must be a whole number of rows >= 1, got ${JSON.stringify(raw)}` });
    if (!src.enabled) return json(res, 200, { enabled: false, statements: [], hint: 'statement statistics are off: set stats.enabled: true in the config and restart' });
    json(res, 200, { enabled: true, statements: await src.rows(limit) });
  }

  private async resetStatements(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    await readBody(req, this.maxBodyBytes);
    if (!this.ctx.statements) return json(res, 404, { error: 'statement statistics are not available here' });
    await this.ctx.statements.reset();
    json(res, 200, { ok: true, enabled: this.ctx.statements.enabled });
  }

  // The file to read is the one pgsplit started from, never one named in the request: the admin port must not open files.
  private async reload(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    await readBody(req, this.maxBodyBytes);
    if (!this.ctx.reload) return json(res, 404, { error: 'reload is not available (pgsplit was not started from a config file)' });
    const r = await this.ctx.reload();
    json(res, r.result === 'rejected' ? 422 : 200, r);
  }

  listen(host: string, port: number): Promise<number> {
    this.configuredHost = host;
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.removeListener('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}
