// Unit tests for config parsing: defaults, conversions, interpolation, error reporting and redaction.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig, parseConfig, redactConfig } from '../../src/config/load.js';

const MIN = `
users: [{ name: app, password: s3cret }]
nodes: [{ name: pg1, host: db1 }]
`;

/** The lines a user would see, without the "config: " prefix. */
function errorsOf(text: string, env: Record<string, string | undefined> = {}): string[] {
  try {
    parseConfig(text, env, 'test.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const err = e as ConfigError;
    expect(err.message.split('\n')).toEqual(err.issues.map((i) => `config: ${i.path}: ${i.message}`));
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig defaults and conversions', () => {
  it('fills every default', () => {
    expect(parseConfig(MIN, {})).toEqual({
      listen: { host: '127.0.0.1', port: 6432, max_client_connections: 1000 },
      admin: { host: '127.0.0.1', port: 9930, enabled: true, auth: { protect_reads: false }, users: [], pause_timeout: 60_000, metrics_port: null, metrics_host: '127.0.0.1' },
      tls: { mode: 'disable' },
      server_tls: { mode: 'disable' },
      limits: {
        max_message_size: 64 * 1024 * 1024,
        client_login_timeout: 60_000,
        client_idle_timeout: 0,
        idle_transaction_timeout: 0,
        max_pipeline: 16 * 1024 * 1024,
        max_prepared_statements: 10000,
        max_prepared_bytes: 16 * 1024 * 1024,
        max_session_settings: 1000,
        max_session_settings_bytes: 1024 * 1024,
      },
      pool: {
        mode: 'transaction',
        size: 20,
        min_idle: 0,
        max_client_wait: 30_000,
        server_idle_timeout: 600_000,
        server_lifetime: 3_600_000,
        max_prepared_statements: 500,
      },
      auth: { method: 'scram-sha-256' },
      users: [{ name: 'app', password: 's3cret' }],
      nodes: [{ name: 'pg1', host: 'db1', port: 5432, weight: 1, tags: [], delayed: false, priority: 0, allow_cleartext_password: false }],
      monitor: { user: 'postgres', password: '', database: 'postgres', interval: 1000, connect_timeout: 2000, probe_timeout: 2000 },
      backend: { connect_timeout: 5000 },
      routing: {
        enabled: true,
        read_only_functions: [],
        write_functions: [],
        max_parse_length: 65536,
        parse_cache_size: 10000,
        load_balance: 'round-robin',
        primary_reads: 'fallback',
        consistency: 'read-your-writes',
        max_replica_lag: { bytes: 16 * 1024 * 1024, time: 2000 },
        unban_after: 2000,
        read_tags: [],
      },
      stats: { enabled: true, max_statements: 1000 },
      failover: { enabled: true, failure_threshold: 3, hold_timeout: 10_000, promote_timeout: 30_000, hook_command: '', rejoin_command: '', demote_command: '', switchover_timeout: 30_000, hook_timeout: 30_000 },
      replication: { mode: 'async', strict: false, synchronous_commit: 'on' },
      coordination: { name: '', etcd: { endpoints: [], prefix: '/pgsplit/default', lease_ttl: 5_000, user: '', password: '' }, failsafe: false },
      workers: 1,
      shutdown: { drain_timeout: 30000 },
      log: { level: 'info' },
    });
  });

  it('converts durations to milliseconds', () => {
    const c = parseConfig(`${MIN}monitor: { interval: 500ms, connect_timeout: 1.5s, probe_timeout: 1m }\nbackend: { connect_timeout: 1h }\nshutdown: { drain_timeout: 0s }\n`, {});
    expect(c.monitor).toMatchObject({ interval: 500, connect_timeout: 1500, probe_timeout: 60_000 });
    expect(c.backend.connect_timeout).toBe(3_600_000);
    expect(c.shutdown.drain_timeout).toBe(0);
  });

  it('treats an empty section as all defaults', () => {
    expect(parseConfig(`${MIN}listen:\n`, {}).listen.port).toBe(6432);
  });

  it('accepts port 0 and trust without users', () => {
    const c = parseConfig('auth: { method: trust }\nlisten: { port: 0 }\nnodes: [{ name: a, host: h }]', {});
    expect(c.users).toEqual([]);
    expect(c.listen.port).toBe(0);
  });

  it('returns a deeply frozen object', () => {
    const c = parseConfig(MIN, {});
    expect(Object.isFrozen(c.nodes[0])).toBe(true);
    expect(() => {
      (c.listen as { port: number }).port = 1;
    }).toThrow(TypeError);
  });
});

describe('environment interpolation', () => {
  const text = `
users: [{ name: app, password: "\${APP_PASSWORD}" }]
nodes: [{ name: pg1, host: "\${PGHOST:-localhost}", port: "\${PGPORT:-5432}" }]
monitor: { database: "db_\${SUFFIX}_x" }
admin: { enabled: "\${ADMIN:-true}" }
`;

  it('substitutes set variables, defaults and typed values', () => {
    const c = parseConfig(text, { APP_PASSWORD: 'pw', PGPORT: '6000', SUFFIX: 'eu', ADMIN: 'false' });
    expect(c.users[0].password).toBe('pw');
    expect(c.nodes[0]).toEqual({ name: 'pg1', host: 'localhost', port: 6000, weight: 1, tags: [], delayed: false, priority: 0, allow_cleartext_password: false });
    expect(c.monitor.database).toBe('db_eu_x');
    expect(c.admin.enabled).toBe(false);
  });

  it('uses the default when the variable is empty', () => {
    expect(parseConfig(text, { APP_PASSWORD: 'pw', PGHOST: '', SUFFIX: '' }).nodes[0].host).toBe('localhost');
  });

  it('reports every unset variable with its key path', () => {
    expect(errorsOf(text, {})).toEqual([
      'users[0].password: environment variable APP_PASSWORD is not set (use ${APP_PASSWORD:-default} to provide a fallback)',
      'monitor.database: environment variable SUFFIX is not set (use ${SUFFIX:-default} to provide a fallback)',
    ]);
  });

  it('keeps $${ as a literal ${', () => {
    expect(parseConfig(`${MIN}monitor: { database: "a$\${B}c" }`, { B: 'x' }).monitor.database).toBe('a${B}c');
  });

  it('rejects malformed references', () => {
    expect(errorsOf(`${MIN}monitor: { database: "\${B" }`)).toEqual([
      'monitor.database: malformed variable reference: expected ${NAME} or ${NAME:-default} (write $${ for a literal ${)',
    ]);
  });
});

describe('validation errors', () => {
  it('names unknown keys with their path and the allowed keys', () => {
    expect(errorsOf(`${MIN}lisen: {}\nlisten: { prot: 1 }\nmonitor: { intervall: 1s }`)).toEqual([
      'listen.prot: unknown key (allowed: host, port, max_client_connections)',
      'monitor.intervall: unknown key (allowed: user, password, database, interval, connect_timeout, probe_timeout)',
      'lisen: unknown key (allowed: listen, admin, tls, server_tls, limits, pool, auth, users, nodes, monitor, backend, routing, stats, failover, replication, coordination, workers, shutdown, log)',
    ]);
    expect(errorsOf('users: [{ name: a, password: b, role: x }]\nnodes: [{ name: a, host: h, role: primary }]')).toEqual([
      'users[0].role: unknown key (allowed: name, password, read_tags, pool_mode)',
      'nodes[0].role: unknown key (allowed: name, host, port, weight, tags, delayed, priority, tls, allow_cleartext_password)',
    ]);
  });

  it('reports several errors at once, saying what was expected and what was found', () => {
    const text = `
users: [{ name: app, password: x }]
nodes:
  - { name: pg1, host: h }
  - { name: pg2, host: h, port: abc }
listen: { port: 70000, max_client_connections: 0 }
admin: 5
auth: { method: password }
monitor: { interval: 1000, probe_timeout: 0s }
log: { level: loud }
`;
    expect(errorsOf(text)).toEqual([
      'listen.port: expected an integer 0..65535, got 70000',
      'listen.max_client_connections: expected an integer >= 1, got 0',
      'admin: expected a mapping with keys host, port, enabled, auth, users, pause_timeout, metrics_port, metrics_host, got 5',
      'auth.method: expected one of scram-sha-256, md5, trust, got "password"',
      'nodes[1].port: expected an integer 0..65535, got "abc"',
      'monitor.interval: expected a duration with a unit like "500ms", "2s", "1m" or "1h" (> 0, at most 596h), got 1000',
      'monitor.probe_timeout: expected a duration with a unit like "500ms", "2s", "1m" or "1h" (> 0, at most 596h), got "0s"',
      'log.level: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    ]);
  });

  it('reports wrong types and missing keys', () => {
    expect(errorsOf('users: { name: a }\nnodes: [{ name: 7, port: 1.5 }, "pg2"]\nadmin: { enabled: yes }')).toEqual([
      'admin.enabled: expected true or false, got "yes"',
      'users: expected a list of { name, password }, got a mapping',
      'nodes[0].name: expected a name made of letters, digits, "_", "." or "-", got 7',
      'nodes[0].host: required; expected a non-empty host name or IP address',
      'nodes[0].port: expected an integer 0..65535, got 1.5',
      'nodes[1]: expected a mapping with keys name, host, port, weight, tags, delayed, priority, tls, allow_cleartext_password, got "pg2"',
    ]);
  });

  it('requires nodes, and users unless auth is trust', () => {
    expect(errorsOf('')).toEqual(['nodes: required; expected a list of { name, host, port }']);
    expect(errorsOf('nodes: []')).toEqual([
      'nodes: expected at least one node',
      'users: expected at least one user when auth.method is scram-sha-256 (use auth.method: trust to allow anyone)',
    ]);
  });

  it('rejects duplicate and badly formed names alongside other errors', () => {
    const text = `
users: [{ name: a, password: x }, { name: a, password: y }]
nodes: [{ name: pg1, host: h }, { name: pg1, host: h, port: x }, { name: "pg 3", host: "" }]
`;
    expect(errorsOf(text)).toEqual([
      'users[1].name: duplicate user name "a" (also used by users[0])',
      'nodes[1].port: expected an integer 0..65535, got "x"',
      'nodes[2].name: expected a name made of letters, digits, "_", "." or "-", got "pg 3"',
      'nodes[2].host: expected a non-empty host name or IP address, got ""',
      'nodes[1].name: duplicate node name "pg1" (also used by nodes[0])',
    ]);
  });

  it('never echoes password values', () => {
    const text = 'users: [{ name: a, password: 123456789 }, { name: b, password: "" }]\nnodes: [{ name: a, host: h }]\nmonitor: { password: [hunter2] }';
    const lines = errorsOf(text);
    expect(lines).toEqual([
      'users[0].password: expected a string',
      'monitor.password: expected a string',
      'users[1].password: must not be empty when auth.method is scram-sha-256',
    ]);
    expect(lines.join('\n')).not.toMatch(/123456789|hunter2/);
  });

  it('turns YAML syntax errors into located ConfigErrors without quoting the source', () => {
    const lines = errorsOf('users:\n  - { name: a, password: "hunter2 }\nnodes: []');
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0]).toMatch(/^test\.yaml:\d+:\d+: invalid YAML: /);
    expect(lines.join('\n')).not.toContain('hunter2');
    expect(errorsOf('a: 1\na: 2')).toEqual(['test.yaml:2:1: invalid YAML: Map keys must be unique']);
  });
});

describe('node weight, tags and delayed; user read_tags', () => {
  it('keeps the values given, with the user\'s read_tags only when set', () => {
    const c = parseConfig(
      `users: [{ name: app, password: x, read_tags: [reports, eu-1.b] }, { name: batch, password: y }]
nodes:
  - { name: pg1, host: h1, weight: 0 }
  - { name: pg2, host: h2, weight: 1000, tags: [analytics, eu_west], delayed: true }
`,
      {},
    );
    expect(c.nodes).toEqual([
      { name: 'pg1', host: 'h1', port: 5432, weight: 0, tags: [], delayed: false, priority: 0, allow_cleartext_password: false },
      { name: 'pg2', host: 'h2', port: 5432, weight: 1000, tags: ['analytics', 'eu_west'], delayed: true, priority: 0, allow_cleartext_password: false },
    ]);
    expect(c.users).toEqual([
      { name: 'app', password: 'x', read_tags: ['reports', 'eu-1.b'] },
      { name: 'batch', password: 'y' },
    ]);
  });

  it('accepts a weight and delayed flag from the environment', () => {
    const c = parseConfig('auth: { method: trust }\nnodes: [{ name: pg1, host: h, weight: "${W}", delayed: "${D}" }]', { W: '7', D: 'true' });
    expect(c.nodes[0]).toMatchObject({ weight: 7, delayed: true });
  });

  it('rejects a weight outside 0..1000, bad tags and a non-boolean delayed, naming each path', () => {
    const text = `
auth: { method: trust }
nodes:
  - { name: pg1, host: h, weight: 1001, tags: ["a b", ok] }
  - { name: pg2, host: h, weight: -1, delayed: maybe }
  - { name: pg3, host: h, weight: 1.5, tags: analytics }
`;
    expect(errorsOf(text)).toEqual([
      'nodes[0].weight: expected an integer 0..1000, got 1001',
      'nodes[0].tags[0]: expected a tag made of letters, digits, "_", "." or "-", got "a b"',
      'nodes[1].weight: expected an integer 0..1000, got -1',
      'nodes[1].delayed: expected true or false, got "maybe"',
      'nodes[2].weight: expected an integer 0..1000, got 1.5',
      'nodes[2].tags: expected a list of tags, got "analytics"',
    ]);
  });

  it('rejects a bad tag in a user\'s read_tags', () => {
    expect(errorsOf('users: [{ name: a, password: b, read_tags: [ok, "x/y"] }]\nnodes: [{ name: pg1, host: h }]')).toEqual([
      'users[0].read_tags[1]: expected a tag made of letters, digits, "_", "." or "-", got "x/y"',
    ]);
  });
});

describe('example file', () => {
  const url = new URL('../../config/pgsplit.example.yaml', import.meta.url);

  it('parses with APP_PASSWORD set and matches the documented defaults', () => {
    const c = parseConfig(readFileSync(url, 'utf8'), { APP_PASSWORD: 'pw' });
    expect(c.users).toEqual([{ name: 'app', password: 'pw' }]);
    expect(c.nodes.map((n) => `${n.name}@${n.host}:${n.port}`)).toEqual(['pg1@127.0.0.1:5432', 'pg2@127.0.0.1:5433']);
    const { users, nodes, ...rest } = c;
    const { users: u2, nodes: n2, ...defaults } = parseConfig(MIN, {});
    void users, nodes, u2, n2;
    expect(rest).toEqual(defaults);
  });

  it('fails without APP_PASSWORD', () => {
    expect(() => loadConfig(url.pathname, {})).toThrow('config: users[0].password: environment variable APP_PASSWORD is not set');
  });
});

describe('redactConfig', () => {
  it('replaces every password and leaves the original intact', () => {
    const c = parseConfig(`${MIN}monitor: { password: m0nitor }`, {});
    const r = redactConfig(c) as typeof c;
    expect(r.users[0]).toEqual({ name: 'app', password: '***' });
    expect(r.monitor.password).toBe('***');
    expect(r.nodes).toEqual(c.nodes);
    expect(JSON.stringify(r)).not.toMatch(/s3cret|m0nitor/);
    expect(c.users[0].password).toBe('s3cret');
  });
});

describe('loadConfig', () => {
  it('reports a missing file as a ConfigError naming it', () => {
    expect(() => loadConfig('/nonexistent/pgsplit.yaml')).toThrow(ConfigError);
    expect(() => loadConfig('/nonexistent/pgsplit.yaml')).toThrow('config: /nonexistent/pgsplit.yaml: cannot read config file: file not found');
  });
});

describe('workers', () => {
  it('takes auto or a count from 1 to 64, and refuses anything else with what it expected', () => {
    expect(parseConfig(`${MIN}workers: auto\n`, {}).workers).toBe('auto');
    expect(parseConfig(`${MIN}workers: 4\n`, {}).workers).toBe(4);
    expect(parseConfig(`${MIN}workers: "2"\n`, {}).workers).toBe(2);
    for (const bad of ['0', '65', '1.5', 'all', '-1']) {
      expect(errorsOf(`${MIN}workers: ${bad}\n`)).toEqual([`workers: expected "auto" or a number of worker processes from 1 to 64, got ${bad === 'all' ? '"all"' : bad}`]);
    }
  });
});
