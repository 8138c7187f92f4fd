// The SQL that failover, switchover and replication upkeep run on nodes, behind one interface so their sequences can be tested without servers.
import type pg from 'pg';
import { withMonitorClient, type MonitorSettings } from '../health/monitor-client.js';
import { parseLsn } from '../topology/lsn.js';
import { parseConninfo, rewriteConninfo } from './conninfo.js';

export interface NodeAddress {
  name: string;
  host: string;
  port: number;
}

export interface NodeActions {
  /** pg_promote(), waiting up to timeoutMs; throws if the node did not leave recovery in time. */
  promote(node: NodeAddress, timeoutMs: number): Promise<void>;
  /** Points a replica's WAL receiver at `primary` under the replica's own name; false when it already was. */
  repoint(replica: NodeAddress, primary: { host: string; port: number }): Promise<boolean>;
  /** Client transactions open on the node (pgsplit's own single-statement connections not counted). */
  openTransactions(node: NodeAddress): Promise<number>;
  /** A checkpoint, then (with `readOnly`) no new writes; returns the node's last WAL position. */
  stopWrites(node: NodeAddress, readOnly: boolean): Promise<string>;
  /** Undo stopWrites' read-only setting. */
  allowWrites(node: NodeAddress): Promise<void>;
  /** How far the node has replayed (-1 when it reports nothing). */
  replayLsn(node: NodeAddress): Promise<number>;
  /** Ends the node's client sessions other than pgsplit's idle ones (an old primary after a switchover). */
  terminateClients(node: NodeAddress): Promise<void>;
  /** Makes synchronous_standby_names (and, when given, synchronous_commit) what they should be; true if it changed them. */
  applySyncStandbys(primary: NodeAddress, names: string, synchronousCommit: string | null): Promise<boolean>;
}

const literal = (v: string) => `'${v.replace(/'/g, "''")}'`;

/** NodeActions over short-lived superuser connections named pgsplit-failover. */
export class SqlNodeActions implements NodeActions {
  constructor(private readonly settings: () => MonitorSettings) {}

  private on<T>(n: { host: string; port: number }, timeoutMs: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    return withMonitorClient(n, this.settings(), 'pgsplit-failover', timeoutMs, fn);
  }

  async promote(node: NodeAddress, timeoutMs: number): Promise<void> {
    const ok = await this.on(node, timeoutMs + 5000, async (c) => {
      const r = await c.query('SELECT pg_promote(wait => true, wait_seconds => $1) AS ok', [Math.max(1, Math.round(timeoutMs / 1000))]);
      return r.rows[0]?.ok === true;
    });
    if (!ok) throw new Error(`pg_promote() on ${node.name} did not finish within ${timeoutMs} ms`);
  }

  repoint(replica: NodeAddress, primary: { host: string; port: number }): Promise<boolean> {
    return this.on(replica, 10_000, async (c) => {
      const cur = (await c.query('SHOW primary_conninfo')).rows[0]?.primary_conninfo ?? '';
      const want = { host: primary.host, port: String(primary.port), application_name: replica.name };
      const have = parseConninfo(cur);
      // An equal string still restarts the WAL receiver: change nothing unless something differs.
      if (Object.entries(want).every(([k, v]) => have.get(k) === v)) return false;
      await c.query(`ALTER SYSTEM SET primary_conninfo = ${literal(rewriteConninfo(cur, want))}`);
      await c.query('SELECT pg_reload_conf()');
      return true;
    });
  }

  openTransactions(node: NodeAddress): Promise<number> {
    return this.on(node, 5000, async (c) =>
      // pgsplit's own connections (pgsplit-*) only run single autocommit statements, so only an active one whose
      // transaction began with its statement is left out: a name alone (any client can claim it) never hides a transaction.
      Number((await c.query("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND (state IN ('idle in transaction', 'idle in transaction (aborted)') OR (state = 'active' AND (application_name NOT LIKE 'pgsplit-%' OR xact_start < query_start)))")).rows[0].n),
    );
  }

  stopWrites(node: NodeAddress, readOnly: boolean): Promise<string> {
    return this.on(node, 30_000, async (c) => {
      await c.query('CHECKPOINT');
      if (readOnly) {
        await c.query("ALTER SYSTEM SET default_transaction_read_only = 'on'");
        await c.query('SELECT pg_reload_conf()');
      }
      return (await c.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn as string;
    });
  }

  allowWrites(node: NodeAddress): Promise<void> {
    return this.on(node, 5000, async (c) => {
      await c.query('ALTER SYSTEM RESET default_transaction_read_only');
      await c.query('SELECT pg_reload_conf()');
    });
  }

  replayLsn(node: NodeAddress): Promise<number> {
    return this.on(node, 5000, async (c) => parseLsn((await c.query('SELECT pg_last_wal_replay_lsn()::text AS lsn')).rows[0].lsn) ?? -1);
  }

  terminateClients(node: NodeAddress): Promise<void> {
    return this.on(node, 5000, async (c) => {
      await c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND (application_name NOT LIKE 'pgsplit-%' OR state <> 'idle')");
    });
  }

  applySyncStandbys(primary: NodeAddress, names: string, synchronousCommit: string | null): Promise<boolean> {
    return this.on(primary, 10_000, async (c) => {
      const cur = (await c.query("SELECT current_setting('synchronous_standby_names') AS names, current_setting('synchronous_commit') AS commit")).rows[0];
      if (cur.names === names && (synchronousCommit === null || cur.commit === synchronousCommit)) return false;
      await c.query(`ALTER SYSTEM SET synchronous_standby_names = ${literal(names)}`);
      if (synchronousCommit !== null) await c.query(`ALTER SYSTEM SET synchronous_commit = ${literal(synchronousCommit)}`);
      await c.query('SELECT pg_reload_conf()');
      return true;
    });
  }
}
