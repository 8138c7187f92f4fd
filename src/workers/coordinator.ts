// The coordinator of a multi-worker pgsplit: it decides (monitor, failover, LSN polls, admin) and forks, feeds and restarts the workers that serve clients.
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import { errors } from '../errors.js';
import { errorResponse } from '../protocol/backend-messages.js';
import { closeSocket } from '../util/close-socket.js';
import client from 'prom-client';
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/logger.js';
import type { Topology } from '../topology/topology.js';
import { Control } from '../compose/control.js';
import { startAdmin, type AdminPlane } from '../compose/admin.js';
import { statusDocument } from '../compose/status.js';
import { Reloader, type ReloadCounts, type ReloadResult } from '../compose/reload.js';
import { workerConfig } from './shares.js';
import { isMessage, type FromWorker, type ToWorker } from './messages.js';
import { foldSnapshots, mergeListings, retiredPart, sumSnapshots, type FrontendSnapshot, type FrontendTotals, type SessionListing } from './frontend-snapshot.js';
import { consoleDeps, localConsole } from '../compose/console.js';
import type { ConsoleBackend } from '../console/console-session.js';
import { consoleError } from '../console/reply.js';
import { mergeStatements, type StatementsSnapshot } from '../stats/statement-stats.js';
import type { StatementsSource } from '../stats/statements-source.js';

/** A worker that does not answer a snapshot or ping within this long is left out (its last snapshot stands in). */
const ANSWER_MS = 1000;
/** A crashed worker is restarted after this long, doubled while it keeps crashing within a minute (at most 10 s). */
const RESTART_MIN_MS = 200;
const RESTART_MAX_MS = 10_000;
/** Read-your-writes tickets a worker may have waiting for an answer; older ones are dropped (a later answer covers them). */
const MAX_PENDING_TICKETS = 4096;
const STARTUP_MS = 30_000;
/** Every worker is pinged this often; one that misses HUNG_AFTER pings in a row (about 10 s) is killed and restarted. */
const HEARTBEAT_MS = 2000;
const HUNG_AFTER = 5;

interface Slot {
  index: number;
  worker: Worker | null;
  pid: number | null;
  startedAt: number;
  restarts: number;
  restartDelay: number;
  /** Ready to take clients. */
  serving: boolean;
  /** Client connections handed to it and not yet reported closed. */
  clients: number;
  last: FrontendSnapshot | null;
  /** Heartbeats in a row it did not answer; a worker that stops answering gets no new clients and is replaced. */
  missed: number;
  /** Worker ticket k was taken after coordinator ticket t: an answer covering t covers k. */
  tickets: { k: number; t: number }[];
  /** The config its start message carried: a reload while it was starting may have reached it before it listened. */
  startedWith: Config | null;
}

export interface Coordinator {
  listenPort: number;
  adminPort: number | null;
  metricsPort: number | null;
  topology: Topology;
  workerPids(): number[];
  /** Every worker's statement statistics merged (GET /statements; the admin console's SHOW STATEMENTS and RESET STATS). */
  statements: StatementsSource;
  /** As Pgsplit.reload / reloadConfig: the coordinator plans, applies its half and sends the config to every worker. */
  reload(next: Config): Promise<ReloadResult>;
  reloadConfig(file?: string): Promise<ReloadResult>;
  reloads: ReloadCounts;
  config(): Config;
  close(drainTimeoutMs?: number): Promise<void>;
}

