// A worker process: serves the clients its coordinator hands it, with its share of the pools, following the coordinator's topology and config.
import type { Config } from '../config/schema.js';
import { createLogger, type Logger } from '../util/logger.js';
import { Topology } from '../topology/topology.js';
import { initParser } from '../router/parser.js';
import { Frontend } from '../compose/frontend.js';
import { RemoteWalPositions } from './remote-wal.js';
import { isMessage, type FromWorker, type ToWorker } from './messages.js';
import { ConsoleRelay } from './console-relay.js';

/** A worker waits this long for the coordinator to load a new database's functions before it lets the client in anyway. */
const DATABASE_WAIT_MS = 10_000;

function send(m: FromWorker): boolean {
  // The channel is gone only when the coordinator is: 'disconnect' below ends this worker.
  if (!process.connected) return false;
  process.send!(m);
  return true;
}

export async function runWorker(): Promise<void> {
  const start = await new Promise<Extract<ToWorker, { t: 'start' }>>((resolve) => {
    const first = (m: unknown) => {
      if (!isMessage(m) || m.t !== 'start') return;
      process.off('message', first);
      resolve(m as Extract<ToWorker, { t: 'start' }>);
    };
    process.on('message', first);
    send({ t: 'ready' });
  });
  const { index } = start;
  let config: Config = start.config;
  const log: Logger = createLogger(config.log.level).child({ worker: index });
  process.title = `pgsplit: worker ${index}`;
  // Every session has its own error path; an exception that still escapes is a bug that costs one session, not the worker.
  process.on('uncaughtException', (err) => log.error({ err: err.stack ?? String(err) }, 'uncaught exception (a bug); the worker keeps running'));
  process.on('unhandledRejection', (err) => log.error({ err: (err as Error)?.stack ?? String(err) }, 'unhandled promise rejection (a bug); the worker keeps running'));

  const topology = new Topology(config.nodes);
  topology.follow(start.topology);
  const lsn = new RemoteWalPositions(topology, send);
  const databases = new Map<string, (() => void)[]>();
  const noteDatabase = (name: string): Promise<void> =>
    new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      // A coordinator that does not answer leaves no waiter behind: the entry goes with its last waiter.
      const timer = setTimeout(() => {
        const list = databases.get(name);
        const i = list ? list.indexOf(done) : -1;
        if (i >= 0) list!.splice(i, 1);
        if (list && list.length === 0) databases.delete(name);
        resolve();
      }, DATABASE_WAIT_MS);
      const waiting = databases.get(name);
      if (waiting) {
        if (waiting.length < 10_000) waiting.push(done);
        else done();
        return;
      }
      databases.set(name, [done]);
      send({ t: 'database', name });
    });
  await initParser();
  // Closed client connections are reported in one message per turn of the event loop.
  let closed = 0;
  const clientClosed = () => {
    if (closed++ === 0) {
      setImmediate(() => {
        send({ t: 'closed', n: closed });
        closed = 0;
      });
    }
  };
  const consoleRelay = new ConsoleRelay(send, () => config);
  const frontend = new Frontend(config, {
    onClientClosed: clientClosed,
    console: consoleRelay,
    topology,
    lsn,
    noteDatabase,
    volatile: start.volatile,
    log,
    cancel: {
      owner: index,
      forward: (owner, pid, secret) => {
        frontend.stats.cancelsForwarded++;
        send({ t: 'cancel', owner, pid, secret });
      },
    },
  });

  let draining = false;
  const drain = (timeoutMs: number, why: string) => {
    if (draining) return;
    draining = true;
    log.info({ why }, 'worker draining');
    void frontend.close(timeoutMs).finally(() => setTimeout(() => process.exit(0), 20));
  };

  process.on('message', (raw: unknown, handle: unknown) => {
    if (!isMessage(raw)) return;
    const m = raw as ToWorker;
    switch (m.t) {
      case 'client':
        // A connection that arrives while draining still gets its answer (the listener refuses it properly).
        if (handle) frontend.adopt(handle);
        break;
      case 'topology':
        topology.follow(m.topology);
        break;
      case 'catalog':
        frontend.setVolatile(m.volatile);
        break;
      case 'database-done': {
        const waiting = databases.get(m.name);
        databases.delete(m.name);
        for (const w of waiting ?? []) w();
        break;
      }
      case 'lsn':
        lsn.answered(m.upTo, m.lsn);
        break;
      case 'replayed':
        lsn.replayedTo(m.node, m.lsn);
        break;
      case 'cancel':
        frontend.cancels.cancel(m.pid, m.secret);
        break;
      case 'snapshot':
        send({ t: 'snapshot', id: m.id, snapshot: frontend.snapshot(m.listing === true) });
        break;
      case 'console-reply':
        consoleRelay.answered(m.id, m.reply);
        break;
      case 'ping':
        send({ t: 'pong', id: m.id });
        break;
      case 'statements':
        send({ t: 'statements', id: m.id, statements: frontend.statements?.snapshot() ?? null });
        break;
      case 'statements-reset':
        frontend.statements?.reset();
        send({ t: 'pong', id: m.id });
        break;
      case 'reload':
        config = m.config;
        log.level = config.log.level;
        frontend.reload(config);
        break;
      case 'drain':
        drain(m.timeoutMs, 'the coordinator is stopping');
        break;
    }
  });
  // Without its coordinator a worker would serve a topology nobody updates: it finishes what runs and exits.
  process.on('disconnect', () => drain(config.shutdown.drain_timeout, 'the coordinator is gone'));
  // The coordinator forwards SIGHUP (as a config) and SIGINT (as a drain); a SIGTERM sent to this process alone recycles it.
  process.on('SIGHUP', () => {});
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => drain(config.shutdown.drain_timeout, 'SIGTERM'));

  send({ t: 'serving' });
}
