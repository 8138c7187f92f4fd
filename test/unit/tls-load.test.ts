// Unit tests for loading TLS settings from a config (src/tls/load.ts): errors name the key; a reload with a bad file keeps what was there.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { connectServer } from '../../src/backend/connect.js';
import { loadTls, type TlsState } from '../../src/tls/load.js';
import { TlsConfigError } from '../../src/tls/files.js';

let dir: string;
let cert: string;
let key: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-tls-unit-'));
  cert = path.join(dir, 'c.crt');
  key = path.join(dir, 'c.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost'], { stdio: 'ignore' });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const config = (tls: string, serverTls: string, nodeTls = '') =>
  parseConfig(
    [
      'auth: { method: trust }',
      tls,
      serverTls,
      'nodes:',
      `  - { name: a, host: 127.0.0.1${nodeTls ? `, tls: ${nodeTls}` : ''} }`,
      '  - { name: b, host: 127.0.0.1 }',
    ].join('\n'),
    {},
  );

describe('loadTls', () => {
  it('builds client and per-node settings; nodes[].tls overrides server_tls', () => {
    const t = loadTls(config(`tls: { mode: require, cert: "${cert}", key: "${key}" }`, 'server_tls: { mode: prefer }', `{ mode: verify-full, ca: "${cert}" }`), null);
    expect(t.frontend?.mode).toBe('require');
    expect(t.nodes.get('a')?.tls).toMatchObject({ mode: 'verify-full', verifyChain: true, verifyHost: true });
    expect(t.nodes.get('b')?.tls).toMatchObject({ mode: 'prefer', verifyChain: false, verifyHost: false });
  });

  it('mode disable builds nothing', () => {
    const t = loadTls(config('', ''), null);
    expect(t.frontend).toBeNull();
    expect(t.nodes.get('a')).toEqual({ tls: null });
  });

  it('require verifies the chain only when a CA is given (as libpq does)', () => {
    expect(loadTls(config('', 'server_tls: { mode: require }'), null).nodes.get('a')?.tls?.verifyChain).toBe(false);
    expect(loadTls(config('', `server_tls: { mode: require, ca: "${cert}" }`), null).nodes.get('a')?.tls?.verifyChain).toBe(true);
  });

  it('at startup a bad file throws, naming the key', () => {
    const missing = path.join(dir, 'missing.pem');
    expect(() => loadTls(config(`tls: { mode: allow, cert: "${missing}", key: "${key}" }`, ''), null)).toThrow(/^tls\.cert: cannot read .*missing\.pem: ENOENT/);
    expect(() => loadTls(config('', '', `{ mode: verify-ca, ca: "${missing}" }`), null)).toThrow(/^nodes\[0\]\.tls\.ca: /);
    fs.writeFileSync(path.join(dir, 'junk.pem'), 'not a certificate');
    expect(() => loadTls(config('', `server_tls: { mode: verify-ca, ca: "${path.join(dir, 'junk.pem')}" }`), null)).toThrow(/^server_tls\.ca: .*no PEM data/);
  });

  it('on reload a bad file keeps the previous settings and reports why', () => {
    const good = loadTls(config(`tls: { mode: allow, cert: "${cert}", key: "${key}" }`, `server_tls: { mode: verify-ca, ca: "${cert}" }`), null);
    const warnings: string[] = [];
    const missing = path.join(dir, 'gone.pem');
    const next: TlsState = loadTls(config(`tls: { mode: allow, cert: "${missing}", key: "${key}" }`, `server_tls: { mode: verify-ca, ca: "${missing}" }`), good, (err) => {
      expect(err).toBeInstanceOf(TlsConfigError);
      warnings.push(err.key);
    });
    expect(next.frontend).toBe(good.frontend);
    expect(next.nodes.get('a')).toBe(good.nodes.get('a'));
    expect(warnings).toEqual(['tls.cert', 'server_tls.ca', 'server_tls.ca']);
  });

  it('a node new on reload whose TLS files are bad gets an error, never a plaintext connection', async () => {
    const before = loadTls(config('', ''), null);
    const without = { frontend: before.frontend, nodes: new Map([...before.nodes].filter(([n]) => n !== 'a')) };
    const next = loadTls(config('', '', `{ mode: verify-full, ca: "${path.join(dir, 'gone.pem')}" }`), without, () => {});
    const a = next.nodes.get('a')!;
    expect(a.tls).toBeNull();
    expect(a.error).toMatch(/nodes\[0\]\.tls could not be loaded/);
    const err = await connectServer({ node: 'a', host: '127.0.0.1', port: 1, user: 'u', password: null, params: new Map(), connectTimeout: 1000, tls: a.tls, tlsError: a.error }).then(
      () => null,
      (e: Error & { detail?: string }) => e,
    );
    expect(err?.detail).toMatch(/could not be loaded/);
  });
});
