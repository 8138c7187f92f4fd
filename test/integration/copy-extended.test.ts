// COPY FROM STDIN through the extended protocol, as libpq sends it (Parse/Bind/Execute/Sync, then CopyData, CopyDone, Sync).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, using } from './helpers.js';
import { describeMsg, fe, RawClient, ROUTING } from './cut-helpers.js';

const info = inject('cluster');
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startProxy(info, { auth: 'trust' });
  await using(directClient(info.nodes[0]!, info, { database: info.app.database }), async (d) => {
    await d.query('DROP TABLE IF EXISTS copy_extended; CREATE TABLE copy_extended (v text)');
    await d.query(`GRANT ALL ON copy_extended TO ${info.app.user}`);
  });
});

afterAll(async () => {
  await proxy?.close(0);
});

const frame = (type: string, body = Buffer.alloc(0)): Buffer => {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
};

describe('extended-protocol COPY FROM STDIN', () => {
  it('the Sync PostgreSQL ignores during the COPY is not counted: one ReadyForQuery, and the session routes normally after it', async () => {
    const c = await RawClient.connect(proxy.listenPort, { user: info.app.user, database: info.app.database, application_name: 'copy-extended' });
    c.send(fe.parse('', 'COPY copy_extended FROM STDIN'), fe.bind('', '', []), fe.execute(''), fe.sync());
    const head: string[] = [];
    for (let m = await c.next(); m && m.type !== 'G'; m = await c.next()) head.push(describeMsg(m));
    expect(head).toEqual(['1', '2']);
    c.send(frame('d', Buffer.from('a\nb\n')), frame('c'), fe.sync());
    expect((await c.untilReady()).map(describeMsg)).toEqual(['C:COPY 2', 'Z:I']);
    // Afterwards a read goes where reads go (a replica with routing): the proxy is not waiting for a second ReadyForQuery.
    // The hint asks for a replica even right after the session's own write (read-your-writes would send it to the primary).
    c.send(fe.query('/* pgsplit:replica */ SELECT inet_server_port() AS port'));
    const after = await c.untilReady();
    expect(after.map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
    const port = Number(after[1]!.body.toString('utf8', 6));
    expect(info.nodes.map((n) => n.port)).toContain(port);
    if (ROUTING) expect(port).not.toBe(info.nodes[0]!.port);
    await using(directClient(info.nodes[0]!, info, { database: info.app.database }), async (d) => {
      expect((await d.query('SELECT count(*)::int AS n FROM copy_extended')).rows[0].n).toBe(2);
    });
  });
});
