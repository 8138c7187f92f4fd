// `npm run demo`: starts a local primary + 2 streaming replicas and pgsplit in front of them, prints how to connect, runs until Ctrl-C.
import { clusterInfo, findPgBinDir, startCluster, type Cluster } from '../test/harness/cluster.js';
import { TEST_ADMIN_TOKEN, configFor } from '../test/harness/proxy.js';
import { startPgsplit, type Pgsplit } from '../src/main.js';
import { onShutdownSignal } from '../test/harness/cleanup.js';
import { preferredPort } from '../test/harness/ports.js';
import { guardDir } from './lib/orphan-reaper.js';
import { prettyLogger } from './lib/pretty-log.js';
import { which } from './lib/proc.js';

const say = (s = ''): void => void process.stdout.write(`${s}\n`);

function missingPostgres(): never {
  say('pgsplit demo: the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, postgres, psql) were not found.');
  if (process.env.PGSPLIT_PG_BINDIR) say(`  PGSPLIT_PG_BINDIR=${process.env.PGSPLIT_PG_BINDIR} does not contain them.`);
  say('');
  say('Install them, for example:');
  say('  Debian/Ubuntu:  sudo apt-get install postgresql');
  say('  Fedora/RHEL:    sudo dnf install postgresql-server');
  say('  macOS:          brew install postgresql');
  say('or point pgsplit at an existing installation:');
  say('  PGSPLIT_PG_BINDIR=/usr/lib/postgresql/16/bin npm run demo');
  process.exit(1);
}

async function main(): Promise<void> {
  if (!findPgBinDir()) missingPostgres();

  let cluster: Cluster | null = null;
  let starting: Promise<Cluster> | null = null;
  let proxy: Pgsplit | null = null;
  let shuttingDown = false;
  const log = prettyLogger('info');

  const shutdown = async (why: string, code: number): Promise<never> => {
    if (!shuttingDown) {
      shuttingDown = true;
      say(`\n${why}: stopping pgsplit and the cluster...`);
      // The cluster is going away under the monitor; its "node down" lines would only be noise now.
      log.level = 'warn';
      try {
        await proxy?.close(2_000);
      } catch (err) {
        say(`  pgsplit close: ${(err as Error).message}`);
      }
      // A signal during startup: let startCluster finish (or fail and clean up after itself) first.
      cluster ??= starting ? await starting.catch(() => null) : null;
      await cluster?.stop();
      say('done: servers stopped, temp directory removed.');
      process.exit(code);
    }
    return new Promise<never>(() => {});
  };
  onShutdownSignal((sig) => void shutdown(sig, 0));

  try {
    say('pgsplit demo: starting a primary and two streaming replicas (this takes a few seconds)...');
    starting = startCluster({ log: (l) => say(`  [cluster] ${l}`), signalHandlers: false });
    cluster = await starting;
    // Under tsx a Ctrl-C the script does not acknowledge within ~60 ms (a loaded machine) gets it SIGKILLed half-way
    // through shutdown(): the watchdog then stops the servers and removes the directory.
    guardDir(cluster.dir);
    if (shuttingDown) return;
    const info = clusterInfo(cluster);
    const port = await preferredPort(6432);
    const adminPort = await preferredPort(9930);
    // startPgsplit directly rather than the test harness's startProxy: the latter silences the logger.
    proxy = await startPgsplit(configFor(info, { port, adminPort, logLevel: 'info' }), { logger: log });
    if (shuttingDown) return;

    const { user, password, database } = info.app;
    const dsn = `postgres://${user}:${password}@127.0.0.1:${proxy.listenPort}/${database}`;
    const admin = `http://127.0.0.1:${proxy.adminPort}`;
    const psql = which('psql') ? 'psql' : cluster.bin('psql');
    const pgbench = which('pgbench') ? 'pgbench' : cluster.bin('pgbench');
    const line = '-'.repeat(78);
    say('');
    say(line);
    say(`pgsplit is listening on 127.0.0.1:${proxy.listenPort} (primary: ${proxy.topology.primary?.name ?? 'none yet'})`);
    say('');
    say('Connection string:');
    say(`  ${dsn}`);
    say('');
    say('psql:');
    say(`  ${psql} "${dsn}"`);
    say('pgbench (initialize once, then run; -M simple | extended | prepared):');
    say(`  ${pgbench} -i "${dsn}"`);
    say(`  ${pgbench} -S -M prepared -c 8 -j 2 -T 10 "${dsn}"`);
    say('Where does a statement run? Reads go to a replica, writes to the primary:');
    say(`  ${psql} "${dsn}" -c 'SELECT inet_server_port()' -c '/* pgsplit:primary */ SELECT inet_server_port()'`);
    say('Planned switchover, then kill the new primary and watch pgsplit fail over (GET /status):');
    say(`  PGSPLIT_ADMIN_TOKEN=${TEST_ADMIN_TOKEN} node bin/pgsplit.js switchover --to pg2 --admin 127.0.0.1:${proxy.adminPort}`);
    say(`  (or: curl -H 'Authorization: Bearer ${TEST_ADMIN_TOKEN}' -H 'Content-Type: application/json' -d '{"to":"pg2"}' ${admin}/switchover)`);
    say('');
    say('Admin:');
    for (const p of ['/metrics', '/status', '/ready', '/health']) say(`  ${admin}${p}`);
    say('');
    say('Nodes (direct, bypassing pgsplit; superuser "postgres" is trusted, "app" uses SCRAM):');
    for (const n of info.nodes) {
      const role = n.name === proxy.topology.primary?.name ? 'primary' : 'replica';
      say(`  ${n.name}  ${role.padEnd(7)}  ${n.host}:${n.port}   ${psql} -h ${n.host} -p ${n.port} -U postgres`);
    }
    say(`Data directory: ${info.dir}`);
    say('');
    say('Press Ctrl-C to stop pgsplit and the cluster and remove everything.');
    say(line);
    await new Promise<never>(() => {});
  } catch (err) {
    say(`\npgsplit demo failed: ${(err as Error).stack ?? String(err)}`);
    await shutdown('error', 1);
  }
}

void main();
