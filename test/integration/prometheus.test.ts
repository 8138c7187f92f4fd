// The Grafana dashboard and the alert rules in deploy/ against a real Prometheus scraping a real pgsplit: promtool passes, every panel's PromQL returns series, every rule loads.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { REPO_ROOT, spawnProxy, type ProxyProcess } from '../harness/proxy.js';
import { findPromtoolBin, startPrometheus, type PromSeries, type PrometheusServer } from '../harness/prometheus.js';
import { endQuietly, eventually, rejection, sleep } from './helpers.js';

const info = inject('cluster');

const PROMETHEUS_DIR = path.join(REPO_ROOT, 'deploy/prometheus');
const PROMETHEUS_CONFIG = path.join(PROMETHEUS_DIR, 'prometheus.yml');
const ALERTS = path.join(PROMETHEUS_DIR, 'alerts.yml');
const ALERT_TESTS = path.join(PROMETHEUS_DIR, 'alerts.test.yml');
const DASHBOARD = path.join(REPO_ROOT, 'deploy/grafana/dashboards/pgsplit.json');
const GRAFANA_DATASOURCE = path.join(REPO_ROOT, 'deploy/grafana/provisioning/datasources/prometheus.yml');
const GRAFANA_PROVIDER = path.join(REPO_ROOT, 'deploy/grafana/provisioning/dashboards/pgsplit.yml');

/** The data source every panel and target must use: the dashboard's own variable, so an import or a provisioned Grafana can point it anywhere. */
const DS = { type: 'prometheus', uid: '${DS_PROMETHEUS}' };

/**
 * Grafana's built-in variables as Grafana would fill them in for a short time range. `$__rate_interval` is at
 * least four scrapes (the provisioned data source says 5s); 1m holds many of this test's 1s scrapes.
 */
const GRAFANA_VARIABLES: [RegExp, string][] = [
  [/\$\{?__rate_interval\}?/g, '1m'],
  [/\$\{?__interval\}?/g, '5s'],
  [/\$\{?__range\}?/g, '1m'],
];

interface Target { refId: string; expr: string; datasource?: unknown }
interface Panel { id: number; title: string; datasource?: unknown; targets?: Target[] }
interface Dashboard { templating: { list: { name: string; type: string; query: string }[] }; panels: Panel[] }

const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as Dashboard;

/** Every target of every panel, with the PromQL Prometheus gets. */
const queries = dashboard.panels.flatMap((p) =>
  (p.targets ?? []).map((t) => {
    let expr = t.expr;
    for (const [re, value] of GRAFANA_VARIABLES) expr = expr.replace(re, value);
    return { where: `panel ${p.id} "${p.title}" target ${t.refId}`, expr };
  }),
);

