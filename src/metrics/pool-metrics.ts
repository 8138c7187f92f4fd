// Prometheus metrics of the server connection pools and of pinned clients.
import client from 'prom-client';
import type { PoolStatus } from '../backend/pool.js';

export interface PoolMetricsSource {
  status(): PoolStatus[];
  /** Sessions that gave up waiting for a server connection (pool.max_client_wait), since start. */
  waitTimeouts(): number;
  /** Client sessions pinned to their server connection (temp tables, LISTEN, …). */
  pinnedClients(): number;
}

export function registerPoolMetrics(registry: client.Registry, source: PoolMetricsSource): void {
  const labelNames = ['node', 'user', 'database'];
  new client.Gauge({
    name: 'pgsplit_pool_server_connections',
    help: 'Pooled server connections by node, user, database and state (active: serving a client; idle: in the pool; opening).',
    labelNames: [...labelNames, 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of source.status()) {
        const l = { node: p.node, user: p.user, database: p.database };
        this.set({ ...l, state: 'active' }, p.active);
        this.set({ ...l, state: 'idle' }, p.idle);
        this.set({ ...l, state: 'opening' }, p.opening);
      }
    },
  });
  new client.Gauge({
    name: 'pgsplit_pool_waiting_clients',
    help: 'Client sessions waiting for a server connection, by pool.',
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const p of source.status()) this.set({ node: p.node, user: p.user, database: p.database }, p.waiting);
    },
  });
  new client.Gauge({
    name: 'pgsplit_pool_size',
    help: 'pool.size: the most server connections a pool (node, user, database) opens.',
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const p of source.status()) this.set({ node: p.node, user: p.user, database: p.database }, p.max);
    },
  });
  new client.Counter({
    name: 'pgsplit_pool_wait_timeouts_total',
    help: 'Statements that failed with 53300 after waiting pool.max_client_wait for a server connection.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(source.waitTimeouts());
    },
  });
  new client.Gauge({
    name: 'pgsplit_clients_pinned',
    help: 'Client sessions pinned to their server connection by state that cannot move (temp tables, advisory locks, LISTEN, WITH HOLD cursors, SQL PREPARE, SET SESSION AUTHORIZATION).',
    registers: [registry],
    collect() {
      this.set(source.pinnedClients());
    },
  });
}