export async function startCoordinator(initial: Config, count: number, log: Logger, opts: { configFile?: string } = {}): Promise<Coordinator> {
  let config = initial;
  const startedAt = Date.now();
  process.title = 'pgsplit: coordinator';
  const slots: Slot[] = Array.from({ length: count }, (_, index) => ({ index, worker: null, pid: null, startedAt: 0, restarts: 0, restartDelay: RESTART_MIN_MS, serving: false, clients: 0, missed: 0, last: null, tickets: [], startedWith: null }));
  /** Connections refused here because listen.max_client_connections was reached (added to the workers' counters). */
  let refused = 0;
  let retired: FrontendSnapshot[] = [];
  let stopping = false;
  let nextId = 1;
  const waiting = new Map<number, (m: FromWorker | null) => void>();
  // Until the admin half exists (after the listener), a console command is told pgsplit is starting.
  let consoleBackend: ConsoleBackend = { run: async () => consoleError('57P03', 'pgsplit is starting; try again in a moment') };
  const live = () => slots.filter((s): s is Slot & { worker: Worker } => s.worker !== null && s.serving);
  const sendTo = (s: Slot, m: ToWorker) => {
    if (s.worker?.isConnected()) s.worker.send(m);
  };
  const broadcast = (m: ToWorker) => {
    for (const s of slots) if (s.serving) sendTo(s, m);
  };
  /** Ask one worker; its answer, or null after ANSWER_MS. */
  const ask = (s: Slot, make: (id: number) => ToWorker) =>
    new Promise<FromWorker | null>((resolve) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve(null);
      }, ANSWER_MS);
      waiting.set(id, (m) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(m);
      });
      sendTo(s, make(id));
    });
  /** Ask every serving worker; the answers (null for none) come back in slot order. */
  const askAll = (make: (id: number) => ToWorker): Promise<(FromWorker | null)[]> => Promise.all(live().map((s) => ask(s, make)));

  // Every process that serves clients holds new writes before a switchover goes on (IPC is in order: a pong follows the pause).
  const barrier = async () => {
    const answers = await askAll((id) => ({ t: 'ping', id }));
    const missing = answers.filter((a) => a === null).length;
    if (missing > 0) log.warn({ workers: missing }, 'switchover: some workers did not confirm that they hold writes');
  };
  const control = new Control(config, log, { writesPaused: barrier });
  const { topology, lsn } = control;

  // The workers follow the coordinator's topology: every change goes out whole, at most once per turn of the event loop.
  let feedScheduled = false;
  const feed = () => broadcast({ t: 'topology', topology: topology.snapshot() });
  const scheduleFeed = () => {
    if (feedScheduled) return;
    feedScheduled = true;
    setImmediate(() => {
      feedScheduled = false;
      feed();
    });
  };
  topology.on('change', scheduleFeed);
  topology.on('resume', scheduleFeed);
  // A pause goes out at once: the barrier's pings must follow it.
  topology.on('pause', feed);
  control.onCatalog((volatile) => broadcast({ t: 'catalog', volatile: [...volatile] }));
  lsn.onAnswer = (upTo, answer) => {
    for (const s of slots) {
      let k = -1;
      while (s.tickets.length > 0 && s.tickets[0].t <= upTo) k = s.tickets.shift()!.k;
      if (k >= 0) sendTo(s, { t: 'lsn', upTo: k, lsn: answer });
    }
  };
  lsn.onReplayed = (node, at) => broadcast({ t: 'replayed', node, lsn: at });

  let startupFailed: ((err: Error) => void) | null = null;
  let listenPort = 0;

  const onMessage = (s: Slot, raw: unknown) => {
    if (!isMessage(raw)) return;
    const m = raw as FromWorker;
    switch (m.t) {
      case 'ready':
        s.startedWith = config;
        sendTo(s, { t: 'start', index: s.index, count, config: workerConfig(config, s.index, count), topology: topology.snapshot(), volatile: [...control.volatile] });
        break;
      case 'serving':
        s.serving = true;
        if (s.startedWith !== config) sendTo(s, { t: 'reload', config: workerConfig(config, s.index, count) });
        // It may have missed changes between its start message and now.
        sendTo(s, { t: 'topology', topology: topology.snapshot() });
        break;
      case 'closed':
        s.clients = Math.max(0, s.clients - m.n);
        break;
      case 'ticket':
        s.tickets.push({ k: m.k, t: lsn.ticket() });
        if (s.tickets.length > MAX_PENDING_TICKETS) s.tickets.shift();
        break;
      case 'want': {
        const nodes = m.nodes.map((n) => topology.node(n)).filter((n) => n !== undefined);
        lsn.want(m.lsn, nodes);
        break;
      }
      case 'cancel': {
        const owner = slots[m.owner];
        if (owner) sendTo(owner, { t: 'cancel', pid: m.pid, secret: m.secret });
        break;
      }
      case 'database':
        void control.noteDatabase(m.name).finally(() => sendTo(s, { t: 'database-done', name: m.name }));
        break;
      case 'snapshot': {
        // A listing answers one console command; it is not kept (nor folded into a retired worker's counters).
        const { listing: _, ...counters } = m.snapshot;
        s.last = counters;
        waiting.get(m.id)?.(m);
        break;
      }
      case 'console':
        void consoleBackend.run(m.command).then((reply) => sendTo(s, { t: 'console-reply', id: m.id, reply }));
        break;
      case 'pong':
      case 'statements':
        waiting.get(m.id)?.(m);
        break;
    }
  };

  const fork = (s: Slot) => {
    const w = cluster.fork({ PGSPLIT_WORKER_INDEX: String(s.index) });
    s.worker = w;
    s.pid = w.process.pid ?? null;
    s.startedAt = Date.now();
    s.serving = false;
    s.clients = 0;
    s.missed = 0;
    s.tickets = [];
    w.on('message', (m) => onMessage(s, m));
    w.on('exit', (code, signal) => {
      if (s.worker !== w) return;
      if (s.last) retired.push(retiredPart(s.last));
      // Bounded: many restarts fold into one snapshot of counters.
      if (retired.length > 16) retired = [foldSnapshots(retired)];
      s.worker = null;
      s.serving = false;
      s.clients = 0;
      s.last = null;
      if (stopping) return;
      if (startupFailed) {
        startupFailed(new Error(`worker ${s.index} exited during startup (${signal ?? `code ${code}`}); see its log above`));
        return;
      }
      const quick = Date.now() - s.startedAt < 60_000;
      s.restartDelay = quick ? Math.min(RESTART_MAX_MS, s.restartDelay * 2) : RESTART_MIN_MS;
      log.error({ worker: s.index, pid: s.pid, code, signal, restart_in_ms: s.restartDelay }, 'worker exited; its clients lost their connections; restarting it');
      setTimeout(() => {
        if (stopping) return;
        s.restarts++;
        fork(s);
      }, s.restartDelay).unref();
    });
  };

  // The coordinator accepts every client and hands it to the worker with the fewest, so that
  // listen.max_client_connections holds for the instance exactly (split shares would refuse clients below it
  // whenever the workers are unevenly loaded) and a restarted worker is filled first.
  let turn = 0;
  const onConnection = (socket: net.Socket) => {
    socket.on('error', () => {});
    // A worker that missed a heartbeat gets no new clients while others answer.
    const all = live();
    const answering = all.filter((s) => s.missed === 0);
    const open = answering.length > 0 ? answering : all;
    const max = config.listen.max_client_connections;
    let total = 0;
    for (const s of open) total += s.clients;
    if (stopping || open.length === 0) {
      closeSocket(socket, errorResponse(stopping ? errors.shuttingDown() : errors.noWorker()));
      return;
    }
    if (total >= max) {
      refused++;
      closeSocket(socket, errorResponse(errors.tooManyClients(max)));
      return;
    }
    let best = open[turn++ % open.length]!;
    for (const s of open) if (s.clients < best.clients) best = s;
    const handle = (socket as unknown as { _handle: unknown })._handle;
    best.clients++;
    best.worker.send({ t: 'client' } satisfies ToWorker, handle as net.Socket, (err) => {
      // The worker holds its own descriptor now; this one is closed (without a FIN: the connection stays open).
      socket.destroy();
      if (err) best.clients = Math.max(0, best.clients - 1);
    });
  };
  const server = net.createServer({ pauseOnConnect: true, noDelay: true }, onConnection);
  server.on('error', (err) => log.error({ err: err.message }, 'listener error'));

  await control.start();
  // Workers are this same program (bin/pgsplit.js with the same arguments); cluster tells them apart.
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`workers did not start within ${STARTUP_MS / 1000}s`)), STARTUP_MS);
      startupFailed = (err) => {
        clearTimeout(timer);
        reject(err);
      };
      const check = setInterval(() => {
        if (slots.every((s) => s.serving)) {
          clearInterval(check);
          clearTimeout(timer);
          resolve();
        }
      }, 10);
      for (const s of slots) fork(s);
    });
    listenPort = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: config.listen.host, port: config.listen.port }, () => {
        server.removeListener('error', reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    }).catch((err: Error) => {
      throw new Error(`cannot listen on ${config.listen.host}:${config.listen.port}: ${err.message}`);
    });
  } catch (err) {
    stopping = true;
    for (const s of slots) s.worker?.kill('SIGKILL');
    control.stop();
    throw err;
  } finally {
    startupFailed = null;
  }

  // A worker whose event loop is stuck (a bug, a runaway statement) answers nothing and would hold its clients
  // for ever: after HUNG_AFTER missed heartbeats it is killed, and restarted like a crashed one.
  const heartbeat = setInterval(() => {
    for (const s of live()) {
      void ask(s, (id) => ({ t: 'ping', id })).then((answer) => {
        if (s.worker === null || stopping) return;
        s.missed = answer === null ? s.missed + 1 : 0;
        if (s.missed === HUNG_AFTER) {
          log.error({ worker: s.index, pid: s.pid, missed_heartbeats: s.missed }, 'worker does not answer; killing it (it will be restarted)');
          s.worker.process.kill('SIGKILL');
        }
      });
    }
  }, HEARTBEAT_MS);
  heartbeat.unref();

  let totals: FrontendTotals = sumSnapshots([]);
  let refreshing: Promise<void> | null = null;
  const refresh = (): Promise<void> =>
    (refreshing ??= askAll((id) => ({ t: 'snapshot', id }))
      .then(() => {
        totals = sumSnapshots([...slots.flatMap((s) => (s.worker && s.last ? [s.last] : [])), ...retired]);
        totals.stats.clientConnectionsRefused += refused;
      })
      .finally(() => {
        refreshing = null;
      }));
  await refresh();

  const workersStatus = () =>
    slots.map((s) => ({
      index: s.index,
      pid: s.worker ? s.pid : null,
      running: s.worker !== null,
      serving: s.serving,
      client_sockets: s.clients,
      started_at: s.worker ? new Date(s.startedAt).toISOString() : null,
      restarts: s.restarts,
      missed_heartbeats: s.missed,
      client_connections: s.worker && s.last ? s.last.stats.counters.clientConnections : 0,
    }));
  const extraMetrics = (registry: client.Registry) => {
    new client.Gauge({
      name: 'pgsplit_workers',
      help: 'Worker processes (workers: N): serving clients now, and configured.',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        this.set({ state: 'serving' }, live().length);
        this.set({ state: 'configured' }, count);
      },
    });
    new client.Counter({
      name: 'pgsplit_worker_restarts_total',
      help: 'Worker processes restarted after they exited unexpectedly.',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(slots.reduce((n, s) => n + s.restarts, 0));
      },
    });
  };
  // Each worker keeps its own table (nothing crosses IPC per statement); they are asked and added up on demand. A
  // worker that does not answer within ANSWER_MS is left out of that answer; one that exited took its table with it.
  const statements: StatementsSource = {
    enabled: initial.stats.enabled,
    async rows(limit) {
      if (!initial.stats.enabled) return [];
      const answers = await askAll((id) => ({ t: 'statements', id }));
      const tables: StatementsSnapshot[] = [];
      for (const a of answers) if (a?.t === 'statements' && a.statements !== null) tables.push(a.statements);
      return mergeStatements(tables, limit);
    },
    async reset() {
      if (initial.stats.enabled) await askAll((id) => ({ t: 'statements-reset', id }));
    },
  };
  // Console sessions live in the workers; their commands run here, where Control is (see console-relay.ts).
  const listing = async (): Promise<SessionListing> => {
    const serving = live();
    const answers = await Promise.all(serving.map((s) => ask(s, (id) => ({ t: 'snapshot', id, listing: true }))));
    const parts = answers.flatMap((a, i) => (a?.t === 'snapshot' && a.snapshot.listing ? [{ worker: serving[i]!.index, listing: a.snapshot.listing }] : []));
    return mergeListings(parts);
  };
  let admin: AdminPlane | null = null;
  const reloader = new Reloader({
    current: () => config,
    runtime: () => ({ primary: topology.primary?.name ?? null, workers: count }),
    async apply(next) {
      control.reload(next);
      config = next;
      admin?.setAuth(next.admin.auth);
      // The new topology first (IPC is in order): a worker that drains a removed node's pools must not find it still listed.
      feed();
      for (const s of slots) sendTo(s, { t: 'reload', config: workerConfig(next, s.index, count) });
      // A pong follows the reload it was sent after: every worker that answers runs the new config.
      const answers = await askAll((id) => ({ t: 'ping', id }));
      const confirmed = answers.filter((a) => a !== null).length;
      if (confirmed < answers.length) log.warn({ workers: answers.length - confirmed }, 'config reload: some workers did not confirm (they apply it when they answer again, or get it when restarted)');
      return { workers: { confirmed, serving: answers.length } };
    },
  }, log, opts.configFile ?? null);
  consoleBackend = localConsole(consoleDeps({
    control,
    log,
    gather: async () => {
      await refresh();
      return { status: statusDocument(config, control, totals, startedAt, { workers: workersStatus() }), totals };
    },
    listing,
    reload: () => reloader.reloadConfig(),
    statements,
  }));
  try {
    admin = await startAdmin({
      config: () => config,
      control,
      totals: () => totals,
      refresh,
      extraMetrics,
      reloader,
      statements,
      status: () => statusDocument(config, control, totals, startedAt, { workers: workersStatus() }),
    }, log);
  } catch (err) {
    stopping = true;
    for (const s of slots) s.worker?.kill('SIGKILL');
    control.stop();
    throw err;
  }
  log.info({ listen: `${config.listen.host}:${listenPort}`, workers: count, admin: admin.adminPort ? `${config.admin.host}:${admin.adminPort}` : null, primary: topology.primary?.name ?? null }, 'pgsplit listening');

  return {
    listenPort,
    adminPort: admin.adminPort,
    metricsPort: admin.metricsPort,
    topology,
    workerPids: () => slots.flatMap((s) => (s.worker && s.pid !== null ? [s.pid] : [])),
    statements,
    reload: (next) => reloader.reload(next),
    reloadConfig: (file) => reloader.reloadConfig(file),
    reloads: reloader.counts,
    config: () => config,
    async close(drainTimeoutMs = config.shutdown.drain_timeout): Promise<void> {
      stopping = true;
      clearInterval(heartbeat);
      server.close();
      const exits = slots.filter((s) => s.worker).map((s) => new Promise<void>((resolve) => {
        const w = s.worker!;
        if (w.isDead()) return resolve();
        w.once('exit', () => resolve());
        sendTo(s, { t: 'drain', timeoutMs: drainTimeoutMs });
      }));
      const deadline = setTimeout(() => {
        for (const s of slots) s.worker?.process.kill('SIGKILL');
      }, drainTimeoutMs + 5000);
      await Promise.all(exits);
      clearTimeout(deadline);
      control.stop();
      await admin?.close();
    },
  };
}
