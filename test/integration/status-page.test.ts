// The status page (GET / on the admin port) in headless Chromium, against a spawned pgsplit on a cluster of its own: nodes and roles, a paused replica shown lagging and banned, a switchover, basic auth with protect_reads, escaping, and no script error.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clusterInfo, startCluster, type Cluster, type ClusterInfo, type ClusterNode } from '../harness/cluster.js';
import { REPO_ROOT, spawnProxy, type ProxyProcess } from '../harness/proxy.js';
import { directClient, endQuietly, eventually, sleep, using } from './helpers.js';

const CHROMIUM = process.env.PGSPLIT_CHROMIUM ?? '/usr/bin/chromium';
const USER = 'admin';
const PASSWORD = 'page-secret';
const BASIC = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
/** A column name that is markup: the statement text carries it to the page as data. */
const MARKUP = "<img src=x onerror=document.title='xss'>";

let cluster: Cluster;
let info: ClusterInfo;
let proxy: ProxyProcess;
let browser: Browser;
let context: BrowserContext;
let origin: string;
const paused = new Set<string>();
/** Every uncaught exception, console error and request to elsewhere, of every page the tests open. */
const problems: string[] = [];

const node = (name: string): ClusterNode => cluster.nodes.find((n) => n.name === name)!;

function watch(page: Page): Page {
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    // Chromium logs every non-2xx fetch; the tests that mock a missing /statements expect that one.
    if (/Failed to load resource: the server responded with a status of 404/.test(msg.text()) && /\/statements/.test(msg.location().url)) return;
    problems.push(`console ${msg.type()}: ${msg.text()} (${msg.location().url})`);
  });
  page.on('request', (req) => {
    if (!req.url().startsWith(`${origin}/`) && !req.url().startsWith('data:')) problems.push(`request to another origin: ${req.url()}`);
  });
  return page;
}

async function openPage(ctx = context): Promise<Page> {
  const page = watch(await ctx.newPage());
  const r = await page.goto(`${origin}/`);
  expect(r?.status()).toBe(200);
  await refreshed(page);
  return page;
}

/** Waits until the page has rendered data n times (body[data-refreshed] counts them). */
function refreshed(page: Page, n = 1): Promise<unknown> {
  return page.waitForFunction((k) => Number(document.body.dataset.refreshed ?? 0) >= k, n, { timeout: 20_000 });
}

const text = (page: Page, selector: string): Promise<string> => page.locator(selector).first().innerText({ timeout: 5_000 });
const cell = (page: Page, nodeName: string, column: string) => text(page, `#nodes tr[data-node="${nodeName}"] td.${column}`);

/** Polls the page until pred holds for what it shows (the page refreshes every 2 s). */
function showing<T>(what: string, page: Page, read: () => Promise<T>, pred: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  return eventually(`the page to show ${what}`, async () => {
    const v = await read();
    return pred(v) ? v : undefined;
  }, timeoutMs, 200);
}

