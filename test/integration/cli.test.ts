// The pgsplit command as a user runs it: a bad config is refused before listening, naming the key; a good one serves.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import YAML from 'yaml';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { REPO_ROOT, spawnProxy } from '../harness/proxy.js';

const run = promisify(execFile);
const bin = path.join(REPO_ROOT, 'bin/pgsplit.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-cli-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function pgsplit(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, timeout: 20_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('pgsplit command line: help, version, check-config', () => {
  it('--help, -h and help list every command and the options, on stdout with exit 0', async () => {
    const outputs: string[] = [];
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = await pgsplit(args);
      expect(r.code, args[0]).toBe(0);
      expect(r.stderr).toBe('');
      outputs.push(r.stdout);
    }
    expect(new Set(outputs).size).toBe(1);
    for (const word of ['check-config', 'route', 'switchover', 'help', '--config FILE', '--version']) expect(outputs[0], word).toContain(word);
    const one = await pgsplit(['help', 'switchover']);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^usage: pgsplit switchover --to NODE/);
  });

  it('--version prints the version in package.json', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await pgsplit(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`pgsplit ${pkg.version}\n`);
  });

  it('an unknown command gets the usage on stderr and exit 2', async () => {
    const r = await pgsplit(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('unknown command "frobnicate"');
    expect(r.stderr).toContain('usage: pgsplit');
  });

  it('check-config prints the effective config as YAML with every secret masked', async () => {
    const file = path.join(dir, 'good.yaml');
    fs.writeFileSync(file, [
      'users: [ { name: app, password: plain-Literal-pw-93 } ]',
      'nodes: [ { name: pg1, host: db1 } ]',
      'monitor: { password: "${PGSPLIT_TEST_MON_PW}" }',
      'admin: { auth: { token: admin-Token-41 } }',
      'coordination: { etcd: { endpoints: [ "http://127.0.0.1:2379" ], password: etcd-Pw-77 } }',
      '',
    ].join('\n'));
    const r = await pgsplit(['check-config', file], { PGSPLIT_TEST_MON_PW: 'env-Mon-pw-58' });
    expect(r.code, r.stderr).toBe(0);
    for (const secret of ['plain-Literal-pw-93', 'env-Mon-pw-58', 'admin-Token-41', 'etcd-Pw-77']) expect(r.stdout, secret).not.toContain(secret);
    const shown = YAML.parse(r.stdout);
    expect(shown.users).toEqual([{ name: 'app', password: '***' }]);
    expect(shown.admin.auth.token).toBe('***');
    expect(shown.coordination.etcd.password).toBe('***');
    expect(shown.limits.client_login_timeout).toBe('1m');
    expect(shown.nodes[0].port).toBe(5432);
  });

  it('check-config refuses an invalid config with exit 2, naming the key and why', async () => {
    const file = path.join(dir, 'invalid.yaml');
    fs.writeFileSync(file, 'users: [ { name: app, password: x } ]\nnodes: [ { name: pg1, host: db1 } ]\nrouting: { load_balance: fastest }\n');
    const r = await pgsplit(['check-config', file]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('config: routing.load_balance: expected one of round-robin, random, least-connections, got "fastest"');
  });

  it('check-config accepts config/pgsplit.example.yaml (with its APP_PASSWORD set)', async () => {
    const r = await pgsplit(['check-config', path.join(REPO_ROOT, 'config/pgsplit.example.yaml')], { APP_PASSWORD: 'example-App-pw-26' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toContain('example-App-pw-26');
    expect(YAML.parse(r.stdout).nodes).toHaveLength(2);
  });
});

describe('pgsplit command line', () => {
  it('refuses a config with errors, naming every key path, and exits 2 before listening', async () => {
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'listen: { prot: 6432 }\nnodes:\n  - { name: pg1, host: 127.0.0.1, port: abc }\nusers: [ { name: app, password: "${PGSPLIT_TEST_UNSET_VAR}" } ]\n');
    const r = await pgsplit(['--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('listen.prot: unknown key');
    expect(r.stderr).toContain('nodes[0].port');
    expect(r.stderr).toContain('PGSPLIT_TEST_UNSET_VAR');
  });

  it('says so when the config file does not exist, and when no config is given', async () => {
    const missing = await pgsplit(['--config', path.join(dir, 'nope.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('nope.yaml');
    const none = await pgsplit([], { PGSPLIT_CONFIG: '' });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no config file given');
  });

  it('runs from a good config, serves queries and drains on SIGTERM', async () => {
    const info = inject('cluster');
    const p = await spawnProxy(info);
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: p.port, user: 'app', password: 'secret', database: 'appdb' });
      await c.connect();
      try {
        const r = await c.query('/* pgsplit:primary */ SELECT inet_server_port() AS port');
        expect(r.rows[0].port).toBe(info.nodes[0].port);
      } finally {
        await c.end();
      }
    } finally {
      await p.stop();
    }
    expect(p.child.exitCode).toBe(0);
  });

  it('pgsplit switchover --config FILE sends the admin.auth credentials from the config; without them it gets 401', async () => {
    const info = inject('cluster');
    const p = await spawnProxy(info);
    try {
      // An unknown node: the request is authenticated, then refused with 409, so the shared cluster is untouched.
      const withConfig = await pgsplit(['switchover', '--to', 'pg9', '--config', p.configFile], { PGSPLIT_ADMIN_TOKEN: '' });
      expect(withConfig.code).toBe(1);
      expect(withConfig.stderr).toMatch(/409/);
      expect(withConfig.stderr).toMatch(/no node named \\?"pg9/);
      const anonymous = await pgsplit(['switchover', '--to', 'pg9', '--admin', `127.0.0.1:${p.adminPort}`], { PGSPLIT_ADMIN_TOKEN: '' });
      expect(anonymous.code).toBe(1);
      expect(anonymous.stderr).toMatch(/401/);
      expect(anonymous.stderr).not.toMatch(/pg9/);
    } finally {
      await p.stop();
    }
  });
});
