// Restarts the bench cluster's nodes with a server setting on the command line (max_connections = 100 for the 1,000-client case).
import type { Cluster } from '../../test/harness/cluster.js';
import { sleep } from './proc.js';

async function psqlValue(cluster: Cluster, port: number, sql: string): Promise<string | null> {
  const r = await cluster.runAsServerUser('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-U', cluster.superuser, '-d', 'postgres', '-c', sql], { timeoutMs: 15_000, env: { PGSSLMODE: 'disable' } });
  return r.code === 0 ? r.stdout.trim() : null;
}

/**
 * Restarts every node with `-c name=value` (pg_ctl restart -o), the primary first: a hot standby must keep
 * max_connections and friends at least as high as its primary's, so lowering goes primary → replicas.
 * Waits until the replicas stream again and every node reports the new value. Anything connected to the
 * nodes (pgsplit, poolers) must be stopped first, or it would see a primary go away.
 */
export async function restartWithSetting(cluster: Cluster, name: string, value: string): Promise<void> {
  const [primary, ...replicas] = cluster.nodes;
  const restart = async (n: (typeof cluster.nodes)[number]): Promise<void> => {
    const log = `${cluster.dir}/${n.name}.log`;
    const r = await cluster.runAsServerUser('pg_ctl', ['restart', '-D', n.dataDir, '-m', 'fast', '-w', '-t', '60', '-l', log, '-o', `-c ${name}=${value}`], { timeoutMs: 90_000 });
    if (r.code !== 0) throw new Error(`pg_ctl restart ${n.name} with ${name}=${value} failed (code ${r.code}): ${(r.stderr || r.stdout).trim()}`);
  };
  // Replicas streaming and replayed up to `lsn` (when given).
  const caughtUp = async (what: string, lsn: string | null): Promise<void> => {
    const deadline = Date.now() + 60_000;
    const sql = `SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'${lsn ? ` AND replay_lsn >= '${lsn}'` : ''}`;
    for (;;) {
      const n = Number(await psqlValue(cluster, primary!.port, sql));
      if (n >= replicas.length) return;
      if (Date.now() > deadline) throw new Error(`${what}: only ${n} of ${replicas.length} replicas stream${lsn ? ` and replayed ${lsn}` : ''} after 60s`);
      await sleep(200);
    }
  };
  await restart(primary!);
  // The primary logs its new settings in the WAL at startup; a standby that has not replayed that record still
  // compares itself with the old value and refuses to start with a lower one.
  const lsn = await psqlValue(cluster, primary!.port, 'SELECT pg_current_wal_lsn()');
  await caughtUp(`after restarting ${primary!.name}`, lsn);
  for (const n of replicas) await restart(n);
  await caughtUp('after restarting the replicas', null);
  for (const n of cluster.nodes) {
    const v = await psqlValue(cluster, n.port, `SHOW ${name}`);
    if (v !== value) throw new Error(`${n.name} reports ${name} = ${v ?? '(no answer)'} after the restart, not ${value}`);
  }
}