/** promtool's exit status and output; a failing run fails the test with promtool's own words. */
function promtool(args: string[], cwd: string): string {
  const bin = findPromtoolBin();
  if (!bin) throw new Error('promtool not found (PATH, /usr/bin/promtool): apt-get install prometheus, or set PGSPLIT_PROMTOOL_BIN');
  try {
    return execFileSync(bin, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  } catch (err) {
    const e = err as { status: number | null; stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(' ')} exited ${e.status}:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

const alertRules = (YAML.parse(fs.readFileSync(ALERTS, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] }).groups.flatMap((g) => g.rules);

describe('deploy/prometheus with promtool', () => {
  it('the config and the alert rules are valid', () => {
    expect(promtool(['check', 'config', PROMETHEUS_CONFIG], PROMETHEUS_DIR)).toMatch(/SUCCESS: 1 rule files found/);
    expect(promtool(['check', 'rules', ALERTS], PROMETHEUS_DIR)).toMatch(new RegExp(`SUCCESS: ${alertRules.length} rules found`));
  });

  it('the alert unit tests pass (each alert firing and staying quiet)', () => {
    expect(promtool(['test', 'rules', path.basename(ALERT_TESTS)], PROMETHEUS_DIR)).toMatch(/SUCCESS/);
    // Each alert has its own test case, so none is shipped untested.
    const tested = new Set((YAML.parse(fs.readFileSync(ALERT_TESTS, 'utf8')) as { tests: { alert_rule_test: { alertname: string }[] }[] }).tests.flatMap((t) => t.alert_rule_test.map((a) => a.alertname)));
    expect(alertRules.map((r) => r.alert).filter((a) => !tested.has(a))).toEqual([]);
  });
});

describe('deploy/grafana', () => {
  it('the dashboard takes its data source from a DS_PROMETHEUS variable, in every panel and target', () => {
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', query: 'prometheus' }));
    for (const p of dashboard.panels) {
      expect(p.datasource, `panel ${p.id} "${p.title}"`).toEqual(DS);
      expect(p.targets?.length, `panel ${p.id} "${p.title}" has no query`).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource, `panel ${p.id} target ${t.refId}`).toEqual(DS);
    }
    // A variable Grafana fills in that this test does not would reach Prometheus as a syntax error; say which.
    for (const q of queries) expect(q.expr, q.where).not.toContain('$');
  });

  it('the provisioning files give a Prometheus data source and a file provider', () => {
    const ds = YAML.parse(fs.readFileSync(GRAFANA_DATASOURCE, 'utf8')) as { apiVersion: number; datasources: { type: string; url: string; jsonData?: { timeInterval?: string } }[] };
    expect(ds.apiVersion).toBe(1);
    expect(ds.datasources).toHaveLength(1);
    expect(ds.datasources[0]!.type).toBe('prometheus');
    // $__rate_interval is four of these: it must be the scrape interval Prometheus really uses.
    const scrape = (YAML.parse(fs.readFileSync(PROMETHEUS_CONFIG, 'utf8')) as { scrape_configs: { job_name: string; scrape_interval: string }[] }).scrape_configs.find((j) => j.job_name === 'pgsplit');
    expect(ds.datasources[0]!.jsonData?.timeInterval).toBe(scrape?.scrape_interval);
    const dashboards = YAML.parse(fs.readFileSync(GRAFANA_PROVIDER, 'utf8')) as { apiVersion: number; providers: { type: string; options: { path: string } }[] };
    expect(dashboards.apiVersion).toBe(1);
    expect(dashboards.providers).toEqual([expect.objectContaining({ type: 'file', options: expect.objectContaining({ path: expect.stringMatching(/^\//) }) })]);
  });
});

describe('a real Prometheus scraping pgsplit', () => {
  let proxy: ProxyProcess | undefined;
  let prom: PrometheusServer | undefined;
  let client: pg.Client | undefined;
  const table = `prometheus_probe_${process.pid}`;

  beforeAll(async () => {
    proxy = await spawnProxy(info, { logLevel: 'warn' });
    // The shipped config (its job name, which PgsplitDown matches, and its rule_files), pointed at this proxy.
    prom = await startPrometheus({ configFile: PROMETHEUS_CONFIG, targets: [`127.0.0.1:${proxy.adminPort}`], scrapeInterval: '1s' });
    await eventually('Prometheus to scrape pgsplit', async () => ((await prom!.query('up{job="pgsplit"} == 1')).length === 1 ? true : undefined), 20_000, 250);
    client = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: info.app.user, password: info.app.password, database: info.app.database });
    client.on('error', () => {});
    await client.connect();
  });

  afterAll(async () => {
    if (client) {
      await client.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
      await endQuietly(client);
    }
    await prom?.stop();
    await proxy?.stop();
  });

  it('evaluates every PromQL expression of every dashboard panel to at least one series', async () => {
    const c = client!;
    // Traffic of every kind the panels count: writes, reads (repeated, so the classification cache answers
    // too), a transaction, a statement the grammar rejects and one that fails on the server.
    await c.query(`CREATE TABLE IF NOT EXISTS ${table} (id serial PRIMARY KEY, v int)`);
    for (let i = 0; i < 20; i++) {
      await c.query(`INSERT INTO ${table} (v) VALUES ($1)`, [i]);
      await c.query(`SELECT count(*) FROM ${table}`);
      await c.query('SELECT 1 AS one');
    }
    await c.query('BEGIN');
    await c.query(`INSERT INTO ${table} (v) VALUES (100)`);
    await c.query(`SELECT max(v) FROM ${table}`);
    await c.query('COMMIT');
    expect((await rejection(c.query('SELEC 1'))).code).toBe('42601');
    expect((await rejection(c.query('SELECT 1/0'))).code).toBe('22012');
    const trafficDone = Date.now() / 1000;

    // Two scrapes after the traffic, so every rate() window holds samples from before and after it.
    await eventually('two scrapes after the traffic', async () => {
      const [up] = await prom!.query('timestamp(up{job="pgsplit"})');
      return up && Number(up.value[1]) > trafficDone + 1 ? true : undefined;
    }, 20_000, 250);

    // Every panel has a query (checked above), so an empty list here would mean the dashboard was not read.
    expect(queries.length).toBeGreaterThanOrEqual(dashboard.panels.length);
    const results = new Map<string, PromSeries[]>();
    const missing = () => queries.filter((q) => !hasValue(results.get(q.where)));
    // The monitor's probe rounds (lag, bans) run every 500 ms; a late series gets a few more scrapes.
    const deadline = Date.now() + 10_000;
    for (;;) {
      for (const q of missing()) results.set(q.where, await prom!.query(q.expr));
      if (missing().length === 0 || Date.now() > deadline) break;
      await sleep(1_000);
    }
    expect(missing().map((q) => `${q.where}: ${q.expr} -> ${JSON.stringify(results.get(q.where))}`)).toEqual([]);
  });

  it('has the counters of rare events from the start, so the first event shows in rate() and increase()', async () => {
    // PgsplitFailover is increase(pgsplit_failovers_total[10m]) > 0: born at 1, the first failover would not count.
    expect(await prom!.query('pgsplit_failovers_total')).toHaveLength(1);
    // Reads go to the primary for these reasons only after lag, replica loss or a write; the panel lists each.
    const reasons = (await prom!.query('pgsplit_reads_on_primary_total')).map((s) => s.metric.reason).sort();
    expect(reasons).toEqual(['max-lag', 'no-replica', 'read-your-writes', 'replica-lag']);
  });

  it('loads every alert rule with health ok, and the rules use only metrics pgsplit exports', async () => {
    const names = alertRules.map((r) => r.alert).sort();
    const rules = await eventually('every rule evaluated once', async () => {
      const r = await prom!.rules();
      return r.length === names.length && r.every((x) => x.health !== 'unknown') ? r : undefined;
    }, 20_000, 250);
    expect(rules.map((r) => ({ name: r.name, type: r.type, health: r.health, lastError: r.lastError ?? '' })).sort((a, b) => a.name.localeCompare(b.name))).toEqual(
      names.map((name) => ({ name, type: 'alerting', health: 'ok', lastError: '' })),
    );
    // A rule on a metric that does not exist is healthy and never fires: check the names against what was scraped.
    const scraped = new Set((await prom!.query('count by (__name__) ({__name__=~"pgsplit_.+"})')).map((s) => s.metric.__name__));
    const used = new Set(alertRules.flatMap((r) => r.expr.match(/\bpgsplit_[a-z_]+/g) ?? []));
    expect(used.size).toBeGreaterThanOrEqual(6);
    expect([...used].filter((m) => !scraped.has(m))).toEqual([]);
  });
});

/** At least one series with a number (histogram_quantile over buckets that did not move gives NaN). */
function hasValue(series: PromSeries[] | undefined): boolean {
  return !!series && series.some((s) => Number.isFinite(Number(s.value[1])));
}
