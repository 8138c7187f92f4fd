// Before login a client holds little and not for long: bad startup bytes are cut off unbuffered, logins have a deadline, and connection slots count from accept.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type pg from 'pg';
import { eventually, rejection, sleep, startupMessage } from './helpers.js';
import { ChildProxy, errorIn, RawConn, rssMB, rssPeak, streamInto, within } from './hardening-support.js';

const info = inject('cluster');
const MB = 1024 * 1024;
const login = { user: info.app.user, database: info.app.database };

describe('unauthenticated clients are cut off without being buffered', () => {
  const proxy = new ChildProxy(info, {});
  beforeAll(() => proxy.ensure());
  afterAll(() => proxy.stop());

  it('a startup header claiming 1 GB, then 48 MB of bytes: closed at once, not buffered, others keep answering', async () => {
    const other = await proxy.client();
    const c = await RawConn.open(proxy.port, { allowHalfOpen: true });
    let flooding = true;
    try {
      const base = rssMB(proxy.pid);
      const peak = rssPeak(proxy.pid);
      // A concurrent authenticated session asks SELECT 1 over and over while the flood goes on.
      let answered = 0;
      const pings = (async () => {
        while (flooding) {
          await within('SELECT 1 during the flood', other.query('SELECT 1'), 20_000);
          answered++;
          await sleep(100);
        }
      })();
      pings.catch(() => {}); // awaited below; this only keeps an early failure from being reported as unhandled
      const head = Buffer.alloc(8);
      head.writeInt32BE(1024 ** 3, 0);
      head.writeInt32BE(196608, 4);
      const junk = Buffer.alloc(64 * 1024, 'g');
      const deadline = Date.now() + 15_000;
      const r = await streamInto(c.socket, 8 + 48 * MB, (i) => (i === 0 ? head : junk), { deadline });
      // Everything may have been taken in before the close: wait for it (a half-close does not count).
      const closed = r.closed || (await c.closedWithin(Math.max(0, deadline - Date.now())));
      flooding = false;
      await pings;
      const top = peak.stop();
      expect(closed, `socket still open after ${(r.written / MB).toFixed(1)} MB were sent (proxy RSS ${base.toFixed(0)} MB -> peak ${top.toFixed(0)} MB)`).toBe(true);
      expect(top - base, `proxy RSS ${base.toFixed(0)} MB -> peak ${top.toFixed(0)} MB`).toBeLessThan(50);
      expect(answered).toBeGreaterThan(0);
      proxy.expectAlive();
      await proxy.stillServes();
    } finally {
      flooding = false;
      c.destroy();
      await other.end().catch(() => {});
    }
  });

  it.each([
    ['an unsupported protocol version', startupMessage(login, 9999 << 16), '0A000'],
    ['a cancel request', (() => {
      const b = Buffer.alloc(16);
      b.writeInt32BE(16, 0);
      b.writeInt32BE(80877102, 4);
      b.writeInt32BE(424242, 8);
      b.writeInt32BE(171717, 12);
      return b;
    })(), null],
  ])('after %s, bytes the client keeps sending are discarded and the proxy closes the socket', async (_what, first, sqlstate) => {
    const c = await RawConn.open(proxy.port, { allowHalfOpen: true });
    try {
      c.socket.write(first);
      const junk = Buffer.alloc(64 * 1024, 'j');
      const deadline = Date.now() + 10_000;
      const r = await streamInto(c.socket, 32 * MB, () => junk, { deadline });
      const closed = r.closed || (await c.closedWithin(Math.max(0, deadline - Date.now())));
      expect(closed, `socket still open after ${(r.written / MB).toFixed(1)} MB were sent (FIN received: ${c.ended})`).toBe(true);
      if (sqlstate) expect(errorIn(c.messages)?.C).toBe(sqlstate);
      proxy.expectAlive();
      await proxy.stillServes();
    } finally {
      c.destroy();
    }
  });
});

describe('limits.client_login_timeout', () => {
  const proxy = new ChildProxy(info, { extra: 'limits: { client_login_timeout: 1s }' });
  beforeAll(() => proxy.ensure());
  afterAll(() => proxy.stop());

  it('disconnects a client that sends nothing, half a startup packet, or stops answering SCRAM', async () => {
    const silent = await RawConn.open(proxy.port, { allowHalfOpen: true });
    const half = await RawConn.open(proxy.port, { allowHalfOpen: true });
    const stalled = await RawConn.open(proxy.port, { allowHalfOpen: true });
    const all = [silent, half, stalled];
    try {
      half.socket.write(startupMessage(login).subarray(0, 10));
      stalled.socket.write(startupMessage(login));
      const sasl = await stalled.next('AuthenticationSASL', 10_000);
      expect(sasl.type).toBe('R');
      expect(sasl.body.readInt32BE(0)).toBe(10);
      // A deadline well past the 1 s limit; every socket must be closed by the proxy, not merely half-closed.
      const closed = await Promise.all(all.map((c) => c.closedWithin(10_000)));
      expect({ silent: closed[0], half: closed[1], duringScram: closed[2] }).toEqual({ silent: true, half: true, duringScram: true });
      expect(errorIn(stalled.messages)?.C).toBe('57014');
      proxy.expectAlive();
      await proxy.stillServes();
    } finally {
      for (const c of all) c.destroy();
    }
  });
});

describe('listen.max_client_connections counts connections from accept', () => {
  const proxy = new ChildProxy(info, { extra: 'limits: { client_login_timeout: 5s }' }, 'max_client_connections: 5');
  beforeAll(() => proxy.ensure());
  afterAll(() => proxy.stop());

  it('of 40 concurrent SCRAM logins with a limit of 5, at most 5 succeed and the rest get 53300', async () => {
    const results = await Promise.allSettled(Array.from({ length: 40 }, () => proxy.client()));
    const ok = results.filter((r): r is PromiseFulfilledResult<pg.Client> => r.status === 'fulfilled').map((r) => r.value);
    try {
      const codes = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as { code?: string }).code ?? String(r.reason));
      expect(ok.length).toBeLessThanOrEqual(5);
      expect(ok.length).toBeGreaterThan(0);
      expect(new Set(codes)).toEqual(new Set(['53300']));
      for (const c of ok) expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await Promise.all(ok.map((c) => c.end().catch(() => {})));
    }
    proxy.expectAlive();
  });

  it('5 sockets that never send a startup packet hold the 5 places until the login timeout frees them', async () => {
    // The places of the previous test's clients come back once their sockets are closed.
    await eventually('a free place', () => proxy.stillServes().then(() => true), 10_000, 200);
    const idle = await Promise.all(Array.from({ length: 5 }, () => RawConn.open(proxy.port, { allowHalfOpen: true })));
    try {
      const err = await rejection(proxy.client());
      expect(err.code, err.message).toBe('53300');
      // limits.client_login_timeout (5s) ends the idle sockets; then a real client gets in.
      const closed = await Promise.all(idle.map((c) => c.closedWithin(20_000)));
      expect(closed).toEqual([true, true, true, true, true]);
      await eventually('a login after the idle sockets were closed', () => proxy.stillServes().then(() => true), 10_000, 200);
      proxy.expectAlive();
    } finally {
      for (const c of idle) c.destroy();
    }
  });
});
