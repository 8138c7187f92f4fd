// Messages a client pipelines behind a COPY FROM STDIN (CopyData, CopyDone, then a batch and lone Syncs) are answered in the order PostgreSQL answers them.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { RawConn, scramLogin } from '../harness/fuzz-client.js';
import { cstr, frame, i16, i32 } from '../harness/fuzz.js';
import { endQuietly, proxyClient } from './helpers.js';

const info = inject('cluster');
let proxy: RunningProxy;

const Q = (s: string) => frame('Q', cstr(s));
const P = (sql: string) => frame('P', Buffer.concat([cstr(''), cstr(sql), i16(0)]));
const B = () => frame('B', Buffer.concat([cstr(''), cstr(''), i16(0), i16(0), i16(0)]));
const D = (kind: 'S' | 'P', name: string) => frame('D', Buffer.concat([Buffer.from(kind), cstr(name)]));
const E = () => frame('E', Buffer.concat([cstr(''), i32(0)]));
const S = () => frame('S', Buffer.alloc(0));
const copyData = (s: string) => frame('d', Buffer.from(s));
const copyDone = () => frame('c', Buffer.alloc(0));

/** Logs in, starts COPY FROM STDIN, then sends `tail` in one write; the message types that come back until `token` is answered. */
async function run(port: number, tail: Buffer, token: string): Promise<string[]> {
  const c = new RawConn(port);
  try {
    const why = await scramLogin(c, info.app, Date.now() + 10_000);
    if (why) throw new Error(why);
    await c.write(Q('COPY copy_pipelined(v) FROM STDIN'), Date.now() + 5_000);
    for (;;) {
      const m = await c.next(Date.now() + 5_000);
      if (!m) throw new Error('no CopyInResponse');
      if (m.type === 0x47) break;
    }
    await c.write(tail, Date.now() + 5_000);
    const got: string[] = [];
    let answered = false;
    const end = Date.now() + 10_000;
    for (;;) {
      const m = await c.next(end);
      if (!m) throw new Error(`no answer for ${token} (got ${got.join(' ')})`);
      got.push(String.fromCharCode(m.type));
      if (m.type === 0x44 && m.body?.includes(token)) answered = true;
      if (answered && m.type === 0x5a) return got;
    }
  } finally {
    c.sock.destroy();
  }
}

describe('pipelined messages after a COPY FROM STDIN', () => {
  beforeAll(async () => {
    proxy = await startProxy(info);
    const c = await proxyClient(proxy, info);
    await c.query('CREATE TABLE IF NOT EXISTS copy_pipelined (v text)');
    await endQuietly(c);
  });
  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('come back in the same order as from PostgreSQL itself, each time (the Sync after the batch is not answered first)', async () => {
    for (let i = 0; i < 5; i++) {
      const token = `copy-pipelined-${i}`;
      // CopyData, CopyDone, then an extended batch (its Describe fails: 26000), a lone Sync, and two queries, all in one write.
      const tail = Buffer.concat([copyData('a\n'), copyData('b\n'), copyDone(), P('SELECT 1'), B(), D('S', 'no_such_statement'), E(), S(), S(), Q('ROLLBACK'), Q(`SELECT '${token}'`)]);
      const direct = await run(info.nodes[0]!.port, tail, token);
      const through = await run(proxy.listenPort, tail, token);
      expect(direct).toEqual(['C', 'Z', '1', '2', 'E', 'Z', 'Z', 'N', 'C', 'Z', 'T', 'D', 'C', 'Z']);
      expect(through).toEqual(direct);
    }
  });
});
