// The rest of a batch that follows a Flush waits for its first part's preparation (the session's settings replayed on a pooled server connection), so it runs after it, in order.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunningProxy } from '../harness/proxy.js';
import { RawConn, scramLogin, type BackendMsg } from '../harness/fuzz-client.js';
import { cstr, frame, i16, i32 } from '../harness/fuzz.js';
import { endQuietly, proxyClient } from './helpers.js';
import { startPoolProxy } from './pool-helpers.js';

const info = inject('cluster');
let proxy: RunningProxy;
const Q = (s: string) => frame('Q', cstr(s));
const P = (sql: string) => frame('P', Buffer.concat([cstr(''), cstr(sql), i16(0)]));
const B = () => frame('B', Buffer.concat([cstr(''), cstr(''), i16(0), i16(0), i16(0)]));
const E = () => frame('E', Buffer.concat([cstr(''), i32(0)]));
const H = () => frame('H', Buffer.alloc(0));
const S = () => frame('S', Buffer.alloc(0));

async function until(c: RawConn, pred: (m: BackendMsg) => boolean): Promise<BackendMsg[]> {
  const out: BackendMsg[] = [];
  for (;;) {
    const m = await c.next(Date.now() + 10_000);
    if (!m) throw new Error(`no answer (got ${out.map((x) => String.fromCharCode(x.type)).join(' ')})`);
    out.push(m);
    if (pred(m)) return out;
  }
}
/** The text of a one-column DataRow. */
const cell = (m: BackendMsg) => m.body!.subarray(6).toString('utf8');

describe('a batch split by Flush behind a settings replay (pool.size 1, two sessions with different settings)', () => {
  beforeAll(async () => {
    proxy = await startPoolProxy(info, { pool: { size: 1 } });
  });
  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it("runs both parts after the replay, in order, with the session's own settings", async () => {
    const a = new RawConn(proxy.listenPort);
    const other = await proxyClient(proxy, info, { application_name: 'beta' });
    try {
      expect(await scramLogin(a, info.app, Date.now() + 10_000)).toBeNull();
      await a.write(Buffer.concat([Q("SET application_name = 'alpha'"), Q('SET pgsplit.route = primary')]), Date.now() + 5_000);
      let z = 0;
      await until(a, (m) => m.type === 0x5a && ++z === 2);
      for (let round = 0; round < 5; round++) {
        // The only pooled primary connection now carries the other session's settings: alpha's are replayed first.
        expect((await other.query("/* pgsplit:primary */ SELECT current_setting('application_name') AS a")).rows).toEqual([{ a: 'beta' }]);
        const part = (n: number) => [P(`SELECT current_setting('application_name') || ' ${round}.${n}'`), B(), E()];
        await a.write(Buffer.concat([...part(1), H(), ...part(2), S()]), Date.now() + 5_000);
        const got = await until(a, (m) => m.type === 0x5a);
        expect(got.filter((m) => m.type === 0x45)).toEqual([]);
        expect(got.filter((m) => m.type === 0x44).map(cell)).toEqual([`alpha ${round}.1`, `alpha ${round}.2`]);
      }
    } finally {
      a.sock.destroy();
      await endQuietly(other);
    }
  });
});
