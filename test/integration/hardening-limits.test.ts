// What one logged-in client can make pgsplit hold is bounded: a client faster than its server is paused, per-session lists have limits, idle sessions and transactions time out.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type pg from 'pg';
import { backendsRunning, directClient, eventually, rejection, sleep } from './helpers.js';
import {
  bindMsg, ChildProxy, copyData, copyDone, currentPrimary, endedWithin, errorIn, executeMsg, flushMsg, nextClientError, parseMsg, queryMsg, RawConn, rssMB, rssPeak, streamInto, syncMsg, within,
} from './hardening-support.js';

const info = inject('cluster');
const MB = 1024 * 1024;
const login = { user: info.app.user, database: info.app.database };

/** Runs SQL on the current primary's appdb as the superuser; the rows of its last statement. */
async function onPrimary<T = Record<string, unknown>>(sql: string): Promise<T[]> {
  const c = await directClient(await currentPrimary(info), info, { database: info.app.database });
  try {
    const r = (await c.query(sql)) as unknown as pg.QueryResult | pg.QueryResult[];
    return (Array.isArray(r) ? r[r.length - 1]!.rows : r.rows) as T[];
  } finally {
    await c.end().catch(() => {});
  }
}

describe('a client that sends faster than its server reads is paused, not buffered', () => {
  // auth trust: the raw protocol clients below log in without SCRAM.
  const proxy = new ChildProxy(info, { auth: 'trust', extra: 'limits: { max_pipeline: 1MB }' });
  const table = `hardening_copy_${process.pid}`;

  beforeAll(async () => {
    await proxy.ensure();
    await onPrimary(`DROP TABLE IF EXISTS ${table}; CREATE UNLOGGED TABLE ${table} (id int NOT NULL, v text NOT NULL); ALTER TABLE ${table} OWNER TO ${info.app.user}`);
  });

  afterAll(async () => {
    await onPrimary(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await proxy.stop();
  });

  it('COPY FROM STDIN into a locked table: the proxy holds a few MB, then the COPY completes with every row', async () => {
    await proxy.fresh();
    const TOTAL = 256 * MB;
    const lock = await directClient(await currentPrimary(info), info, { database: info.app.database });
    let locked = false;
    const c = await RawConn.login(proxy.port, login);
    try {
      await lock.query('BEGIN');
      await lock.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      locked = true;
      await c.query('SELECT 1');
      const base = rssMB(proxy.pid);
      const peak = rssPeak(proxy.pid);
      // The COPY waits for the lock; the client does not wait for CopyInResponse and streams its rows (8 kB each, 8 per CopyData).
      c.socket.write(queryMsg(`COPY ${table} (id, v) FROM STDIN`));
      const fill = 'x'.repeat(8000);
      let rows = 0;
      const next = (): Buffer => {
        let s = '';
        for (let k = 0; k < 8; k++) s += `${++rows}\t${fill}\n`;
        return copyData(Buffer.from(s));
      };
      const first = await streamInto(c.socket, TOTAL, next, { deadline: Date.now() + 30_000, stallMs: 1_500 });
      const held = peak.stop() - base;
      expect(first.closed, 'the proxy closed the COPY connection').toBe(false);
      expect(held, `proxy RSS grew by ${held.toFixed(0)} MB while ${(first.written / MB).toFixed(0)} MB of COPY data were sent into a locked table`).toBeLessThan(64);

      await lock.query('COMMIT');
      locked = false;
      const rest = await streamInto(c.socket, TOTAL - first.written, next, { deadline: Date.now() + 45_000 });
      expect(rest.closed || rest.timedOut, 'the rest of the COPY data could not be sent').toBe(false);
      c.socket.write(copyDone());
      const answer = await c.until('Z', 45_000);
      expect(errorIn(answer)).toBeUndefined();
      const complete = answer.find((m) => m.type === 'C');
      expect(complete?.body.toString('utf8', 0, complete.body.length - 1)).toBe(`COPY ${rows}`);
      const [count] = await onPrimary<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
      expect(count!.n).toBe(rows);
      proxy.expectAlive();
    } finally {
      if (locked) await lock.query('ROLLBACK').catch(() => {});
      await lock.end().catch(() => {});
      c.destroy();
    }
  });

  it.each([
    ['reads routed to a replica', ''],
    ['statements on the primary', '/* pgsplit:primary */ '],
  ])('80 MB of pipelined queries from a client that reads no answers (%s): the proxy holds about max_pipeline', async (_what, hint) => {
    await proxy.fresh();
    const c = await RawConn.login(proxy.port, login);
    try {
      await c.query('SELECT 1');
      // Stop reading: answers (1 MB each) pile up until the server cannot send, and then nothing should move.
      c.socket.pause();
      const base = rssMB(proxy.pid);
      const peak = rssPeak(proxy.pid);
      const q = queryMsg(`${hint}SELECT repeat('x', 1000000) /* ${'p'.repeat(60_000)} */`);
      const r = await streamInto(c.socket, 80 * MB, () => q, { deadline: Date.now() + 30_000, stallMs: 1_500 });
      const held = peak.stop() - base;
      console.log(`[pipeline] ${_what}: proxy RSS +${held.toFixed(1)} MB while ${(r.written / MB).toFixed(1)} MB of queries were pipelined`);
      expect(held, `proxy RSS grew by ${held.toFixed(0)} MB while ${(r.written / MB).toFixed(0)} MB of queries were pipelined (limits.max_pipeline: 1MB)`).toBeLessThan(48);
      proxy.expectAlive();
    } finally {
      c.destroy();
    }
    await proxy.stillServes();
  });

  it('a client that leaves while it is not being read (over max_pipeline) is noticed: its statement is cancelled', async () => {
    await proxy.fresh();
    const marker = `paused_leaver_${process.pid}`;
    const everywhere = await Promise.all(info.nodes.map((n) => directClient(n, info)));
    const c = await RawConn.login(proxy.port, login);
    try {
      await c.query('SELECT 1');
      // A long statement, then 250 statements of 2 kB pipelined behind it: about 1.6 MB as the proxy counts them (their
      // bytes plus its own cost per unit), over limits.max_pipeline (1 MB), so the proxy stops reading the client; and
      // within the 1 MB more it reads while paused to see whether the client is still there (beyond that, a vanished
      // client is only noticed when its statement ends, as with PostgreSQL itself).
      c.socket.write(queryMsg(`SELECT pg_sleep(60) /* ${marker} */`));
      const q = queryMsg(`SELECT 1 /* ${'p'.repeat(2000)} */`);
      c.socket.write(Buffer.concat(Array.from({ length: 250 }, () => q)));
      await eventually('the long statement to run', async () => ((await backendsRunning(everywhere, marker)).some((b) => b.state === 'active') ? true : undefined));
      await sleep(300);
      c.destroy();
      // Unnoticed, the statement would run its full minute on a server connection nobody can use.
      await eventually('no backend left running the statement', async () => ((await backendsRunning(everywhere, marker)).length === 0 ? true : undefined), 10_000);
      proxy.expectAlive();
    } finally {
      c.destroy();
      await Promise.all(everywhere.map((d) => d.end().catch(() => {})));
    }
  });
});

describe('tiny statements pipelined by a client that reads no answers (default limits)', () => {
  // limits.max_pipeline counts what the proxy holds per statement, not only the bytes: before, 16 MB of pipelined
  // SELECT 1 held 1.1 GB (a unit's bookkeeping is ~4 kB for a 14-byte message), and Execute+Flush without a Sync
  // kept a unit and a statistics run per step: 1.5 GB. Statistics stay on (the default), as their runs grew too.
  const proxy = new ChildProxy(info, { auth: 'trust' });
  beforeAll(() => proxy.ensure());
  afterAll(() => proxy.stop());

  it.each([
    ['Query SELECT 1, routed to a replica', 'SELECT 1', () => queryMsg('SELECT 1')],
    ['Query SELECT 1 on the primary', 'SELECT 1', () => queryMsg('/* pgsplit:primary */ SELECT 1')],
    ['Bind/Execute/Sync of a prepared SELECT 1', 'SELECT 1', () => Buffer.concat([bindMsg('', 's1'), executeMsg(''), syncMsg()])],
    ['Bind/Execute/Flush without a Sync', 'SELECT 1', () => Buffer.concat([bindMsg('', 's1'), executeMsg(''), flushMsg()])],
    ['Bind/Execute/Flush without a Sync, after an error (the server skips to the Sync and answers nothing)', 'SELECT 1/0', () => Buffer.concat([bindMsg('', 's1'), executeMsg(''), flushMsg()])],
  ])('%s: the proxy holds tens of MB, not a GB', async (_what, statement, message) => {
    await proxy.fresh();
    const c = await RawConn.login(proxy.port, login);
    try {
      await c.query('SELECT 1');
      c.socket.write(Buffer.concat([parseMsg('s1', statement), syncMsg()]));
      await c.until('Z', 10_000);
      c.socket.pause();
      const base = rssMB(proxy.pid);
      const peak = rssPeak(proxy.pid);
      const chunk = Buffer.concat(Array.from({ length: 500 }, message));
      const r = await streamInto(c.socket, 120 * MB, () => chunk, { deadline: Date.now() + 12_000, stallMs: 2_000 });
      await sleep(500);
      const held = peak.stop() - base;
      console.log(`[pipeline] ${_what}: proxy RSS +${held.toFixed(1)} MB while ${(r.written / MB).toFixed(1)} MB (${Math.round(r.written / (chunk.length / 500))} messages) were sent`);
      expect(held, `proxy RSS grew by ${held.toFixed(0)} MB`).toBeLessThan(150);
      proxy.expectAlive();
    } finally {
      c.destroy();
    }
    await proxy.stillServes();
  }, 60_000);

  it('a portal read one row at a time with Execute+Flush and no Sync (as a cursor does) runs 20,000 steps and then its Sync', async () => {
    const c = await RawConn.login(proxy.port, login);
    try {
      const steps = 20_000;
      c.socket.write(Buffer.concat([parseMsg('', `SELECT g FROM generate_series(1, ${steps}) g`), bindMsg('cur', ''), flushMsg()]));
      await c.until('2', 10_000);
      const base = rssMB(proxy.pid);
      let rows = 0;
      for (let i = 0; i < steps; i++) {
        c.socket.write(Buffer.concat([executeMsg('cur', 1), flushMsg()]));
        const got = await c.until('s', 10_000);
        rows += got.filter((m) => m.type === 'D').length;
      }
      c.socket.write(syncMsg());
      const end = await c.until('Z', 10_000);
      const grew = rssMB(proxy.pid) - base;
      console.log(`[pipeline] cursor: ${rows} rows in ${steps} Execute+Flush steps; proxy RSS +${grew.toFixed(1)} MB`);
      expect(rows).toBe(steps);
      // Each step used to stay in flight until the Sync: +100 MB for these 20,000 steps.
      expect(grew, 'proxy RSS growth over the cursor read (MB)').toBeLessThan(40);
      expect(errorIn(end)).toBeUndefined();
    } finally {
      c.destroy();
    }
  }, 120_000);
});

describe('per-session bounds on prepared statements and recorded settings', () => {
  const proxy = new ChildProxy(info, { extra: 'limits: { max_prepared_statements: 50, max_session_settings: 20 }' });
  beforeAll(() => proxy.ensure());
  afterAll(() => proxy.stop());

  it('the 51st named prepared statement gets 53400 and the session goes on', async () => {
    const c = await proxy.client();
    try {
      for (let i = 1; i <= 50; i++) {
        expect((await c.query({ name: `hs${i}`, text: `SELECT ${i}::int AS n` })).rows).toEqual([{ n: i }]);
      }
      const err = await rejection(c.query({ name: 'hs51', text: 'SELECT 51::int AS n' }));
      expect(err.code, err.message).toBe('53400');
      // As on PostgreSQL, the refused statement does not exist: node-postgres prepares it again (before, it took it
      // for prepared after the refusal's ParseComplete, and the retry got 26000).
      expect((await rejection(c.query({ name: 'hs51', text: 'SELECT 51::int AS n' }))).code).toBe('53400');
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      // The statements prepared before the limit still run.
      expect((await c.query({ name: 'hs1', text: 'SELECT 1::int AS n' })).rows).toEqual([{ n: 1 }]);
      expect((await c.query({ name: 'hs50', text: 'SELECT 50::int AS n' })).rows).toEqual([{ n: 50 }]);
    } finally {
      await c.end().catch(() => {});
    }
    proxy.expectAlive();
  });

  it('prepared statements of 1 MB: past limits.max_prepared_bytes (16MB) a Parse gets 53400, the session goes on, and the proxy holds no more', async () => {
    await proxy.fresh();
    const c = await proxy.client();
    try {
      const base = rssMB(proxy.pid);
      const pad = 'x'.repeat(1024 * 1024);
      let prepared = 0;
      let refused = 0;
      for (let i = 1; i <= 150; i++) {
        try {
          await c.query({ name: `mb${i}`, text: `SELECT ${i}::int AS n /* ${pad} */` });
          prepared++;
        } catch (err) {
          expect((err as { code?: string }).code, (err as Error).message).toBe('53400');
          expect((err as Error).message).toContain('limits.max_prepared_bytes');
          refused++;
        }
      }
      const grew = rssMB(proxy.pid) - base;
      console.log(`[prepared] 150 Parses of 1 MB: ${prepared} prepared, ${refused} refused; proxy RSS +${grew.toFixed(0)} MB`);
      expect(prepared).toBe(15);
      expect(refused).toBe(135);
      // Before the byte bound every one was kept: +313 MB.
      expect(grew, 'proxy RSS growth (MB)').toBeLessThan(120);
      expect((await c.query({ name: 'mb1', text: `SELECT 1::int AS n /* ${pad} */` })).rows).toEqual([{ n: 1 }]);
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await c.end().catch(() => {});
    }
    proxy.expectAlive();
  }, 120_000);

  it('SETs of 60 kB: the one that takes the recorded text past limits.max_session_settings_bytes (1MB) gets 53400, and the rest hold', async () => {
    const c = await proxy.client();
    try {
      const value = (i: number) => `${i}`.padEnd(60_000, 'v');
      // 17 of them make about 1.02 MB of SET text: under the limit.
      for (let i = 1; i <= 17; i++) await c.query(`SET big.s${i} = '${value(i)}'`);
      const err = await rejection(c.query(`SET big.s18 = '${value(18)}'`));
      expect(err.code, err.message).toBe('53400');
      expect(err.message).toContain('limits.max_session_settings_bytes');
      // A short value for a recorded name fits, and every recorded setting holds wherever the next statement runs.
      await c.query("SET big.s17 = 'short'");
      await c.query(`SET big.s18 = '${value(18)}'`);
      const r = await c.query("SELECT length(current_setting('big.s1')) AS s1, current_setting('big.s17') AS s17, length(current_setting('big.s18')) AS s18");
      expect(r.rows).toEqual([{ s1: 60_000, s17: 'short', s18: 60_000 }]);
    } finally {
      await c.end().catch(() => {});
    }
    proxy.expectAlive();
  });

  it('the 21st distinct SET gets 53400 and the session goes on with its settings', async () => {
    const c = await proxy.client();
    try {
      for (let i = 1; i <= 20; i++) await c.query(`SET my.s${i} = 'a${i}'`);
      const err = await rejection(c.query("SET my.s21 = 'a21'"));
      expect(err.code, err.message).toBe('53400');
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      // A setting already recorded can still change; the ones set hold wherever the next statement runs.
      await c.query("SET my.s1 = 'b1'");
      expect((await c.query("SELECT current_setting('my.s1') AS s1, current_setting('my.s20') AS s20")).rows).toEqual([{ s1: 'b1', s20: 'a20' }]);
    } finally {
      await c.end().catch(() => {});
    }
    proxy.expectAlive();
  });
});

describe('idle timeouts', () => {
  const proxy = new ChildProxy(info, { extra: 'limits: { idle_transaction_timeout: 1s, client_idle_timeout: 2s }' });
  const table = `hardening_idle_${process.pid}`;

  beforeAll(async () => {
    await proxy.ensure();
    await onPrimary(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (id int PRIMARY KEY); ALTER TABLE ${table} OWNER TO ${info.app.user}`);
  });

  afterAll(async () => {
    await onPrimary(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await proxy.stop();
  });

  it('a session idle in a transaction is closed with 25P03 and its transaction rolled back', async () => {
    const c = await proxy.client();
    try {
      const closedWith = nextClientError(c, 10_000);
      await c.query('BEGIN');
      await c.query(`INSERT INTO ${table} (id) VALUES (1)`);
      const err = await closedWith;
      expect(err, 'the idle transaction was not ended within 10 s').not.toBeNull();
      expect(err!.code, err!.message).toBe('25P03');
      expect(await endedWithin(c, 10_000)).toBe(true);
    } finally {
      await c.end().catch(() => {});
    }
    // Rolled back, not committed and not left open: the same key inserts at once (an open transaction would block it, a commit would conflict).
    const rows = await onPrimary<{ n: number }>(`SET lock_timeout = '10s'; INSERT INTO ${table} (id) VALUES (1); SELECT count(*)::int AS n FROM ${table}`);
    expect(rows).toEqual([{ n: 1 }]);
    proxy.expectAlive();
  });

  it('an idle session is closed with 57P05 while a session that keeps working is not', async () => {
    const idle = await proxy.client();
    const busy: pg.Client = await proxy.client();
    let working = true;
    let answered = 0;
    try {
      const closedWith = nextClientError(idle, 10_000);
      const work = (async () => {
        while (working) {
          await within('SELECT 1 on the busy session', busy.query('SELECT 1'), 10_000);
          answered++;
          await sleep(200);
        }
      })();
      work.catch(() => {}); // awaited below; this only keeps an early failure from being reported as unhandled
      const err = await closedWith;
      working = false;
      await work;
      expect(err, 'the idle session was not closed within 10 s').not.toBeNull();
      expect(err!.code, err!.message).toBe('57P05');
      expect(await endedWithin(idle, 10_000)).toBe(true);
      // The busy session worked through the whole idle period and is still open.
      expect(answered).toBeGreaterThan(0);
      expect((await busy.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      working = false;
      await idle.end().catch(() => {});
      await busy.end().catch(() => {});
    }
    proxy.expectAlive();
  });
});
