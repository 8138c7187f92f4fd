// Seeded protocol fuzzer: mutated and random frontend traffic in every session state against pgsplit as its own process; after every batch the proxy must be alive, bounded in memory and still correct for a well-behaved client.
import fs from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { caseSeed, describePlan, generateCase, planMessages, type Case, type FuzzTargets } from '../harness/fuzz.js';
import { playCase, type CaseContext, type CaseOutcome } from '../harness/fuzz-client.js';
import { spawnProxy, type ProxyProcess } from '../harness/proxy.js';
import { processTree } from '../../scripts/lib/proc-stats.js';
import { directClient, eventually } from './helpers.js';

const info = inject('cluster');

// Replay a run with PGSPLIT_FUZZ_SEED; make it longer with PGSPLIT_FUZZ_MESSAGES; replay single cases with
// PGSPLIT_FUZZ_CASES=<case seed>,<case seed> (case seeds are printed with every failure).
const SEED = Number(process.env.PGSPLIT_FUZZ_SEED ?? 90017) >>> 0;
const MESSAGES = Math.max(1, Number(process.env.PGSPLIT_FUZZ_MESSAGES ?? 3000));
// PGSPLIT_FUZZ_WORKERS=2 fuzzes a proxy with worker processes (workers: N), where sessions live in the workers.
const WORKERS = Math.max(0, Number(process.env.PGSPLIT_FUZZ_WORKERS ?? 0));
const ONLY = process.env.PGSPLIT_FUZZ_CASES ? process.env.PGSPLIT_FUZZ_CASES.split(',').map((s) => Number(s.trim()) >>> 0) : null;
const BATCH_MESSAGES = 100;
const CONCURRENCY = ONLY ? 1 : 4;
const RSS_LIMIT_MB = 400;
const LOGIN_TIMEOUT_MS = 2_000;
// More than this many failed cases and the run stops early: the report is long enough, and hangs cost seconds each.
const MAX_CASE_FAILURES = 12;

const SCHEMA = 'pgsplit_fuzz';
const targets: FuzzTargets = { user: info.app.user, password: info.app.password, database: info.app.database, table: `${SCHEMA}.copy_in` };

let proxy: ProxyProcess;
/** The primary's own port: a case that hangs through the proxy is replayed there to tell proxy bugs from fuzzer mistakes. */
let primaryPort = 0;
let steady: pg.Client | null = null;
let logTail = '';
let errorLines = 0;

const client = (name: string): pg.Client => {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: info.app.user, password: info.app.password, database: info.app.database, application_name: name, connectionTimeoutMillis: 10_000 });
  c.on('error', () => {});
  return c;
};

function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

/** `read` of each process of the proxy (its workers too, with workers: N); a process gone meanwhile is skipped. */
function perProcess(pid: number, read: (p: number) => number): number[] {
  const out: number[] = [];
  for (const p of processTree(pid) ?? [pid]) {
    try {
      out.push(read(p));
    } catch {
      /* the process is gone */
    }
  }
  return out;
}

/** RSS of the largest process of the proxy (each worker holds its own sessions). */
const rssMb = (pid: number): number =>
  Math.max(0, ...perProcess(pid, (p) => Number(/VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) / 1024));

/** Open file descriptors of the proxy and its workers together. */
const openFds = (pid: number): number => perProcess(pid, (p) => fs.readdirSync(`/proc/${p}/fd`).length).reduce((a, b) => a + b, 0);

/**
 * Server connections of the app user besides the steady client's, as pg_stat_activity shows them: if some stay, their
 * last query tells what held them (a probe's text carries its case seed; the proxy's replay of session settings,
 * set_config(...), means the statement it prepared the connection for never ran).
 */
async function appBackends(): Promise<string[]> {
  const out: string[] = [];
  for (const node of info.nodes) {
    const d = await directClient(node, info);
    try {
      const r = await d.query(
        "SELECT pid, state, application_name, round(extract(epoch FROM now() - state_change))::int AS seconds, left(query, 200) AS query FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend' AND application_name <> 'fuzz-steady'",
        [info.app.user],
      );
      for (const row of r.rows) out.push(`${node.name} pid ${row.pid}: ${row.state} for ${row.seconds} s, application_name ${JSON.stringify(row.application_name)}, last query ${JSON.stringify(row.query)}`);
    } finally {
      await d.end().catch(() => {});
    }
  }
  return out;
}

