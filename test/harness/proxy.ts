// Starts pgsplit in front of a harness cluster (in-process or as a child process) with a config built for it.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { startPgsplit, type Pgsplit } from '../../src/main.js';
import { silentLogger, createLogger, type Logger } from '../../src/util/logger.js';
import type { ClusterInfo } from './cluster.js';
import { freePort } from './ports.js';
import { terminate } from './processes.js';
import { killPidsAndRemove, makeTempDir, ownTempDir, type DirKind, type ProcessDirInfo } from './temp-dir.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The admin token every harness config has (admin.auth.token) unless `adminAuth` says otherwise. */
export const TEST_ADMIN_TOKEN = 'test-admin-token';

/** The headers that authenticate a request to a harness proxy's admin port. */
export function adminAuthHeaders(token = TEST_ADMIN_TOKEN): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/**
 * YAML text of a config for this cluster; `extra` is appended verbatim (top-level keys not set here).
 * `adminAuth` is the body of admin.auth (default `token: test-admin-token`; null: no admin.auth at all);
 * `adminExtra` adds keys to the admin section (e.g. `metrics_port: 0`). `env` feeds ${VAR} references (configFor, startProxy).
 */
export function configYamlFor(cluster: Pick<ClusterInfo, 'nodes' | 'app' | 'superuser'>, o: { port?: number; adminPort?: number; adminAuth?: string | null; adminExtra?: string; listenExtra?: string; auth?: string; logLevel?: string; extra?: string; nodeExtra?: Record<string, string>; env?: Record<string, string> } = {}): string {
  const adminAuth = o.adminAuth === undefined ? `token: ${TEST_ADMIN_TOKEN}` : o.adminAuth;
  return [
    // listenExtra adds keys to the listen section, e.g. 'max_client_connections: 5' (a second listen: in extra is a YAML error).
    `listen: { host: 127.0.0.1, port: ${o.port ?? 0}${o.listenExtra ? `, ${o.listenExtra}` : ''} }`,
    `admin: { host: 127.0.0.1, port: ${o.adminPort ?? 0}${adminAuth === null ? '' : `, auth: { ${adminAuth} }`}${o.adminExtra ? `, ${o.adminExtra}` : ''} }`,
    `auth: { method: ${o.auth ?? 'scram-sha-256'} }`,
    'users:',
    `  - { name: ${cluster.app.user}, password: "${cluster.app.password}" }`,
    '  - { name: md5user, password: md5secret }',
    '  - { name: pwuser, password: pwsecret }',
    'nodes:',
    // nodeExtra adds per-node keys by name, e.g. { pg3: 'tags: [analytics], weight: 2' }.
    ...cluster.nodes.map((n) => `  - { name: ${n.name}, host: ${n.host}, port: ${n.port}${o.nodeExtra?.[n.name] ? `, ${o.nodeExtra[n.name]}` : ''} }`),
    `monitor: { user: ${cluster.superuser}, password: "", database: postgres, interval: 500ms, connect_timeout: 2s, probe_timeout: 2s }`,
    `log: { level: ${o.logLevel ?? 'warn'} }`,
    // Routing is on by default; PGSPLIT_TEST_ROUTING=0 runs the tests that do not configure it through the plain relay.
    process.env.PGSPLIT_TEST_ROUTING === '0' && !(o.extra ?? '').includes('routing:') ? 'routing: { enabled: false }' : '',
    o.extra ?? '',
  ].join('\n');
}

export function configFor(cluster: Pick<ClusterInfo, 'nodes' | 'app' | 'superuser'>, o: Parameters<typeof configYamlFor>[1] = {}): Config {
  return parseConfig(configYamlFor(cluster, o), o.env ?? {});
}

export interface RunningProxy extends Pgsplit {
  /** postgres:// URL for the app user through the proxy. */
  url: string;
  host: string;
}

/** pgsplit in this process; logs are silent unless PGSPLIT_TEST_VERBOSE is set or the test passes its own `logger`. */
export async function startProxy(cluster: Pick<ClusterInfo, 'nodes' | 'app' | 'superuser'>, o: Parameters<typeof configYamlFor>[1] = {}, run: { logger?: Logger } = {}): Promise<RunningProxy> {
  const config = configFor(cluster, o);
  const logger = run.logger ?? (process.env.PGSPLIT_TEST_VERBOSE ? createLogger('debug') : silentLogger);
  const p = await startPgsplit(config, { logger });
  const { user, password, database } = cluster.app;
  return Object.assign(p, { host: '127.0.0.1', url: `postgres://${user}:${password}@127.0.0.1:${p.listenPort}/${database}` });
}

/** A spawned pgsplit's PID is kept in proxy.json, so that it is killed on exit and a later run reaps what a crashed one left. */
const PROXY_DIR: DirKind<ProcessDirInfo> = { prefix: 'pgsplit-proxy-', infoFile: 'proxy.json', what: 'pgsplit', teardown: killPidsAndRemove };

export interface ProxyProcess {
  child: ChildProcess;
  port: number;
  adminPort: number;
  configFile: string;
  stop(): Promise<void>;
}

/** pgsplit as its own process (`node bin/pgsplit.js`, needs `npm run build`), as a user would run it. */
export async function spawnProxy(cluster: Pick<ClusterInfo, 'nodes' | 'app' | 'superuser'>, o: Parameters<typeof configYamlFor>[1] = {}): Promise<ProxyProcess> {
  const port = o.port || (await freePort());
  const adminPort = o.adminPort || (await freePort());
  const dir = makeTempDir(PROXY_DIR);
  const info: ProcessDirInfo = { dir, ownerPid: process.pid, pid: null };
  const owned = ownTempDir(PROXY_DIR, info);
  const configFile = path.join(dir, 'pgsplit.yaml');
  fs.writeFileSync(configFile, configYamlFor(cluster, { ...o, port, adminPort, logLevel: o.logLevel ?? 'info' }));
  const child = spawn(process.execPath, [...(process.env.PGSPLIT_NODE_FLAGS ? process.env.PGSPLIT_NODE_FLAGS.split(' ') : []), path.join(REPO_ROOT, 'bin/pgsplit.js'), '--config', configFile], { stdio: ['ignore', 'inherit', 'pipe'] });
  info.pid = child.pid ?? null;
  owned.save();
  // Once it is gone its PID may be reused: the exit clean-up must not kill whatever has it then.
  child.once('exit', () => {
    info.pid = null;
    owned.save();
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (process.env.PGSPLIT_TEST_VERBOSE) process.stderr.write(d);
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) {
      owned.dispose();
      throw new Error(`pgsplit exited with ${child.exitCode}: ${stderr}`);
    }
    try {
      const r = await fetch(`http://127.0.0.1:${adminPort}/ready`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      owned.dispose();
      throw new Error(`pgsplit did not become ready: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async () => {
    await terminate(child, { graceMs: 10_000 });
    owned.dispose();
  };
  return { child, port, adminPort, configFile, stop };
}
