// A new client connection from accept to a running Session: TLS (SSLRequest), GSS refusal, cancel requests, auth, server connect.
import type net from 'node:net';
import type { Logger } from '../util/logger.js';
import { errors, ProxyError } from '../errors.js';
import { backendKeyData, errorResponse, negotiateProtocolVersion, readyForQuery } from '../protocol/backend-messages.js';
import { decodeStartupPacket } from '../protocol/startup.js';
import { ServerStartupError, type NodeConnectSettings } from '../backend/connect.js';
import type { NodeState, Topology } from '../topology/topology.js';
import { authenticateClient, type AuthMethod } from './auth.js';
import { authenticateConsole, CONSOLE_DATABASE, consoleParameters } from './console-login.js';
import { ClientGone, HandshakeReader, LoginTimeout } from './handshake-reader.js';
import { startClientTls, tlsRequired } from './client-tls.js';
import type { FrontendTls } from '../tls/frontend-tls.js';
import { closeSocket } from '../util/close-socket.js';
import type { CancelRegistry } from './cancel-registry.js';
import { Session } from './session.js';
import { RelaySession } from './relay-session.js';
import type { ClientSession } from './client-session.js';
import { adoptAccepted, adoptHandle, ReadSlot } from '../util/read-slot.js';
import type { ProxyStats } from './stats.js';
import type { StatementCounting } from './statement-keys.js';
import type { Classifier } from '../router/classifier.js';
import type { RouteHint } from '../router/route.js';
import { parseTagList } from '../router/variable-set.js';
import { parseDuration } from '../config/units.js';
import type { RoutingSettings, SessionContext } from './session.js';
import type { WalPositions } from '../health/wal-positions.js';
import type { Pools } from '../backend/pool.js';
import { checkout, loginParameters, lowercased, parameterStatusFrames } from './pooled-login.js';
import { openServer } from './open-server.js';
import { startupSettings } from './startup-settings.js';

/** Bounds on what one client can make the proxy hold or wait for (limits.* in the config). */
export interface ClientLimits {
  maxMessageSize: number;
  loginTimeoutMs: number;
  /** 0: off. */
  clientIdleTimeoutMs: number;
  idleTransactionTimeoutMs: number;
  maxPipeline: number;
  maxPreparedStatements: number;
  /** Bytes of a session's named prepared statements, and of those each server connection keeps. */
  maxPreparedBytes: number;
  maxSessionSettings: number;
  /** Length of the recorded SET statements' text. */
  maxSessionSettingsBytes: number;
}

export interface FrontendSettings {
  /** null: routing is off and sessions relay everything to the primary unchanged. */
  routing: RoutingSettings | null;
  authMethod: AuthMethod;
  users: ReadonlyMap<string, string>;
  /** admin.users: who may log in to the admin console (SCRAM-SHA-256). */
  adminUsers: ReadonlyMap<string, string>;
  /** Counted from accept: connections still logging in hold a place too. */
  maxClientConnections: number;
  limits: ClientLimits;
  backendConnectTimeout: number;
  /** failover.hold_timeout: how long a new connection waits for a primary while none is known. */
  holdTimeout: number;
  /** Per node name: TLS and cleartext-password settings for server connections. */
  nodeConnect: ReadonlyMap<string, NodeConnectSettings>;
  /** tls.*: null when mode is disable (SSLRequest answered 'N'). */
  clientTls: FrontendTls | null;
  /** pool.* (routing sessions only; the relay keeps a server connection per client). */
  pool: {
    mode: 'transaction' | 'session';
    /** users[].pool_mode where set. */
    userModes: ReadonlyMap<string, 'transaction' | 'session'>;
    maxPreparedStatements: number;
  };
}

/** The primary when it is known and up; waits up to `timeoutMs` for one (checking every 50 ms), else null. */
export async function waitForPrimary(topology: Topology, timeoutMs: number, abandoned: () => boolean = () => false): Promise<NodeState | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = topology.primary;
    if (p && p.up) return p;
    if (Date.now() >= deadline || abandoned()) return p && timeoutMs === 0 ? p : null;
    await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
  }
}

