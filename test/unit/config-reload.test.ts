// The reload rules and plan: every schema key has a rule, the diff names changed keys, live keys apply, restart-only keys are kept by name, refusals name the key, and the README shows the table.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { configKeys } from '../../src/config/schema-keys.js';
import { RELOAD_RULES, ruleFor } from '../../src/config/reload-rules.js';
import { diffConfig, planReload, type ReloadRuntime } from '../../src/config/reload-plan.js';
import type { Config } from '../../src/config/schema.js';

const BASE = `
listen: { host: 127.0.0.1, port: 6432 }
admin: { port: 9930, auth: { token: t0 } }
users: [{ name: app, password: s3cret }]
nodes:
  - { name: pg1, host: db1 }
  - { name: pg2, host: db2 }
  - { name: pg3, host: db3 }
`;
const base = parseConfig(BASE, {});
/** BASE with sections it does not have added (a section it has cannot appear twice in one YAML mapping). */
const withExtra = (extra: string): Config => parseConfig(`${BASE}${extra}`, {});
const alone: ReloadRuntime = { primary: 'pg1', workers: 1 };

describe('reload rules', () => {
  it('has a rule for every key of the config schema', () => {
    const missing = configKeys().filter((k) => ruleFor(k.path) === undefined).map((k) => k.path);
    expect(missing, 'add these keys to RELOAD_RULES in src/config/reload-rules.ts').toEqual([]);
  });

  it('has no rule for a key the schema does not have', () => {
    const used = new Set(configKeys().map((k) => ruleFor(k.path)?.key));
    expect(Object.keys(RELOAD_RULES).filter((k) => !used.has(k))).toEqual([]);
  });

  it('keeps no key inside a list for a restart (one item of a list cannot be restored on its own)', () => {
    const inLists = configKeys().filter((k) => (k.kind === 'named-list' || k.path.includes('[]')) && ruleFor(k.path)?.rule.live === false);
    expect(inLists.map((k) => k.path)).toEqual([]);
  });

  it('walks the schema down to its leaves, with named lists as keys of their own', () => {
    const paths = configKeys().map((k) => k.path);
    expect(paths).toContain('routing.parse_cache_size');
    expect(paths).toContain('routing.max_replica_lag.bytes');
    expect(paths).toContain('nodes[].tls.mode');
    expect(paths).not.toContain('nodes[].name');
    expect(configKeys().find((k) => k.path === 'nodes')?.kind).toBe('named-list');
    expect(paths).not.toContain('routing');
  });

  it('finds the nearest section rule for a key without its own', () => {
    expect(ruleFor('coordination.etcd.lease_ttl')?.key).toBe('coordination.*');
    expect(ruleFor('nodes[].tls.ca')?.key).toBe('nodes[].tls.*');
    expect(ruleFor('routing.parse_cache_size')?.key).toBe('routing.parse_cache_size');
    expect(ruleFor('no.such.key')).toBeUndefined();
  });

  it('README lists every rule, as the table these rules make', () => {
    const rows = Object.entries(RELOAD_RULES).map(([key, r]) => `| \`${key}\` | ${r.live ? 'live' : 'restart'} | ${r.live ? r.how : r.why} |`);
    const table = ['| key | on reload | what happens, or why not |', '|---|---|---|', ...rows].join('\n');
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme.includes(table), `README.md must contain this table:\n${table}`).toBe(true);
  });
});

describe('diffConfig', () => {
  it('finds nothing between a config and itself', () => {
    expect(diffConfig(base, parseConfig(BASE, {}))).toEqual([]);
  });

  it('names changed leaves, items added or removed by name, and fields of items that stay', () => {
    const next = parseConfig(
      `
listen: { host: 127.0.0.1, port: 6432 }
admin: { port: 9930, auth: { token: t0 } }
users: [{ name: app, password: other }, { name: two, password: x }]
nodes:
  - { name: pg1, host: db1 }
  - { name: pg2, host: db2, weight: 3, tls: { mode: require } }
  - { name: pg4, host: db4 }
routing: { parse_cache_size: 5, max_replica_lag: { bytes: 1MB } }
`,
      {},
    );
    expect(diffConfig(base, next).map((c) => c.path).sort()).toEqual(
      [
        'users[two]',
        'users[app].password',
        'nodes[pg3]',
        'nodes[pg4]',
        'nodes[pg2].weight',
        'nodes[pg2].tls.mode',
        'routing.parse_cache_size',
        // The section given without time: time falls back to none, not to the default.
        'routing.max_replica_lag.bytes',
        'routing.max_replica_lag.time',
      ].sort(),
    );
  });

  it('compares lists of values as a whole', () => {
    const next = withExtra('routing: { write_functions: [f] }');
    expect(diffConfig(base, next).map((c) => c.path)).toEqual(['routing.write_functions']);
  });
});