describe('protocol fuzzer', () => {
  beforeAll(async () => {
    proxy = await spawnProxy(info, {
      logLevel: 'warn',
      extra: `${WORKERS > 0 ? `workers: ${WORKERS}\n` : ''}pool: { server_idle_timeout: 1s }\nlimits: { max_message_size: 1MB, client_login_timeout: 2s, max_pipeline: 1MB, max_prepared_statements: 200, max_session_settings: 100 }`,
    });
    proxy.child.stderr!.on('data', (d: Buffer) => {
      const text = d.toString();
      errorLines += (text.match(/"level":(50|60)/g) ?? []).length;
      logTail = (logTail + text).slice(-20_000);
    });
    const admin = client('fuzz-setup');
    await admin.connect();
    try {
      await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
      await admin.query(`CREATE SCHEMA ${SCHEMA}`);
      await admin.query(`CREATE TABLE ${SCHEMA}.copy_in (id serial PRIMARY KEY, v text)`);
      await admin.query(`CREATE TABLE ${SCHEMA}.checks (id int PRIMARY KEY, v text)`);
    } finally {
      await admin.end();
    }
    steady = client('fuzz-steady');
    await steady.connect();
    for (const node of info.nodes) {
      const d = await directClient(node, info);
      try {
        if (!(await d.query('SELECT pg_is_in_recovery() AS r')).rows[0].r) primaryPort = node.port;
      } finally {
        await d.end().catch(() => {});
      }
    }
  });

  afterAll(async () => {
    await steady?.end().catch(() => {});
    if (proxy && proxy.child.exitCode === null && proxy.child.signalCode === null) {
      const c = client('fuzz-setup');
      await within('cleanup', 10_000, c.connect().then(() => c.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`))).catch(() => {});
      await c.end().catch(() => {});
    }
    await proxy?.stop();
  });

  it(
    `survives ${ONLY ? `cases ${ONLY.join(',')}` : `${MESSAGES} seeded messages`} in every session state (seed ${SEED})`,
    async () => {
      console.log(`fuzz: seed=${SEED} messages=${MESSAGES}${ONLY ? ` cases=${ONLY.join(',')}` : ''} (replay with PGSPLIT_FUZZ_SEED=${SEED} PGSPLIT_FUZZ_MESSAGES=${MESSAGES}${WORKERS ? ` PGSPLIT_FUZZ_WORKERS=${WORKERS}` : ''})`);
      const pid = proxy.child.pid!;
      const ctx: CaseContext = { port: proxy.port, targets, loginTimeoutMs: LOGIN_TIMEOUT_MS, probeTimeoutMs: 10_000 };
      const started = Date.now();
      const fdsBefore = openFds(pid);
      let messages = 0;
      let connections = 0;
      let checks = 0;
      let maxRss = rssMb(pid);
      let index = 0;
      const failures: { c: Case; o: CaseOutcome }[] = [];
      const notes = new Map<string, { count: number; example: Case }>();
      const sqlstates = new Map<string, number>();
      const phases = { 'pre-auth': 0, auth: 0, 'post-auth': 0 };
      let closedByProxy = 0;
      const busy = { 'pre-auth': 0, auth: 0, 'post-auth': 0 };
      /** The cases started last, for the report when a check fails. */
      const recent: Case[] = [];

      // When the proxy exits, the suspects are the cases on the wire then, or that ended in the second before.
      const running = new Set<Case>();
      const ended: { c: Case; at: number }[] = [];
      let inFlightAtExit: Case[] | null = null;
      proxy.child.once('exit', () => (inFlightAtExit = [...ended.filter((e) => e.at > Date.now() - 1_000).map((e) => e.c), ...running]));
      const report = (batch: Case[]): string =>
        [
          ...(inFlightAtExit
            ? [`seed=${SEED}; the proxy exited while these cases were running or had just ended (replay one with PGSPLIT_FUZZ_CASES=<case seed>):`, ...(inFlightAtExit as Case[]).map((c) => `  case ${c.seed}: ${describePlan(c).slice(0, 400)}`)]
            : []),
          `seed=${SEED}; the cases started last (replay one with PGSPLIT_FUZZ_CASES=<case seed>):`,
          ...batch.map((c) => `  case ${c.seed}: ${describePlan(c).slice(0, 400)}`),
          `proxy log (last lines):`,
          logTail.split('\n').slice(-15).join('\n'),
        ].join('\n');

      /** The proxy is alive, bounded, and a well-behaved client still gets correct answers. */
      const check = async (batch: Case[]): Promise<void> => {
        const dead = proxy.child.exitCode !== null || proxy.child.signalCode !== null;
        expect(dead, `the proxy died (exit ${proxy.child.exitCode}, signal ${proxy.child.signalCode})\n${report(batch)}`).toBe(false);
        const rss = rssMb(pid);
        maxRss = Math.max(maxRss, rss);
        expect(rss, `proxy RSS ${rss.toFixed(0)} MB is over ${RSS_LIMIT_MB} MB\n${report(batch)}`).toBeLessThan(RSS_LIMIT_MB);
        const n = ++checks;
        try {
          const r = await within('SELECT $1::int + 1', 15_000, steady!.query('SELECT $1::int + 1 AS v', [n]));
          expect(r.rows).toEqual([{ v: n + 1 }]);
          const token = `check-${SEED}-${n}`;
          await within('INSERT', 15_000, steady!.query(`INSERT INTO ${SCHEMA}.checks(id, v) VALUES ($1, $2)`, [n, token]));
          const back = await within('SELECT after INSERT', 15_000, steady!.query(`SELECT v FROM ${SCHEMA}.checks WHERE id = $1`, [n]));
          expect(back.rows).toEqual([{ v: token }]);
          const fresh = client('fuzz-fresh');
          try {
            await within('a new login', 15_000, fresh.connect());
            const f = await within('SELECT on a new session', 15_000, fresh.query('SELECT $1::text AS t, $2::int * 2 AS d', [token, n]));
            expect(f.rows).toEqual([{ t: token, d: n * 2 }]);
          } finally {
            await within('end', 5_000, fresh.end()).catch(() => {});
          }
        } catch (err) {
          // A crash shows up here first when the check raced the exit; say so rather than blame the session.
          await new Promise((r) => setTimeout(r, 500));
          const gone = proxy.child.exitCode !== null || proxy.child.signalCode !== null;
          if (gone) throw new Error(`the proxy died (exit ${proxy.child.exitCode}, signal ${proxy.child.signalCode})\n${report(batch)}`);
          throw new Error(`a well-behaved session through the proxy failed after ${messages} fuzz messages: ${(err as Error).message}\n${report(batch)}`);
        }
      };

      const settle = async (c: Case, o: CaseOutcome): Promise<void> => {
        if (o.failure?.startsWith('hang') && primaryPort) {
          // Only a proxy bug if PostgreSQL itself answers the same traffic.
          const direct = await playCase(c, { ...ctx, port: primaryPort });
          if (direct.failure) {
            o.notes.push(`no answer through the proxy, nor from PostgreSQL directly (${direct.failure.slice(0, 60)})`);
            o.failure = null;
          } else o.failure += '; PostgreSQL directly answered the same traffic';
        }
        done += planMessages(c.plan);
        phases[c.plan.phase]++;
        busy[c.plan.phase] += o.ms;
        if (o.closedByProxy) closedByProxy++;
        for (const s of o.sqlstates) sqlstates.set(s, (sqlstates.get(s) ?? 0) + 1);
        for (const n of o.notes) {
          const key = n.replace(/\d+ ms after/, 'N ms after');
          const e = notes.get(key);
          if (e) e.count++;
          else notes.set(key, { count: 1, example: c });
        }
        if (o.failure) failures.push({ c, o });
        if (ONLY) console.log(`fuzz: case ${c.seed} (${o.ms} ms): ${describePlan(c).slice(0, 2_000)} -> ${o.failure ?? 'ok'}; closed by proxy: ${o.closedByProxy}; sqlstates: ${o.sqlstates.join(',') || '-'}${o.notes.length ? `; ${o.notes.join('; ')}` : ''}`);
      };

      // Cases run CONCURRENCY at a time on their own connections; every BATCH_MESSAGES finished messages the proxy
      // is checked while the next cases keep going (a slow case, like one waiting out the login timeout, holds no one up).
      await check([]);
      const onlyQueue = ONLY ? [...ONLY] : null;
      const inFlight = new Set<Promise<void>>();
      let done = 0;
      let nextCheck = BATCH_MESSAGES;
      while ((onlyQueue ? onlyQueue.length > 0 : messages < MESSAGES) && failures.length <= MAX_CASE_FAILURES) {
        if (inFlight.size >= CONCURRENCY) await Promise.race(inFlight);
        if (done >= nextCheck) {
          await check(recent);
          nextCheck = done + BATCH_MESSAGES;
        }
        const c = generateCase(onlyQueue ? onlyQueue.shift()! : caseSeed(SEED, index++), targets);
        messages += planMessages(c.plan);
        connections++;
        recent.push(c);
        running.add(c);
        if (recent.length > 3 * CONCURRENCY + 10) recent.shift();
        const p: Promise<void> = playCase(c, ctx)
          .then((o) => settle(c, o))
          .finally(() => {
            inFlight.delete(p);
            running.delete(c);
            ended.push({ c, at: Date.now() });
            if (ended.length > 50) ended.shift();
          });
        inFlight.add(p);
      }
      await Promise.all(inFlight);
      await check(recent);

      // Nothing the fuzzer opened may outlive it: not the proxy's sockets, not server connections.
      const fdSettled = await eventually(
        'the proxy to close the fuzzer connections',
        () => (openFds(pid) <= fdsBefore + 8 ? true : undefined),
        LOGIN_TIMEOUT_MS + 15_000,
        250,
      ).catch(() => false);
      const fdsAfter = openFds(pid);
      const backendsSettled = await eventually('server connections of closed sessions to go', async () => ((await appBackends()).length === 0 ? true : undefined), 15_000, 250).catch(() => false);
      const backendsLeft = await appBackends();

      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      console.log(
        [
          `fuzz: seed=${SEED}, ${messages} messages over ${connections} connections in ${seconds} s${failures.length > MAX_CASE_FAILURES ? ` (stopped early: over ${MAX_CASE_FAILURES} failed cases)` : ''} ` +
            `(connections: pre-auth ${phases['pre-auth']}, auth ${phases.auth}, post-auth ${phases['post-auth']}; ${closedByProxy} closed by the proxy; ${checks} well-behaved checks)`,
          `fuzz: connection time: pre-auth ${(busy['pre-auth'] / 1000).toFixed(1)} s, auth ${(busy.auth / 1000).toFixed(1)} s, post-auth ${(busy['post-auth'] / 1000).toFixed(1)} s (${CONCURRENCY} at a time)`,
          `fuzz: proxy RSS max ${maxRss.toFixed(0)} MB${WORKERS ? ` (largest of the coordinator and ${WORKERS} workers)` : ''}; open fds ${fdsBefore} before, ${fdsAfter} after; server connections left ${backendsLeft.length}; proxy error log lines ${errorLines}`,
          `fuzz: SQLSTATEs from the proxy: ${[...sqlstates].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} x${v}`).join(', ') || 'none'}`,
          ...[...notes].map(([n, e]) => `fuzz: note (${e.count}x, e.g. case ${e.example.seed}: ${describePlan(e.example).slice(0, 200)}): ${n}`),
          ...failures.map(({ c, o }) => `fuzz: FAILED case ${c.seed}: ${describePlan(c).slice(0, 600)}\n      -> ${o.failure}`),
        ].join('\n'),
      );
      expect(failures.map(({ c, o }) => `case ${c.seed}: ${o.failure}`), `cases that failed (seed ${SEED}; replay with PGSPLIT_FUZZ_CASES=...)`).toEqual([]);
      expect(fdSettled, `the proxy still holds ${fdsAfter - fdsBefore} more file descriptors than before the fuzzer ran (sockets not closed)`).toBe(true);
      expect(backendsSettled, `${backendsLeft.length} server connections of closed fuzz sessions are still open:\n${backendsLeft.join('\n')}`).toBe(true);
    },
    Math.max(240_000, MESSAGES * 80),
  );
});
