// No message a client or server sends can take pgsplit (its own process) down: huge server messages stream through, oversized client messages end only that session.
import { afterAll, afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import type pg from 'pg';
import { rejection } from './helpers.js';
import { ChildProxy, endedWithin, nextClientError, rssMB, rssPeak, socketOf, streamInto, within } from './hardening-support.js';

const info = inject('cluster');
const MB = 1024 * 1024;
const BIG = 17_825_792; // 17 MB: over the 16 MB a whole-message buffer allowed
const proxy = new ChildProxy(info, { extra: 'limits: { max_message_size: 1MB }' });

let other: pg.Client | null = null;

describe('pgsplit survives oversized messages', () => {
  beforeEach(async () => {
    // A crash in one test must not fail the next one for the same reason: start a new process if needed.
    await proxy.ensure();
    other = await proxy.client();
  });

  afterEach(async () => {
    await other?.end().catch(() => {});
    other = null;
  });

  afterAll(async () => {
    await proxy.stop();
  });

  /** A new proxy process (memory tests must not inherit an earlier test's heap), with a new concurrent session. */
  async function freshProxy(): Promise<void> {
    await other?.end().catch(() => {});
    await proxy.fresh();
    other = await proxy.client();
  }

  /** A frame header of `type` whose length word claims `length` bytes, whatever follows it. */
  function claimingHeader(type: string, length: number): Buffer {
    const head = Buffer.alloc(5);
    head[0] = type.charCodeAt(0);
    head.writeInt32BE(length, 1);
    return head;
  }

  /** The proxy process is alive and the concurrent session `other` still answers. */
  const othersUnaffected = async (): Promise<void> => {
    proxy.expectAlive();
    expect((await within('SELECT 1 on the other session', other!.query('SELECT 1 AS ok'), 10_000)).rows).toEqual([{ ok: 1 }]);
    await proxy.stillServes();
  };

  it.each([
    ['routed as a read', ''],
    ['on the primary', '/* pgsplit:primary */ '],
  ])('a 17 MB ErrorResponse from the server (%s) reaches the client as 22P02', async (_where, hint) => {
    const c = await proxy.client();
    try {
      const err = await rejection(within('the oversized error', c.query(`${hint}SELECT repeat('x', ${BIG})::int`), 30_000));
      expect(err.code, err.message.slice(0, 200)).toBe('22P02');
      expect(err.message.length).toBeGreaterThan(BIG);
      // An ERROR does not end a session: the same client goes on.
      expect((await within('SELECT 1 after the error', c.query('SELECT 1 AS ok'), 10_000)).rows).toEqual([{ ok: 1 }]);
      await othersUnaffected();
    } finally {
      await c.end().catch(() => {});
    }
  });

  it('a 17 MB NOTICE reaches the client', async () => {
    const c = await proxy.client();
    try {
      const notices: string[] = [];
      c.on('notice', (n) => notices.push(n.message ?? ''));
      await within('DO with a large NOTICE', c.query(`DO $$BEGIN RAISE NOTICE '%', repeat('x', ${BIG}); END$$`), 30_000);
      expect(notices.map((n) => n.length)).toEqual([BIG]);
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      await othersUnaffected();
    } finally {
      await c.end().catch(() => {});
    }
  });

  it('a 100 MB row streams through whole', async () => {
    const c = await proxy.client();
    try {
      const r = await within('the 100 MB row', c.query<{ v: string }>("SELECT repeat('x', 100000000) AS v"), 50_000);
      expect(r.rows.length).toBe(1);
      expect(r.rows[0]!.v.length).toBe(100_000_000);
      await othersUnaffected();
    } finally {
      await c.end().catch(() => {});
    }
  });

  it('a 2 MB query over limits.max_message_size (1MB) gets 54000 and ends only its session', async () => {
    const c = await proxy.client();
    try {
      const ended = endedWithin(c, 15_000);
      const err = await rejection(within('the oversized query', c.query(`SELECT length('${'y'.repeat(2 * 1024 * 1024)}') AS n`), 15_000));
      expect(err.code, err.message).toBe('54000');
      expect(await ended).toBe(true);
      await othersUnaffected();
    } finally {
      await c.end().catch(() => {});
    }
  });

  it('a frame header claiming 1 GB gets 54000, ends its session, and reserves no memory for the claim', async () => {
    await freshProxy();
    const c = await proxy.client();
    try {
      await c.query('SELECT 1');
      const before = rssMB(proxy.pid);
      const gotError = nextClientError(c, 15_000);
      const ended = endedWithin(c, 15_000);
      const head = claimingHeader('Q', 1024 ** 3);
      socketOf(c).write(Buffer.concat([head, Buffer.alloc(8 * 1024, 'z')]));
      const err = await gotError;
      expect(err, 'no error for the oversized frame within 15 s').not.toBeNull();
      expect(err!.code, err!.message).toBe('54000');
      expect(await ended).toBe(true);
      const after = rssMB(proxy.pid);
      expect(after - before, `proxy RSS ${before.toFixed(0)} MB -> ${after.toFixed(0)} MB`).toBeLessThan(100);
      await othersUnaffected();
    } finally {
      await c.end().catch(() => {});
    }
  });

  it('a frame header claiming 1 GB followed by 48 MB: the session is closed and the proxy does not buffer what arrives', async () => {
    await freshProxy();
    const c = await proxy.client();
    try {
      await c.query('SELECT 1');
      const sock = socketOf(c);
      const base = rssMB(proxy.pid);
      const peak = rssPeak(proxy.pid);
      const head = claimingHeader('Q', 1024 ** 3);
      const junk = Buffer.alloc(64 * 1024, 'z');
      const deadline = Date.now() + 15_000;
      const r = await streamInto(sock, 5 + 48 * MB, (i) => (i === 0 ? head : junk), { deadline });
      // All of it may have been taken in before the close: wait for the close until the deadline.
      const closed = r.closed || (await endedWithin(c, Math.max(0, deadline - Date.now())));
      const top = peak.stop();
      const memory = `proxy RSS ${base.toFixed(0)} MB -> peak ${top.toFixed(0)} MB after ${(r.written / MB).toFixed(0)} MB were sent`;
      expect(closed, `the session is still open; ${memory}`).toBe(true);
      expect(top - base, memory).toBeLessThan(50);
      await othersUnaffected();
    } finally {
      await c.end().catch(() => {});
    }
  });
});