async function admin(p: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${origin}${p}`, { ...init, headers: { authorization: BASIC, ...(init.headers as Record<string, string>) }, signal: AbortSignal.timeout(60_000) });
}

async function status(): Promise<{ primary: string | null; nodes: { name: string; role: string; fenced: boolean; banned: boolean; ban_reason: string | null }[] }> {
  return (await admin('/status')).json() as never;
}

async function throughProxy<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: info.app.user, password: info.app.password, database: info.app.database, connectionTimeoutMillis: 10_000 });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await endQuietly(c);
  }
}

async function setPaused(name: string, on: boolean): Promise<void> {
  await using(directClient(node(name), info), (c) => c.query(on ? 'SELECT pg_wal_replay_pause()' : 'SELECT pg_wal_replay_resume()'));
  if (on) paused.add(name);
  else paused.delete(name);
}

describe('status page in Chromium', () => {
  beforeAll(async () => {
    if (!fs.existsSync(path.join(REPO_ROOT, 'dist/admin/status-page.html'))) throw new Error('dist/admin/status-page.html is missing: run npm run build first (spawnProxy runs dist/)');
    cluster = await startCluster({ signalHandlers: false });
    info = clusterInfo(cluster);
    await using(directClient(node('pg1'), info, { user: info.app.user, password: info.app.password, database: info.app.database }), (c) => c.query('CREATE TABLE big (id int, pad text)'));
    proxy = await spawnProxy(info, {
      adminAuth: `user: ${USER}, password: ${PASSWORD}, protect_reads: true`,
      // Bytes only (time far off), so the ban reason of a paused replica is always lag-bytes.
      extra: 'routing: { enabled: true, max_replica_lag: { bytes: 1MB, time: 1h }, unban_after: 1s }',
    });
    origin = `http://127.0.0.1:${proxy.adminPort}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'] });
    context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD }, viewport: { width: 1360, height: 900 } });
  });

  // A test that failed half-way must not leave a replica paused for the next one.
  afterEach(async () => {
    for (const name of paused) await setPaused(name, false);
  });

  afterAll(async () => {
    for (const name of paused) await setPaused(name, false).catch(() => {});
    await browser?.close().catch(() => {});
    await proxy?.stop().catch(() => {});
    await cluster?.stop();
  });

  it('needs the same credentials as /status under protect_reads, and comes with a strict CSP', async () => {
    for (const p of ['/', '/history', '/status']) {
      const r = await fetch(`${origin}${p}`);
      expect(r.status, `${p} without credentials`).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Basic /);
      const wrong = await fetch(`${origin}${p}`, { headers: { authorization: `Basic ${Buffer.from(`${USER}:nope`).toString('base64')}` } });
      expect(wrong.status, `${p} with a wrong password`).toBe(401);
    }
    // A browser without credentials is asked for them (headless, nobody answers): no page.
    const bare = await browser.newContext();
    try {
      await expect((await bare.newPage()).goto(`${origin}/`)).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
    } finally {
      await bare.close();
    }
    const r = await admin('/');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = r.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'; style-src 'sha256-[A-Za-z0-9+/=]+'; connect-src 'self';/);
    expect(csp).not.toMatch(/unsafe/);
    expect(await r.text()).toBe(fs.readFileSync(path.join(REPO_ROOT, 'src/admin/status-page.html'), 'utf8'));
    const h = (await (await admin('/history')).json()) as { interval_ms: number; at: number[]; nodes: { name: string }[] };
    expect(h.at.length).toBeGreaterThan(0);
    expect(h.nodes.map((n) => n.name).sort()).toEqual(['pg1', 'pg2', 'pg3']);
    expect(problems).toEqual([]);
  });

  it('shows the cluster: pg1 primary and pg2, pg3 replicas up, the pools, reads and writes per second', async () => {
    const page = await openPage();
    expect(await text(page, '#primary')).toBe('pg1');
    expect(await cell(page, 'pg1', 'role')).toBe('primary');
    for (const name of ['pg2', 'pg3']) expect(await cell(page, name, 'role')).toBe('replica');
    for (const name of ['pg1', 'pg2', 'pg3']) expect(await cell(page, name, 'health')).toMatch(/^up/);
    expect(await cell(page, 'pg1', 'ban')).toBe('–');

    // Reads and writes through the proxy until the page shows both rates and the pools they used.
    let stop = false;
    const load = throughProxy(async (c) => {
      for (let i = 0; !stop; i++) {
        await c.query('SELECT 1');
        await c.query('INSERT INTO big VALUES ($1, $2)', [i, 'x']);
        await sleep(20);
      }
    });
    try {
      await showing('reads and writes per second', page, async () => [await text(page, '#reads'), await text(page, '#writes')], ([r, w]) => Number(r) > 0 && Number(w) > 0);
      const pools = await showing('a pool on pg1 for app', page, () => text(page, '#pools tbody'), (t) => /pg1\s+app\s+appdb/.test(t));
      expect(pools).toMatch(/pg[23]\s+app\s+appdb/);
      expect(await page.locator('#traffic-chart svg polyline.reads').count()).toBeGreaterThan(0);
      expect(await page.locator('#traffic-chart svg polyline.writes').count()).toBeGreaterThan(0);
    } finally {
      stop = true;
      await load;
    }
    // Each replica has its lag chart; the primary has none.
    for (const name of ['pg2', 'pg3']) expect(await page.locator(`#nodes tr[data-node="${name}"] td.chart svg polyline.lag`).count()).toBeGreaterThan(0);
    expect(await page.locator('#nodes tr[data-node="pg1"] td.chart svg').count()).toBe(0);
    expect(await text(page, '#failovers tbody')).toMatch(/none since pgsplit started/);
    await page.close();
    expect(problems).toEqual([]);
  });

  it('shows the top statements as text (markup in a statement stays text), and "statement statistics off" when /statements is missing or off', async () => {
    const stats = await admin('/statements');
    const answer = stats.status === 200 ? ((await stats.json()) as { enabled: boolean }) : null;
    const page = await openPage();
    if (answer?.enabled) {
      await throughProxy((c) => c.query(`SELECT 1 AS "${MARKUP}"`));
      const shown = await showing('the statement with markup in its text', page, () => text(page, '#statements'), (t) => t.includes(MARKUP));
      expect(shown).toMatch(/calls/);
      expect(await page.locator('#statements img').count()).toBe(0);
      expect(await page.title()).toBe('pgsplit status');
    } else {
      await showing('statement statistics off', page, () => text(page, '#statements'), (t) => t.includes('statement statistics off'));
    }
    await page.close();

    // Whatever this build serves, the page handles a pgsplit without the endpoint (404) and one with statistics off.
    for (const [why, fulfil] of [
      ['404', { status: 404, contentType: 'application/json', body: '{"error":"statement statistics are not available here"}' }],
      ['enabled: false', { status: 200, contentType: 'application/json', body: JSON.stringify({ enabled: false, statements: [], hint: `set stats.enabled ${MARKUP}` }) }],
    ] as const) {
      const ctx = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
      try {
        await ctx.route('**/statements*', (route) => route.fulfill(fulfil));
        const p = await openPage(ctx);
        const t = await text(p, '#statements');
        expect(t, why).toContain('statement statistics off');
        expect(await p.locator('#statements img').count()).toBe(0);
        // The rest of the page is unaffected.
        expect(await cell(p, 'pg1', 'role')).toBe('primary');
      } finally {
        await ctx.close();
      }
    }
    expect(problems).toEqual([]);
  });

  it('shows a replica whose replay is paused as lagging and banned (lag-bytes), its chart with the ban, and recovered after resume; a page opened later still shows it', { timeout: 120_000 }, async () => {
    const page = await openPage();
    await setPaused('pg2', true);
    // ~5 MB of WAL that pg2 receives but does not replay.
    await using(directClient(node('pg1'), info, { user: info.app.user, password: info.app.password, database: info.app.database }), (c) =>
      c.query("INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g"));
    const ban = await showing('pg2 banned', page, () => cell(page, 'pg2', 'ban'), (t) => t.startsWith('banned'));
    expect(ban).toMatch(/lag-bytes/);
    expect(await cell(page, 'pg2', 'health')).toMatch(/replay paused/);
    const lag = await cell(page, 'pg2', 'lag');
    expect(lag, 'lag in MB').toMatch(/^\d+(\.\d)? MB/);
    // The history gets the ban in its next samples: the chart shades it.
    await showing('the ban in pg2\'s chart', page, () => page.locator('#nodes tr[data-node="pg2"] svg rect.banned').count(), (n) => n > 0);
    // pg3 may lag behind the big write for a moment too, but it replays: it is free again while pg2 stays banned.
    await showing('pg3 not banned', page, () => cell(page, 'pg3', 'ban'), (t) => t === '–');
    expect(await cell(page, 'pg2', 'ban')).toMatch(/^banned/);

    await setPaused('pg2', false);
    await showing('pg2 no longer banned', page, () => cell(page, 'pg2', 'ban'), (t) => t === '–');
    await showing('pg2 lag back to 0', page, () => cell(page, 'pg2', 'lag'), (t) => /^0 B/.test(t));
    await page.close();

    // A page opened now draws the last minutes from /history: the lag and the ban are already on pg2's chart.
    const later = await openPage();
    expect(await later.locator('#nodes tr[data-node="pg2"] svg rect.banned').count()).toBeGreaterThan(0);
    expect(await later.locator('#nodes tr[data-node="pg2"] svg text').textContent()).toMatch(/^max \d+(\.\d)? MB/);
    await later.close();
    expect(problems).toEqual([]);
  });

  it('shows a switchover: the new primary, the event pg1 → pg3, and pg1 fenced', { timeout: 120_000 }, async () => {
    const page = await openPage();
    const r = await admin('/switchover', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: 'pg3' }) });
    expect(r.status, await r.clone().text()).toBe(200);
    await showing('pg3 as the primary', page, () => text(page, '#primary'), (t) => t === 'pg3');
    expect(await cell(page, 'pg3', 'role')).toBe('primary');
    const event = await showing('the switchover event', page, () => text(page, '#failovers tbody tr'), (t) => t.includes('switchover'));
    expect(event).toMatch(/pg1 → pg3/);
    expect(event).toMatch(/\d+ ms/);
    // Without a demote_command the old primary is made read-only and fenced.
    await eventually('pg1 fenced in /status', async () => ((await status()).nodes.find((n) => n.name === 'pg1')!.fenced ? true : undefined), 15_000);
    await showing('pg1 fenced', page, () => cell(page, 'pg1', 'role'), (t) => t === 'fenced');
    await showing('pg2 streaming from pg3', page, () => cell(page, 'pg2', 'streams'), (t) => t.startsWith(`${node('pg3').host}:${node('pg3').port}`));

    if (process.env.PGSPLIT_SCREENSHOT === '1') {
      // Some traffic, so the rates and statements in the picture are not empty.
      await throughProxy(async (c) => {
        for (let i = 0; i < 100; i++) {
          await c.query('SELECT count(*) FROM big WHERE id < $1', [i]);
          if (i % 4 === 0) await c.query('INSERT INTO big VALUES ($1, $2)', [i, 'y']);
          await sleep(30);
        }
      });
      await refreshed(page, Number(await page.evaluate(() => document.body.dataset.refreshed)) + 1);
      const file = path.join(REPO_ROOT, 'docs/status-page.png');
      fs.mkdirSync(path.dirname(file), { recursive: true });
      await page.screenshot({ path: file, fullPage: true });
      console.log(`[status page] screenshot written to ${file}`);
    }
    await page.close();
    expect(problems).toEqual([]);
  });
});