export interface FrontendContext {
  settings(): FrontendSettings;
  topology: Topology;
  stats: ProxyStats;
  /** Statement statistics (stats.enabled: fixed at start), or null. */
  statements: StatementCounting | null;
  cancels: CancelRegistry;
  log: Logger;
  sessions: Set<ClientSession>;
  classifier: Classifier;
  /** WAL positions for read-your-writes. */
  lsn: WalPositions;
  /** A client connected to this database; resolves once its functions are in the routing catalog. */
  noteDatabase(name: string): Promise<void>;
  /** While draining, new clients are refused. */
  draining(): boolean;
  /** Server connection pools (routing sessions). */
  pools: Pools;
  /** A client connection closed (a worker tells its coordinator, which counts max_client_connections for the instance). */
  onClientClosed?(): void;
  /** The admin console: a session for a client that logged in to database "pgsplit" (see console-login.ts). */
  console?(login: ConsoleClient): ClientSession;
}

/** A client that logged in to the admin console, handed to the console session. */
export interface ConsoleClient {
  socket: net.Socket;
  slot: ReadSlot;
  user: string;
  applicationName: string;
  onEnd(s: ClientSession): void;
}

const NO = Buffer.from('N');

// One context for every routing session of a listener (a copy per session would cost each idle client memory).
const sessionContexts = new WeakMap<FrontendContext, SessionContext>();
function sessionContext(ctx: FrontendContext): SessionContext {
  let c = sessionContexts.get(ctx);
  if (c === undefined) {
    // A reload that turns routing off leaves running sessions with the routing settings they had.
    let routing = ctx.settings().routing!;
    c = {
      ...ctx,
      routing: () => (routing = ctx.settings().routing ?? routing),
      limits: () => ctx.settings().limits,
      maxPreparedPerServer: () => ctx.settings().pool.maxPreparedStatements,
      maxPreparedBytes: () => ctx.settings().limits.maxPreparedBytes,
    };
    sessionContexts.set(ctx, c);
  }
  return c;
}
const discard = () => {};

export function acceptClient(accepted: net.Socket, ctx: FrontendContext): Promise<void> {
  return serveClient((slot) => adoptAccepted(accepted, slot), ctx);
}

/** A client connection a coordinator accepted and passed to this worker as a raw handle. */
export function acceptHandle(handle: unknown, ctx: FrontendContext): Promise<void> {
  return serveClient((slot) => adoptHandle(handle, slot), ctx);
}