describe('planReload', () => {
  it('applies live keys and keeps nothing', () => {
    const next = withExtra('routing: { parse_cache_size: 7, max_parse_length: 1kB }\npool: { size: 3 }\nlog: { level: debug }');
    const plan = planReload(base, next, alone);
    expect(plan.ok).toBe(true);
    if (!plan.ok) return;
    expect(plan.applied.sort()).toEqual(['log.level', 'pool.size', 'routing.max_parse_length', 'routing.parse_cache_size']);
    expect(plan.kept).toEqual([]);
    expect(plan.config).toEqual(next);
  });

  it('keeps restart-only keys at their running value and names each with its reason', () => {
    const next = parseConfig(
      `${BASE.replace('port: 6432', 'port: 7000').replace('port: 9930', 'port: 9931').replace('token: t0', 'token: t1')}
workers: 2
coordination: { etcd: { lease_ttl: 9s } }
routing: { read_tags: [a] }
`,
      {},
    );
    const plan = planReload(base, next, alone);
    expect(plan.ok).toBe(true);
    if (!plan.ok) return;
    expect(plan.kept.map((k) => k.key).sort()).toEqual(['admin.port', 'coordination.etcd.lease_ttl', 'listen.port', 'workers']);
    for (const k of plan.kept) {
      const rule = ruleFor(k.key)!.rule;
      expect(rule.live ? null : rule.why).toBe(k.reason);
    }
    expect(plan.kept.find((k) => k.key === 'listen.port')?.reason).toMatch(/bound once, at start/);
    expect(plan.applied.sort()).toEqual(['admin.auth.token', 'routing.read_tags']);
    // The running process goes on with the old values of what it kept, the new ones of the rest.
    expect(plan.config.listen.port).toBe(6432);
    expect(plan.config.admin.port).toBe(9930);
    expect(plan.config.workers).toBe(1);
    expect(plan.config.coordination).toEqual(base.coordination);
    expect(plan.config.admin.auth.token).toBe('t1');
    expect(plan.config.routing.read_tags).toEqual(['a']);
    expect(diffConfig(base, plan.config).map((c) => c.path).sort()).toEqual(['admin.auth.token', 'routing.read_tags']);
  });

  it('adds and removes replicas live', () => {
    const next = parseConfig(BASE.replace('  - { name: pg3, host: db3 }', '  - { name: pg4, host: db4 }'), {});
    const plan = planReload(base, next, alone);
    expect(plan).toMatchObject({ ok: true, applied: ['nodes[pg3]', 'nodes[pg4]'], kept: [] });
  });

  it('refuses to remove the current primary, or move it, naming the key', () => {
    const removed = parseConfig(BASE.replace('  - { name: pg1, host: db1 }\n', ''), {});
    expect(planReload(base, removed, alone)).toEqual({ ok: false, error: expect.stringMatching(/^nodes: "pg1" is the current primary/) });
    // Another node is the primary: removing pg1 is fine.
    expect(planReload(base, removed, { primary: 'pg2', workers: 1 }).ok).toBe(true);
    const moved = parseConfig(BASE.replace('host: db1', 'host: db9'), {});
    expect(planReload(base, moved, alone)).toEqual({ ok: false, error: expect.stringMatching(/^nodes\[pg1\]: the current primary's host and port/) });
    expect(planReload(base, moved, { primary: null, workers: 1 }).ok).toBe(true);
  });

  it('refuses a pool.size smaller than the workers running', () => {
    const next = withExtra('pool: { size: 1 }');
    expect(planReload(base, next, { primary: 'pg1', workers: 2 })).toEqual({ ok: false, error: expect.stringMatching(/^pool\.size: 1 is less than the 2 worker processes/) });
    expect(planReload(base, next, alone).ok).toBe(true);
  });
});
