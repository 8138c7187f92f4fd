// A bug in one session (an exception pgsplit did not expect) ends that session with XX000 and a log line; other sessions, the pool and the process go on.
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import type pg from 'pg';
import { FrameScanner } from '../../src/protocol/frame-scanner.js';
import { createLogger } from '../../src/util/logger.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, endQuietly, eventually, proxyClient, rejection, using } from './helpers.js';

const info = inject('cluster');
const TABLE = 'session_bug_rows';
// Only a chunk carrying this text trips the injected bug: the text is in a comment, so no server ever echoes it.
const MARK = 'pgsplit-test-injected-bug';

let proxy: RunningProxy;
const logLines: Record<string, unknown>[] = [];
const scannerPush = FrameScanner.prototype.push;

/** From here on, a client chunk carrying MARK makes message handling throw, as a bug in pgsplit would. */
function injectBug(): void {
  vi.spyOn(FrameScanner.prototype, 'push').mockImplementation(function (this: FrameScanner, chunk: Buffer) {
    if (chunk.includes(MARK)) throw new TypeError('injected: a bug in message handling');
    return scannerPush.call(this, chunk);
  });
}

async function committedTags(): Promise<string[]> {
  const primary = info.nodes.find((n) => n.name === proxy.topology.primary?.name)!;
  return using(directClient(primary, info, { database: info.app.database }), async (c) => (await c.query(`SELECT tag FROM ${TABLE} ORDER BY tag`)).rows.map((r) => r.tag as string));
}

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) logLines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  // Two server connections per node: one for the session that stays in its transaction, one for the victim.
  proxy = await startProxy(info, { extra: 'pool: { size: 2 }' }, { logger: createLogger('info', sink as unknown as Parameters<typeof createLogger>[1]) });
  await using(proxyClient(proxy, info), (c) => c.query(`CREATE TABLE ${TABLE} (tag text NOT NULL)`));
});

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(async () => {
  await using(proxyClient(proxy, info), (c) => c.query(`DROP TABLE IF EXISTS ${TABLE}`)).catch(() => {});
  await proxy?.close(1_000);
});

describe('a bug in one session', () => {
  it('ends that session with FATAL XX000 and a log line; its open transaction is not committed, and other sessions and new ones are unaffected', async () => {
    const other = await proxyClient(proxy, info, { application_name: 'bug-bystander' });
    const victim = await proxyClient(proxy, info, { application_name: 'bug-victim' });
    let victimEnded = false;
    victim.on('end', () => (victimEnded = true));
    victim.on('error', () => {}); // the FATAL also surfaces as a connection error
    try {
      await other.query('BEGIN');
      await other.query(`INSERT INTO ${TABLE} VALUES ('bystander')`);
      await victim.query('BEGIN');
      await victim.query(`INSERT INTO ${TABLE} VALUES ('victim')`);

      injectBug();
      const err = await rejection(victim.query(`SELECT 1 /* ${MARK} */`));
      vi.restoreAllMocks();
      expect(err.code, err.message).toBe('XX000');
      expect(err.message).toMatch(/internal error/);
      expect((err as pg.DatabaseError).severity).toBe('FATAL');
      await eventually('the victim connection to be closed by the proxy', () => (victimEnded ? true : undefined), 10_000);

      const line = logLines.find((l) => typeof l.msg === 'string' && /internal error in a (relay )?session/.test(l.msg));
      expect(line, `log lines: ${JSON.stringify(logLines.slice(-5))}`).toBeDefined();
      expect(String(line!.err)).toContain('injected: a bug in message handling');

      // The bystander's transaction goes on and commits; the victim's was rolled back with its server connection.
      await other.query(`INSERT INTO ${TABLE} VALUES ('bystander-2')`);
      expect((await other.query('COMMIT')).command).toBe('COMMIT');
      expect(await committedTags()).toEqual(['bystander', 'bystander-2']);

      // New sessions get a server connection that is not inside the victim's transaction (pool.size 2 forces reuse or a fresh one).
      for (let i = 0; i < 3; i++) {
        await using(proxyClient(proxy, info), async (c) => {
          expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
          await c.query(`INSERT INTO ${TABLE} VALUES ('after-${i}')`);
        });
      }
      expect(await committedTags()).toEqual(['after-0', 'after-1', 'after-2', 'bystander', 'bystander-2']);
    } finally {
      await endQuietly(other);
      await endQuietly(victim);
    }
  });

  it('in the middle of an extended-protocol batch ends only that session', async () => {
    const victim = await proxyClient(proxy, info, { application_name: 'bug-victim-extended' });
    victim.on('error', () => {});
    try {
      injectBug();
      const err = await rejection(victim.query({ text: `SELECT $1::int AS v /* ${MARK} */`, values: [7] }));
      vi.restoreAllMocks();
      expect(err.code, err.message).toBe('XX000');
      const again = await using(proxyClient(proxy, info), async (c) => (await c.query({ text: 'SELECT $1::int AS v', values: [7] })).rows);
      expect(again).toEqual([{ v: 7 }]);
    } finally {
      await endQuietly(victim);
    }
  });
});