async function serveClient(open: (slot: ReadSlot) => net.Socket, ctx: FrontendContext): Promise<void> {
  const slot = new ReadSlot(true);
  // After an SSLRequest answered 'S' this is the TLS socket (see startClientTls).
  let socket: net.Socket = open(slot);
  socket.on('error', () => {});
  const s0 = ctx.settings();
  // Every connection holds a place from accept until it closes, logged in or not.
  ctx.stats.clientSockets++;
  socket.once('close', () => {
    ctx.stats.clientSockets--;
    ctx.onClientClosed?.();
  });
  if (ctx.stats.clientSockets > s0.maxClientConnections) {
    ctx.stats.clientConnectionsRefused++;
    closeSocket(socket, errorResponse(errors.tooManyClients(s0.maxClientConnections)));
    return;
  }
  let reader = new HandshakeReader(socket);
  slot.handler = reader.push;
  // tls.* as it was when the client connected.
  const clientTls = s0.clientTls;
  let secured = false;
  const loginTimeout = s0.limits.loginTimeoutMs;
  const deadline = Date.now() + loginTimeout;
  // Whatever the login is waiting for (the client, a primary, a server), it ends at the deadline.
  let started = false;
  // Closed, or being closed (timed out): the login stops at its next step.
  const gone = () => socket.destroyed || socket.writableEnded;
  const timer = setTimeout(() => {
    if (started || socket.destroyed) return;
    slot.handler = discard;
    ctx.log.info({ remote: socket.remoteAddress }, 'client login timed out');
    closeSocket(socket, errorResponse(errors.loginTimeout(loginTimeout)));
  }, loginTimeout);
  timer.unref();
  let user = '';
  try {
    let params: Map<string, string> | null = null;
    while (params === null) {
      const p = decodeStartupPacket(await reader.startupPacket(deadline));
      if (p.kind === 'ssl' && clientTls && !secured) {
        ({ socket, reader } = startClientTls(socket, slot, reader, clientTls));
        secured = true;
      } else if (p.kind === 'ssl' && secured) throw errors.protocolViolation('SSLRequest on a connection that already uses TLS');
      else if (p.kind === 'ssl' || p.kind === 'gssenc') socket.write(NO);
      else if (p.kind === 'cancel') {
        ctx.cancels.cancel(p.pid, p.secret);
        clearTimeout(timer);
        reader.detach();
        slot.handler = discard;
        closeSocket(socket);
        return;
      } else if (p.kind === 'unsupported') throw errors.unsupportedProtocol(p.major, p.minor);
      else {
        if (clientTls?.mode === 'require' && !secured) throw tlsRequired();
        params = p.params;
        // Protocol options (_pq_.*) are not forwarded; a newer minor version or any option is negotiated down.
        const options = [...params.keys()].filter((k) => k.startsWith('_pq_.'));
        for (const o of options) params.delete(o);
        if (p.minor > 0 || options.length > 0) socket.write(negotiateProtocolVersion(0, options));
      }
    }
    const startupRouting = takePgsplitOptions(params);
    user = params.get('user') ?? '';
    if (user === '') throw new ProxyError('28000', 'no_user', 'no PostgreSQL user name specified in startup packet', 'FATAL');
    if (!params.has('database')) params.set('database', user);
    const replication = params.get('replication');
    if (replication !== undefined && !['false', 'off', 'no', '0'].includes(replication.toLowerCase())) {
      throw errors.featureNotSupported('a replication connection through the proxy');
    }
    if (ctx.draining()) throw errors.shuttingDown();
    const s = ctx.settings();
    const toConsole = params.get('database') === CONSOLE_DATABASE;
    const password = s.users.get(user);
    try {
      if (toConsole) await authenticateConsole(socket, reader, s.adminUsers, s.users, user, deadline);
      else await authenticateClient(socket, reader, s.authMethod, user, password, deadline);
    } catch (err) {
      if (err instanceof ProxyError && err.sqlstate === '28P01') {
        ctx.stats.authFailures++;
        ctx.log.info({ user, remote: socket.remoteAddress }, 'client authentication failed');
      }
      throw err;
    }
    const applicationName = (params.get('application_name') ?? '').slice(0, 63);
    if (toConsole) {
      // The console never opens a server connection and needs no primary: it must work when the cluster does not.
      if (!ctx.console) throw errors.featureNotSupported('the admin console');
      const session = ctx.console({
        socket, slot, user, applicationName,
        onEnd: (done) => {
          ctx.sessions.delete(done);
          ctx.cancels.unregister(done.key.pid);
        },
      });
      Object.assign(session.key, ctx.cancels.register(session));
      ctx.sessions.add(session);
      started = true;
      clearTimeout(timer);
      ctx.log.info({ user, remote: socket.remoteAddress }, 'admin console login');
      socket.write(Buffer.concat([...consoleParameters(user, applicationName, ctx.topology.primary?.serverVersion ?? null), backendKeyData(session.key.pid, session.key.secret), readyForQuery('I')]));
      session.start(reader.detach());
      return;
    }

    // During a failover there is briefly no primary: wait for one (failover.hold_timeout) rather than fail at once.
    const primary = await waitForPrimary(ctx.topology, s.holdTimeout, gone);
    if (gone()) return;
    if (!primary) {
      const seen = ctx.topology.all().map((n) => `${n.name}: ${n.up ? n.role : `down (${n.lastError ?? 'not probed yet'})`}`);
      const waited = s.holdTimeout > 0 ? ` after waiting ${s.holdTimeout} ms` : '';
      // With coordination the primary is the one published in etcd: what the probes see does not make one.
      const unconfirmed = ctx.topology.writableUntil !== Infinity && Date.now() >= ctx.topology.writableUntil;
      const why = unconfirmed ? `this instance could not confirm the cluster state in etcd (coordination)${waited}, so no primary is published to it` : `no node is known to be out of recovery${waited}`;
      throw errors.noPrimary(`${why}; as probed: ${seen.join('; ')}`);
    }
    // Every server the session uses gets the same user, database and startup parameters.
    const onEnd = (done: ClientSession) => {
      ctx.sessions.delete(done);
      ctx.cancels.unregister(done.key.pid);
      ctx.stats.clientConnections--;
    };
    const routing = s.routing;
    const limits = () => ctx.settings().limits;
    const database = params.get('database')!;
    let session: ClientSession;
    let greeting: Buffer[];
    if (routing === null) {
      // The relay forwards bytes unchanged: it keeps a server connection of its own, opened with the client's parameters.
      const { conn: server } = await openServer(ctx, primary.name, user, params);
      if (gone()) {
        server.socket.destroy();
        return;
      }
      session = new RelaySession(socket, slot, server, primary, { pid: 0, secret: 0 }, user, { ...ctx, limits }, onEnd, { database, applicationName });
      greeting = server.startupFrames;
    } else {
      // The first session of a database waits for its VOLATILE functions to be known (once; bounded by probe_timeout).
      await ctx.noteDatabase(database);
      if (gone()) return;
      const link = await checkout(ctx.pools.get(primary.name, user, database), deadline, gone);
      if (gone()) {
        link.pool?.release(link, true);
        return;
      }
      let entries;
      try {
        entries = startupSettings(params, lowercased(link.initialParameters));
      } catch (err) {
        link.pool?.release(link, true);
        throw err;
      }
      const startup = { ...startupRouting, database, poolMode: s.pool.userModes.get(user) ?? s.pool.mode, applicationName };
      const routed = new Session(socket, slot, link, entries, { pid: 0, secret: 0 }, user, sessionContext(ctx), onEnd, startup);
      let parameters: ReadonlyMap<string, string>;
      try {
        parameters = await routed.login();
      } catch (err) {
        routed.abandon();
        throw err;
      }
      if (gone()) {
        routed.abandon();
        return;
      }
      session = routed;
      greeting = parameterStatusFrames(loginParameters(parameters, Date.now() < ctx.topology.writableUntil));
    }
    ctx.stats.clientConnections++;
    ctx.stats.clientConnectionsTotal++;
    Object.assign(session.key, ctx.cancels.register(session));
    ctx.sessions.add(session);
    started = true;
    clearTimeout(timer);
    socket.write(Buffer.concat([...greeting, backendKeyData(session.key.pid, session.key.secret), readyForQuery('I')]));
    session.start(reader.detach());
  } catch (err) {
    clearTimeout(timer);
    reader.detach();
    // Nothing the client sends from now on is looked at or kept.
    slot.handler = discard;
    if (err instanceof ClientGone) {
      socket.destroy();
      return;
    }
    if (err instanceof ServerStartupError) {
      // The server's own refusal (unknown database, too many connections …), relayed as it was sent.
      ctx.log.info({ user, sqlstate: err.sqlstate, reason: err.message }, 'server refused the client connection');
      closeSocket(socket, err.frame);
      return;
    }
    const pe = err instanceof LoginTimeout ? errors.loginTimeout(loginTimeout) : err instanceof ProxyError ? err : errors.protocolViolation((err as Error).message);
    if (!(err instanceof ProxyError) && !(err instanceof LoginTimeout)) ctx.log.warn({ err: (err as Error).message }, 'client startup failed');
    else if (pe.sqlstate !== '28P01') ctx.log.info({ user, code: pe.code, reason: pe.message, detail: pe.detail }, 'client connection refused');
    closeSocket(socket, errorResponse(pe));
  }
}

