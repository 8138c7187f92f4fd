// The pure parts of the CLI: help text, version, check-config's output (units, masked secrets, loads again) and its errors.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { displayConfig, formatDuration, formatSize, withUnits } from '../../src/config/display.js';
import { CHECK_CONFIG_USAGE, runCheckConfigCommand } from '../../src/cli/check-config.js';
import { COMMAND_USAGE, runHelpCommand, USAGE, version } from '../../src/cli/help.js';
import { ROUTE_USAGE } from '../../src/cli/route.js';
import { parseRunArgs } from '../../src/cli/run.js';

const dir = mkdtempSync(join(tmpdir(), 'pgsplit-cli-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function collect() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } }, out: () => out.join(''), err: () => err.join('') };
}

const EXAMPLE = readFileSync(new URL('../../config/pgsplit.example.yaml', import.meta.url), 'utf8');

// Every kind of secret the config holds, each with a value that appears nowhere else.
const SECRETS = {
  APP_PW: 'app-pw-Zq81',
  MON_PW: 'mon-pw-Lk27',
  TOKEN: 'admin-token-Wv55',
  ADMIN_PW: 'admin-pw-Rx09',
  ETCD_PW: 'etcd-pw-Hn44',
  HOOK_KEY: 'hook-key-Pp13',
};
const SECRET_YAML = `
admin:
  auth: { token: "\${TOKEN}", user: ops, password: "\${ADMIN_PW}" }
tls: { mode: require, cert: /etc/pgsplit/server.crt, key: /etc/pgsplit/server.key }
users:
  - { name: app, password: "\${APP_PW}" }
  - { name: literal, password: literal-pw-Bb62 }
nodes: [ { name: pg1, host: db1 }, { name: pg2, host: db2, port: 5433 } ]
monitor: { user: monitor, password: "\${MON_PW}" }
failover:
  hook_command: "curl -H 'X-Key: \${HOOK_KEY}' https://hooks.example/failover"
coordination:
  etcd: { endpoints: [ "http://10.0.0.1:2379" ], user: pgsplit, password: "\${ETCD_PW}", key: /etc/pgsplit/etcd.key }
limits: { client_login_timeout: 1500ms, max_pipeline: 1536kB }
routing:
  max_replica_lag: { bytes: null, time: 90s }
`;

describe('help and version', () => {
  it('lists every command and the global options', () => {
    const { io, out } = collect();
    expect(runHelpCommand([], io)).toBe(0);
    expect(out()).toBe(`${USAGE}\n`);
    for (const command of Object.keys(COMMAND_USAGE)) expect(USAGE, command).toContain(`pgsplit ${command === 'run' ? '[run]' : command}`);
    for (const option of ['--config FILE', '--help', '-h', '--version', '-V']) expect(USAGE, option).toContain(option);
  });

  it('help COMMAND prints that command\'s usage; an unknown one is exit 2 on stderr', () => {
    const route = collect();
    expect(runHelpCommand(['route'], route.io)).toBe(0);
    expect(route.out()).toBe(`${ROUTE_USAGE}\n`);
    const check = collect();
    expect(runHelpCommand(['check-config'], check.io)).toBe(0);
    expect(check.out()).toBe(`${CHECK_CONFIG_USAGE}\n`);
    for (const bad of [['nope'], ['constructor'], ['route', 'extra']]) {
      const r = collect();
      expect(runHelpCommand(bad, r.io), bad.join(' ')).toBe(2);
      expect(r.out()).toBe('');
      expect(r.err()).toContain('no command named');
    }
  });

  it('the version is package.json\'s', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(version()).toBe(pkg.version);
    expect(version()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('the run flags: --config in its three spellings, --help, --version; anything else is refused', () => {
    expect(parseRunArgs(['--config', 'a.yaml'])).toEqual({ config: 'a.yaml' });
    expect(parseRunArgs(['-c', 'a.yaml', '-h'])).toEqual({ config: 'a.yaml', help: true });
    expect(parseRunArgs(['--config=a.yaml', '-V'])).toEqual({ config: 'a.yaml', version: true });
    expect(() => parseRunArgs(['--config'])).toThrow('--config needs a file name');
    expect(() => parseRunArgs(['--port', '1'])).toThrow('unknown argument "--port"');
  });
});

describe('durations and sizes written back with units', () => {
  it('uses the largest unit that divides exactly', () => {
    expect([0, 1, 1500, 2000, 60_000, 90_000, 3_600_000, 7_200_000, 0.5].map(formatDuration)).toEqual(['0s', '1ms', '1500ms', '2s', '1m', '90s', '1h', '2h', '0.5ms']);
    expect([0, 1, 1024, 1536, 16 * 1024 ** 2, 1024 ** 3, 2 ** 50].map(formatSize)).toEqual(['0B', '1B', '1kB', '1536B', '16MB', '1GB', '1024TB']);
  });

  it('the effective config of the example file loads back into the same config', () => {
    const c = parseConfig(EXAMPLE, { APP_PASSWORD: 'x' });
    const again = parseConfig(stringify(withUnits(c)), {});
    expect(again).toEqual(c);
  });

  it('so does one with non-default units, a null bound and every secret', () => {
    const c = parseConfig(SECRET_YAML, SECRETS);
    const shown = withUnits(c) as { limits: Record<string, unknown>; routing: { max_replica_lag: unknown } };
    expect(shown.limits).toMatchObject({ client_login_timeout: '1500ms', max_pipeline: '1536kB', max_message_size: '64MB' });
    expect(shown.routing.max_replica_lag).toEqual({ bytes: null, time: '90s' });
    expect(parseConfig(stringify(shown), {})).toEqual(c);
  });
});

describe('check-config', () => {
  it('prints the effective config with defaults filled in and no secret in it', () => {
    const file = join(dir, 'secrets.yaml');
    writeFileSync(file, SECRET_YAML);
    const r = collect();
    expect(runCheckConfigCommand([file], r.io, SECRETS)).toBe(0);
    expect(r.err()).toBe('');
    const text = r.out();
    for (const s of [...Object.values(SECRETS), 'literal-pw-Bb62']) expect(text, s).not.toContain(s);
    const shown = parse(text);
    expect(shown.admin.auth).toEqual({ token: '***', user: 'ops', password: '***', protect_reads: false });
    expect(shown.users).toEqual([{ name: 'app', password: '***' }, { name: 'literal', password: '***' }]);
    expect(shown.monitor.password).toBe('***');
    expect(shown.coordination.etcd).toMatchObject({ user: 'pgsplit', password: '***', key: '/etc/pgsplit/etcd.key' });
    expect(shown.failover.hook_command).toBe('***');
    // Defaults that the file does not mention are there, in the units a config is written in.
    expect(shown.pool).toMatchObject({ mode: 'transaction', size: 20, max_client_wait: '30s' });
    expect(shown.nodes[0]).toEqual({ name: 'pg1', host: 'db1', port: 5432, weight: 1, tags: [], delayed: false, priority: 0, allow_cleartext_password: false });
    expect(shown).toEqual(displayConfig(parseConfig(SECRET_YAML, SECRETS)));
    // What it prints is itself a config that loads (with the masks as values).
    expect(parseConfig(text, {}).listen.port).toBe(6432);
  });

  it('an empty secret is shown as "", not as a mask that would suggest one is set', () => {
    const file = join(dir, 'empty.yaml');
    writeFileSync(file, 'auth: { method: trust }\nnodes: [ { name: pg1, host: db1 } ]\n');
    const r = collect();
    expect(runCheckConfigCommand(['--config', file], r.io, {})).toBe(0);
    const shown = parse(r.out());
    expect(shown.monitor.password).toBe('');
    expect(shown.coordination.etcd.password).toBe('');
  });

  it('refuses an invalid config with exit 2, naming each key and why, and prints nothing on stdout', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'listen: { prot: 6432 }\nnodes: [ { name: pg1, host: db1, port: abc } ]\nusers: [ { name: app, password: "${UNSET_PW}" } ]\npool: { max_client_wait: 30 }\n');
    const r = collect();
    expect(runCheckConfigCommand([file], r.io, {})).toBe(2);
    expect(r.out()).toBe('');
    expect(r.err()).toContain('config: listen.prot: unknown key');
    expect(r.err()).toMatch(/config: nodes\[0\]\.port: expected an integer 0\.\.65535, got "abc"/);
    expect(r.err()).toContain('config: users[0].password: environment variable UNSET_PW is not set');
    expect(r.err()).toContain('config: pool.max_client_wait: expected a duration');
  });

  it('the example file is valid once its ${APP_PASSWORD} is set, and names it when not', () => {
    const file = join(dir, 'example.yaml');
    writeFileSync(file, EXAMPLE);
    const ok = collect();
    expect(runCheckConfigCommand([file], ok.io, { APP_PASSWORD: 'example-pw-Tt71' })).toBe(0);
    expect(ok.out()).not.toContain('example-pw-Tt71');
    expect(parse(ok.out()).nodes.map((n: { name: string }) => n.name)).toEqual(['pg1', 'pg2']);
    const missing = collect();
    expect(runCheckConfigCommand([file], missing.io, {})).toBe(2);
    expect(missing.err()).toContain('users[0].password: environment variable APP_PASSWORD is not set');
  });

  it('usage: one file (or PGSPLIT_CONFIG), --help; a missing file is named', () => {
    const none = collect();
    expect(runCheckConfigCommand([], none.io, {})).toBe(2);
    expect(none.err()).toContain('which config?');
    const two = collect();
    expect(runCheckConfigCommand(['a.yaml', 'b.yaml'], two.io, {})).toBe(2);
    expect(two.err()).toContain('give one config file');
    const flag = collect();
    expect(runCheckConfigCommand(['--strict'], flag.io, {})).toBe(2);
    expect(flag.err()).toContain('unknown argument "--strict"');
    const help = collect();
    expect(runCheckConfigCommand(['-h'], help.io, {})).toBe(0);
    expect(help.out()).toBe(`${CHECK_CONFIG_USAGE}\n`);
    const missing = collect();
    expect(runCheckConfigCommand([], missing.io, { PGSPLIT_CONFIG: join(dir, 'nope.yaml') })).toBe(2);
    expect(missing.err()).toMatch(/nope\.yaml: cannot read config file: file not found/);
  });
});
