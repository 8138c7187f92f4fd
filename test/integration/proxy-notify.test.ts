// LISTEN/NOTIFY through pgsplit: a notification sent on one proxied connection reaches a listener on another.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type pg from 'pg';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { endQuietly, eventually, proxyClient } from './helpers.js';

const info = inject('cluster');
const channel = `pgsplit_chan_${process.pid}`;

let proxy: RunningProxy;
let listener: pg.Client;
let sender: pg.Client;

describe('LISTEN/NOTIFY through the proxy', () => {
  beforeAll(async () => {
    proxy = await startProxy(info);
    listener = await proxyClient(proxy, info);
    sender = await proxyClient(proxy, info);
    await listener.query(`LISTEN ${channel}`);
  });

  afterAll(async () => {
    await endQuietly(listener);
    await endQuietly(sender);
    await proxy?.close(1_000);
  });

  it('delivers NOTIFY with its payload to a listener on another connection', async () => {
    const got: pg.Notification[] = [];
    listener.on('notification', (n) => got.push(n));
    await sender.query(`NOTIFY ${channel}, 'hello ✉ pgsplit'`);
    await sender.query({ text: 'SELECT pg_notify($1, $2)', values: [channel, 'second'] });
    const senderPid = (await sender.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    // The listener is idle: the notification must arrive without it sending anything.
    await eventually('two notifications', () => (got.length >= 2 ? true : undefined), 10_000, 50);
    expect(got.map((n) => [n.channel, n.payload])).toEqual([
      [channel, 'hello ✉ pgsplit'],
      [channel, 'second'],
    ]);
    // processId is the sending server backend's pid, relayed as sent.
    expect(got[0]!.processId).toBe(senderPid);
  });

  it('delivers notifications committed in a transaction only at COMMIT, and none after UNLISTEN', async () => {
    const got: pg.Notification[] = [];
    const on = (n: pg.Notification) => got.push(n);
    listener.on('notification', on);
    try {
      await sender.query('BEGIN');
      await sender.query(`NOTIFY ${channel}, 'in-tx'`);
      await listener.query('SELECT 1'); // a round trip on the listener: nothing yet
      expect(got).toEqual([]);
      await sender.query('COMMIT');
      await eventually('the committed notification', () => (got.length >= 1 ? true : undefined), 10_000, 50);
      expect(got.map((n) => n.payload)).toEqual(['in-tx']);

      await listener.query(`UNLISTEN ${channel}`);
      await sender.query(`NOTIFY ${channel}, 'after-unlisten'`);
      await listener.query('SELECT pg_sleep(0.2)');
      expect(got.map((n) => n.payload)).toEqual(['in-tx']);
    } finally {
      listener.off('notification', on);
    }
  });
});