/**
 * `options=-c pgsplit.route=primary` (or --pgsplit.route=…; also pgsplit.read_tags=a,b and pgsplit.max_lag=500ms)
 * is pgsplit's, not PostgreSQL's: take it out of the startup options before they are forwarded, and return what
 * it says. A value pgsplit cannot use is dropped (ignored) rather than forwarded.
 */
export function takePgsplitOptions(params: Map<string, string>): StartupRouting {
  const options = params.get('options');
  const out: StartupRouting = { hint: 'auto', readTags: null, maxLagMs: null };
  if (!options) return out;
  const kept = options.replace(/(?:-c\s*|--)pgsplit\.(\w+)=(\S*)\s*/gi, (_m, name: string, v: string) => {
    const key = name.toLowerCase();
    if (key === 'route') {
      const value = v.toLowerCase();
      if (value === 'primary' || value === 'replica' || value === 'auto') out.hint = value;
    } else if (key === 'read_tags') {
      out.readTags = parseTagList(v) ?? out.readTags;
    } else if (key === 'max_lag') {
      try {
        out.maxLagMs = parseDuration(v);
      } catch {
        /* not a duration: ignored */
      }
    }
    return '';
  }).trim();
  if (kept === '') params.delete('options');
  else params.set('options', kept);
  return out;
}

export interface StartupRouting {
  hint: RouteHint;
  /** null: the user's or the configured read_tags. */
  readTags: string[] | null;
  maxLagMs: number | null;
}
