// Client authentication at pgsplit (SCRAM, md5, trust) and the proxy's own authentication to PostgreSQL (SCRAM, md5, cleartext).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { proxyClient, psql, rejection, using } from './helpers.js';

const info = inject('cluster');

let scram: RunningProxy;
let md5: RunningProxy;
let trust: RunningProxy;

const whoAmI = async (proxy: RunningProxy, o: { user?: string; password?: string; database?: string } = {}) =>
  using(proxyClient(proxy, info, o), async (c) => (await c.query('SELECT current_user AS u, current_database() AS d, inet_server_port() AS port')).rows[0]);

describe('authentication through the proxy', () => {
  beforeAll(async () => {
    scram = await startProxy(info);
    md5 = await startProxy(info, { auth: 'md5' });
    trust = await startProxy(info, { auth: 'trust' });
  });

  afterAll(async () => {
    await scram?.close(1_000);
    await md5?.close(1_000);
    await trust?.close(1_000);
  });

  describe('scram-sha-256 towards clients (the default)', () => {
    it('lets app in with the right password', async () => {
      const me = await whoAmI(scram);
      expect(me).toMatchObject({ u: 'app', d: 'appdb' });
      expect(info.nodes.map((n) => n.port)).toContain(me.port);
    });

    it('refuses a wrong password with 28P01', async () => {
      const err = await rejection(whoAmI(scram, { password: 'wrong' }));
      expect(err.code).toBe('28P01');
      expect(err.message).toMatch(/password authentication failed for user "app"/);
    });

    it('refuses an unknown user with 28P01, the same way as a wrong password', async () => {
      const err = await rejection(whoAmI(scram, { user: 'nobody_here', password: 'whatever' }));
      expect(err.code).toBe('28P01');
      expect(err.message).toMatch(/password authentication failed for user "nobody_here"/);
    });

    it('answers a wrong password and an unknown user with errors of the same shape', async () => {
      const wrong = (await rejection(whoAmI(scram, { password: 'wrong' }))) as Error & Record<string, unknown>;
      const unknown = (await rejection(whoAmI(scram, { user: 'nobody_here', password: 'secret' }))) as Error & Record<string, unknown>;
      const shape = (e: Record<string, unknown>, user: string) =>
        Object.fromEntries(['code', 'severity', 'message', 'detail', 'hint'].map((k) => [k, typeof e[k] === 'string' ? (e[k] as string).replace(user, '<user>') : e[k]]));
      expect(shape(unknown, 'nobody_here')).toEqual(shape(wrong, 'app'));
      expect(shape(wrong, 'app')).toMatchObject({ code: '28P01', severity: 'FATAL', message: 'password authentication failed for user "<user>"' });
    });

    it('reaches a server that uses md5 for the user (md5user)', async () => {
      expect(await whoAmI(scram, { user: 'md5user', password: 'md5secret' })).toMatchObject({ u: 'md5user', d: 'appdb' });
      expect((await rejection(whoAmI(scram, { user: 'md5user', password: 'nope' }))).code).toBe('28P01');
    });

    it('does not send a password in cleartext to a server without TLS (pwuser), and says which key allows it', async () => {
      const err = (await rejection(whoAmI(scram, { user: 'pwuser', password: 'pwsecret' }))) as Error & { code?: string; detail?: string };
      expect(err.code).toBe('08006');
      expect(err.detail).toMatch(/in cleartext .*nodes\[\]\.allow_cleartext_password/);
      expect((await rejection(whoAmI(scram, { user: 'pwuser', password: 'nope' }))).code).toBe('28P01');
    });

    it('reaches a server that uses cleartext password auth (pwuser) where nodes[].allow_cleartext_password is set', async () => {
      const allowAll = Object.fromEntries(info.nodes.map((n) => [n.name, 'allow_cleartext_password: true']));
      const cleartext = await startProxy(info, { nodeExtra: allowAll });
      try {
        expect(await whoAmI(cleartext, { user: 'pwuser', password: 'pwsecret' })).toMatchObject({ u: 'pwuser', d: 'appdb' });
        expect((await rejection(whoAmI(cleartext, { user: 'pwuser', password: 'nope' }))).code).toBe('28P01');
      } finally {
        await cleartext.close(1_000);
      }
    });

    it("relays the server's 3D000 for a database that does not exist", async () => {
      const err = await rejection(whoAmI(scram, { database: 'no_such_db_pgsplit' }));
      expect(err.code).toBe('3D000');
      expect(err.message).toMatch(/database "no_such_db_pgsplit" does not exist/);
    });

    it('works for psql with sslmode=prefer (SSL refused, plain connection)', async () => {
      const r = await psql(scram, info, ['-c', 'SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'], {
        conninfo: `host=127.0.0.1 port=${scram.listenPort} user=app dbname=appdb sslmode=prefer connect_timeout=10`,
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe('app|f');
    });

    it('makes psql with sslmode=require fail with a clear error', async () => {
      const r = await psql(scram, info, ['-c', 'SELECT 1'], {
        conninfo: `host=127.0.0.1 port=${scram.listenPort} user=app dbname=appdb sslmode=require connect_timeout=10`,
        timeoutMs: 20_000,
      });
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBe(124);
      expect(r.stderr).toMatch(/server does not support SSL/);
    });

    it('makes psql with a wrong password fail with the authentication error', async () => {
      const r = await psql(scram, info, ['-c', 'SELECT 1'], { env: { PGPASSWORD: 'wrong' }, timeoutMs: 20_000 });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/password authentication failed for user "app"/);
    });

    it('rejects node-postgres asking for SSL with a clear error', async () => {
      const err = await rejection(whoAmI(scram, { ssl: { rejectUnauthorized: false } } as never));
      expect(err.message).toMatch(/does not support SSL/);
    });
  });

  describe('md5 towards clients', () => {
    it('lets app in with the right password', async () => {
      expect(await whoAmI(md5)).toMatchObject({ u: 'app', d: 'appdb' });
    });

    it('refuses a wrong password and an unknown user with 28P01', async () => {
      expect((await rejection(whoAmI(md5, { password: 'wrong' }))).code).toBe('28P01');
      expect((await rejection(whoAmI(md5, { user: 'nobody_here', password: 'x' }))).code).toBe('28P01');
    });

    it('works for psql', async () => {
      const r = await psql(md5, info, ['-c', 'SELECT current_user']);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('app');
    });
  });

  describe('trust towards clients', () => {
    it('lets a configured user in without a password, and reaches the server with the configured one', async () => {
      expect(await whoAmI(trust, { password: undefined })).toMatchObject({ u: 'app', d: 'appdb' });
      expect(await whoAmI(trust, { user: 'md5user', password: undefined })).toMatchObject({ u: 'md5user' });
    });

    it('works for psql without PGPASSWORD', async () => {
      const r = await psql(trust, info, ['-w', '-c', 'SELECT current_user'], { env: { PGPASSWORD: '' } });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('app');
    });
  });
});
