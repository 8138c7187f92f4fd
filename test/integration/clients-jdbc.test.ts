// pgJDBC (Debian's driver, a Java source file run by the JDK) through pgsplit: targetServerType=primary finds pgsplit writable, multi-host URLs skip a host that is down, and reads and writes are routed.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { freePort } from '../harness/ports.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { run, using, proxyClient } from './helpers.js';

/** Installed by .ci/run (libpostgresql-jdbc-java). */
const PGJDBC = '/usr/share/java/postgresql.jar';
const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const replicaPorts = cluster.nodes.slice(1).map((n) => n.port);

let proxy: RunningProxy;

/** Runs the statements through pgJDBC with this URL: the first column of each result, one per line. */
async function jdbc(hosts: number[], params: string, ...sql: string[]): Promise<string[]> {
  const url = `jdbc:postgresql://${hosts.map((p) => `127.0.0.1:${p}`).join(',')}/${info.app.database}?sslmode=disable&connectTimeout=5&${params}`;
  const r = await run('java', ['-cp', PGJDBC, 'test/clients/JdbcStatements.java', url, info.app.user, info.app.password, ...sql], { timeoutMs: 60_000 });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim().split('\n');
}

describe('pgJDBC through pgsplit', () => {
  beforeAll(async () => {
    proxy = await startProxy(info, { extra: 'routing: { enabled: true, consistency: eventual }' });
    await using(proxyClient(proxy, info), (c) => c.query('CREATE TABLE IF NOT EXISTS jdbc_t (id serial PRIMARY KEY)'));
  });

  afterAll(async () => {
    await using(proxyClient(proxy, info), (c) => c.query('DROP TABLE IF EXISTS jdbc_t')).catch(() => {});
    await proxy?.close(1_000);
  });

  it('targetServerType=primary accepts pgsplit (its SHOW transaction_read_only is the primary\'s "off", not a standby\'s "on")', async () => {
    const [readOnly, wrote] = await jdbc([proxy.listenPort], 'targetServerType=primary', 'SHOW transaction_read_only', 'INSERT INTO jdbc_t DEFAULT VALUES RETURNING inet_server_port()');
    expect(readOnly).toBe('off');
    expect(Number(wrote)).toBe(primary.port);
  });

  it('a multi-host URL skips a host that is down and connects through the next', async () => {
    const down = await freePort();
    const [port] = await jdbc([down, proxy.listenPort], 'targetServerType=primary', 'INSERT INTO jdbc_t DEFAULT VALUES RETURNING inet_server_port()');
    expect(Number(port)).toBe(primary.port);
  });

  it('reads go to a replica and writes to the primary within one pgJDBC connection', async () => {
    const [read, wrote] = await jdbc([proxy.listenPort], 'targetServerType=any', 'SELECT inet_server_port()', 'INSERT INTO jdbc_t DEFAULT VALUES RETURNING inet_server_port()');
    expect(replicaPorts).toContain(Number(read));
    expect(Number(wrote)).toBe(primary.port);
  });
});
