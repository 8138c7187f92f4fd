// Vitest globalSetup: starts one shared PostgreSQL replication cluster for all test files and hands its description to the workers.
import type { TestProject } from 'vitest/node';
import { findPgBinDir, startCluster, clusterInfo, type ClusterInfo } from './harness/cluster.js';
import { freePort } from './harness/ports.js';

declare module 'vitest' {
  export interface ProvidedContext {
    cluster: ClusterInfo;
  }
}

const verbose = !!process.env.PGSPLIT_TEST_VERBOSE;
const say = (line: string): void => console.log(`[pgsplit cluster] ${line}`);

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.PGSPLIT_TEST_CLUSTER === 'docker') return setupDocker(project);

  if (!findPgBinDir()) {
    throw new Error(
      'pgsplit tests need PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, postgres, psql).\n' +
        '  Debian/Ubuntu: apt-get install postgresql   (or postgresql-15)\n' +
        '  Elsewhere: install PostgreSQL >= 14 and set PGSPLIT_PG_BINDIR=/path/to/its/bin\n' +
        '  Or, with Docker available: PGSPLIT_TEST_CLUSTER=docker npm test' +
        (process.env.PGSPLIT_PG_BINDIR ? `\n  (PGSPLIT_PG_BINDIR=${process.env.PGSPLIT_PG_BINDIR} does not contain them)` : ''),
    );
  }
  const started = Date.now();
  const cluster = await startCluster({ log: verbose ? say : undefined });
  say(
    `up in ${((Date.now() - started) / 1000).toFixed(1)}s: ` +
      cluster.nodes.map((n) => `${n.name}=${n.host}:${n.port}`).join(' ') +
      ` (logs in ${cluster.dir})`,
  );
  project.provide('cluster', clusterInfo(cluster));
  return async () => {
    await cluster.stop();
  };
}

// ---------------------------------------------------------------------------------------------
// PGSPLIT_TEST_CLUSTER=docker: the same topology from the postgres:15 image. Needs a Docker engine
// (and the docker CLI for stopNode/startNode in tests). Not exercised in the default CI run.
// ---------------------------------------------------------------------------------------------

const DOCKER_IMAGE = 'postgres:15';
const DATA = '/var/lib/postgresql/data';
// Containers reach each other over the bridge network and the host arrives via the bridge gateway,
// so the 127.0.0.1 restrictions of the local cluster cannot apply here.
const DOCKER_HBA = `local all all trust
host all postgres all trust
host replication postgres all trust
host all md5user all md5
host all pwuser all password
host all all all scram-sha-256
`;
const SERVER_FLAGS = [
  'wal_level=replica', 'max_wal_senders=10', 'max_replication_slots=10', 'hot_standby=on',
  'hot_standby_feedback=on', 'wal_receiver_status_interval=1s', 'wal_keep_size=256MB', 'fsync=off',
  'shared_buffers=32MB', 'max_connections=200', 'password_encryption=scram-sha-256',
].flatMap((s) => ['-c', s]);

async function setupDocker(project: TestProject): Promise<() => Promise<void>> {
  const { GenericContainer, Network, Wait } = await import('testcontainers');
  const pg = (await import('pg')).default;
  const network = await new Network().start();
  const started: { stop(): Promise<unknown> }[] = [];
  const teardown = async (): Promise<void> => {
    await Promise.allSettled(started.map((c) => c.stop()));
    await network.stop().catch(() => {});
  };
  try {
    const initScript = `#!/bin/bash
set -e
cat > "$PGDATA/pg_hba.conf" <<'HBA'
${DOCKER_HBA}HBA
psql -v ON_ERROR_STOP=1 -U postgres <<'SQL'
CREATE ROLE app LOGIN PASSWORD 'secret';
CREATE DATABASE appdb OWNER app;
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5secret';
RESET password_encryption;
CREATE ROLE pwuser LOGIN PASSWORD 'pwsecret';
GRANT CONNECT ON DATABASE appdb TO app, md5user, pwuser;
\\connect appdb
GRANT USAGE, CREATE ON SCHEMA public TO app, md5user, pwuser;
SQL
`;
    const ports = { pg1: await freePort(), pg2: await freePort(), pg3: await freePort() };
    const primary = await new GenericContainer(DOCKER_IMAGE)
      .withNetwork(network)
      .withNetworkAliases('pg1')
      .withEnvironment({ POSTGRES_PASSWORD: 'postgres' })
      .withCopyContentToContainer([{ content: initScript, target: '/docker-entrypoint-initdb.d/10-pgsplit.sh', mode: 0o755 }])
      .withCommand(['postgres', ...SERVER_FLAGS])
      // Fixed host ports keep the address stable across `docker stop/start` in tests.
      .withExposedPorts({ container: 5432, host: ports.pg1 })
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    started.push(primary);

    const replicaScript = (name: string): string => `set -e
if [ ! -s ${DATA}/PG_VERSION ]; then
  mkdir -p ${DATA} && chown postgres ${DATA} && chmod 0700 ${DATA}
  gosu postgres pg_basebackup -h pg1 -p 5432 -U postgres -D ${DATA} -X stream -R -c fast
  echo "primary_conninfo = 'host=pg1 port=5432 user=postgres application_name=${name}'" >> ${DATA}/postgresql.auto.conf
fi
exec gosu postgres postgres -D ${DATA} ${SERVER_FLAGS.join(' ')}`;
    const replicas = await Promise.all(
      (['pg2', 'pg3'] as const).map((name) =>
        new GenericContainer(DOCKER_IMAGE)
          .withNetwork(network)
          .withNetworkAliases(name)
          .withEntrypoint(['bash', '-c'])
          .withCommand([replicaScript(name)])
          .withExposedPorts({ container: 5432, host: ports[name] })
          .withWaitStrategy(Wait.forLogMessage(/ready to accept read-only connections/))
          .start(),
      ),
    );
    started.push(...replicas);

    const host = primary.getHost();
    const client = new pg.Client({ host, port: ports.pg1, user: 'postgres', database: 'postgres' });
    await client.connect();
    try {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const r = await client.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming' AND application_name IN ('pg2','pg3')",
        );
        if (r.rows[0]?.n === 2) break;
        if (Date.now() > deadline) throw new Error('docker replicas did not start streaming within 60s');
        await new Promise((res) => setTimeout(res, 200));
      }
    } finally {
      await client.end();
    }

    const all = { pg1: primary, pg2: replicas[0]!, pg3: replicas[1]! };
    const info: ClusterInfo = {
      kind: 'docker',
      dir: '',
      binDir: findPgBinDir() ?? '',
      nodes: (['pg1', 'pg2', 'pg3'] as const).map((name) => ({ name, host, port: ports[name], dataDir: DATA })),
      superuser: 'postgres',
      app: { user: 'app', password: 'secret', database: 'appdb' },
      serverUser: null,
      ownerPid: process.pid,
      containers: Object.fromEntries(Object.entries(all).map(([n, c]) => [n, c.getId()])),
    };
    say(`docker cluster up: ${info.nodes.map((n) => `${n.name}=${n.host}:${n.port}`).join(' ')}`);
    project.provide('cluster', info);
    return teardown;
  } catch (err) {
    await teardown();
    throw err;
  }
}
