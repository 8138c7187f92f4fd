// Clients that do not speak protocol 3.0 properly (garbage bytes, protocol 2.0, bad lengths) are refused, and the proxy keeps serving others.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import crypto from 'node:crypto';
import net from 'node:net';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { eventually, firstErrorFields, proxyClient, rawExchange, startupMessage, using } from './helpers.js';

const info = inject('cluster');

let proxy: RunningProxy;

const stillServes = async (): Promise<void> => {
  const r = await using(proxyClient(proxy, info), async (c) => (await c.query('SELECT 1 AS ok')).rows);
  expect(r).toEqual([{ ok: 1 }]);
};

describe('misbehaving clients', () => {
  beforeAll(async () => {
    proxy = await startProxy(info);
  });

  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('refuses random bytes and closes the connection', async () => {
    for (let i = 0; i < 5; i++) {
      const junk = crypto.randomBytes(256);
      junk.writeInt32BE(0x7f000000 + i, 0); // never a plausible startup length
      const { data, closed } = await rawExchange(proxy.listenPort, junk, 5_000);
      expect(closed).toBe(true);
      if (data.length > 0) expect(firstErrorFields(data)?.C).toBe('08P01');
    }
    await stillServes();
  });

  it('refuses an HTTP request sent to the PostgreSQL port', async () => {
    const { closed } = await rawExchange(proxy.listenPort, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 5_000);
    expect(closed).toBe(true);
    await stillServes();
  });

  it('refuses a protocol 2.0 startup with 0A000', async () => {
    const { data, closed } = await rawExchange(proxy.listenPort, startupMessage({ user: 'app', database: 'appdb' }, 2 << 16), 5_000);
    expect(closed).toBe(true);
    const fields = firstErrorFields(data);
    expect(fields?.C).toBe('0A000');
    expect(fields?.M).toMatch(/unsupported frontend protocol 2\.0/);
    await stillServes();
  });

  it('refuses an unknown request code with 0A000', async () => {
    const { data, closed } = await rawExchange(proxy.listenPort, startupMessage({ user: 'app' }, 9999 << 16), 5_000);
    expect(closed).toBe(true);
    const fields = firstErrorFields(data);
    expect(fields?.C).toBe('0A000');
    expect(fields?.M).toMatch(/unsupported frontend protocol 9999\.0/);
  });

  it('refuses a startup message without a user with 28000', async () => {
    const { data, closed } = await rawExchange(proxy.listenPort, startupMessage({ database: 'appdb' }), 5_000);
    expect(closed).toBe(true);
    expect(firstErrorFields(data)?.C).toBe('28000');
  });

  it('answers SSLRequest with N and then accepts a normal startup on the same connection', async () => {
    const ssl = Buffer.alloc(8);
    ssl.writeInt32BE(8, 0);
    ssl.writeInt32BE(80877103, 4);
    const got = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const s = net.connect({ host: '127.0.0.1', port: proxy.listenPort });
      const t = setTimeout(() => {
        s.destroy();
        resolve(Buffer.concat(chunks));
      }, 3_000);
      s.on('error', reject);
      s.on('connect', () => s.write(ssl));
      s.on('data', (d) => {
        chunks.push(d);
        const all = Buffer.concat(chunks);
        if (all.length === 1) s.write(startupMessage({ user: 'app', database: 'appdb' }));
        else if (all.length > 1) {
          clearTimeout(t);
          s.destroy();
          resolve(all);
        }
      });
    });
    expect(String.fromCharCode(got[0]!)).toBe('N');
    // Next: an Authentication request (R) for SCRAM.
    expect(String.fromCharCode(got[1]!)).toBe('R');
    expect(got.readInt32BE(6)).toBe(10); // AuthenticationSASL
  });

  it('survives clients that connect and hang up at every point of the handshake', async () => {
    const startup = startupMessage({ user: 'app', database: 'appdb' });
    for (const cut of [0, 3, 8, startup.length - 1]) {
      await new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: proxy.listenPort });
        s.on('error', () => resolve());
        s.on('connect', () => {
          s.end(startup.subarray(0, cut));
          setTimeout(() => {
            s.destroy();
            resolve();
          }, 50);
        });
      });
    }
    await stillServes();
    await eventually('no session left open', () => (proxy.stats.clientConnections === 0 ? true : undefined));
  });
});
