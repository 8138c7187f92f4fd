// The pgsplit command as a user runs it: a bad config is refused before listening, naming the key; a good one serves.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
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
