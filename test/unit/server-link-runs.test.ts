// A server connection's answers matched to the units written to it, for the statement statistics: pipelined units in one chunk, Flush-ended pieces, the proxy's own traffic, a read-only refusal retried elsewhere.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ServerLink, type LinkOwner } from '../../src/backend/server-link.js';
import type { ServerConnection } from '../../src/backend/connect.js';
import { StatementRun } from '../../src/stats/statement-run.js';
import { StatementStats, type StatementKey } from '../../src/stats/statement-stats.js';

function frame(type: string, body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}
const complete = (t: string) => frame('C', `${t}\0`);
const ready = (status = 'I') => frame('Z', status);
const error = (code: string) => frame('E', `SERROR\0C${code}\0Mno\0\0`);
const parseComplete = frame('1', '');
const bindComplete = frame('2', '');
const dataRow = frame('D', Buffer.from([0, 1, 0, 0, 0, 1, 0x31]));

function makeLink() {
  const forwarded: Buffer[] = [];
  const readies: string[] = [];
  const owner: LinkOwner = {
    linkClosed() {},
    linkFailed(_l, err) {
      throw err;
    },
    linkDrained() {},
    linkError() {},
    forward(_l, chunk) {
      forwarded.push(Buffer.from(chunk));
    },
    ready(_l, status, failed) {
      readies.push(`${String.fromCharCode(status)}${failed ? '!' : ''}`);
    },
    messages() {},
  };
  const socket = Object.assign(new EventEmitter(), { write: () => true, pause() {}, resume() {}, destroyed: false });
  const conn = { node: 'pg2', socket, tls: false, slot: { handler: null }, pid: 1, secret: 2, parameters: new Map(), startupFrames: [] } as unknown as ServerConnection;
  const link = new ServerLink(conn, '127.0.0.1', 5432, owner);
  return { link, forwarded, readies };
}

const key = (id: string): StatementKey => ({ id, text: id });
const byId = (t: StatementStats) => Object.fromEntries(t.rows().map((r) => [r.fingerprint, r]));

describe('ServerLink statement runs', () => {
  it('matches two pipelined units answered in one chunk to their own statements', () => {
    const t = new StatementStats(10);
    const { link, readies } = makeLink();
    link.owed = 2;
    link.track(new StatementRun(t, [key('q1')], true, true, false, 'primary', 'write', performance.now()));
    link.track(new StatementRun(t, [key('q2')], true, true, false, 'primary', 'write', performance.now()));
    link.data(Buffer.concat([complete('INSERT 0 3'), ready(), frame('T', Buffer.alloc(2)), dataRow, dataRow, complete('SELECT 2'), ready()]));
    expect(readies).toEqual(['I', 'I']);
    expect(link.runs).toHaveLength(0);
    const rows = byId(t);
    expect(rows.q1).toMatchObject({ calls: 1, rows: 3, primary_calls: 1 });
    expect(rows.q2).toMatchObject({ calls: 1, rows: 2 });
  });

  it('gives each Execute of Flush-ended pieces and the final Sync piece its own answer, across chunks', () => {
    const t = new StatementStats(10);
    const { link } = makeLink();
    link.owed = 1;
    link.track(new StatementRun(t, [key('a')], false, false, false, 'primary', 'transaction', performance.now()));
    link.data(Buffer.concat([parseComplete, bindComplete, complete('UPDATE 1')]));
    // Parse + Describe + Flush: no Execute, nothing to count, but it keeps its place.
    link.track(new StatementRun(t, [], false, false, false, 'primary', 'transaction', performance.now()));
    link.track(new StatementRun(t, [key('b'), key('c')], false, true, false, 'primary', 'transaction', performance.now()));
    link.data(parseComplete);
    link.data(Buffer.concat([bindComplete, complete('DELETE 4'), bindComplete]));
    link.data(Buffer.concat([complete('SELECT 0'), ready('T')]));
    const rows = byId(t);
    expect(rows.a).toMatchObject({ calls: 1, rows: 1 });
    expect(rows.b).toMatchObject({ calls: 1, rows: 4 });
    expect(rows.c).toMatchObject({ calls: 1, rows: 0 });
    expect(link.runs).toHaveLength(0);
  });

  it('ignores the answers to the proxy\'s own traffic (settings replayed, statements prepared)', () => {
    const t = new StatementStats(10);
    const { link, forwarded } = makeLink();
    let done = false;
    link.sendPrivate(Buffer.alloc(0), 1, () => {
      done = true;
    });
    link.data(Buffer.concat([complete('SET'), error('42704'), ready()]));
    expect(done).toBe(true);
    link.owed = 1;
    link.track(new StatementRun(t, [key('q')], true, true, false, 'replica', 'select', performance.now()));
    link.data(Buffer.concat([complete('SELECT 1'), ready()]));
    expect(byId(t).q).toMatchObject({ calls: 1, rows: 1, errors: 0 });
    expect(forwarded).toHaveLength(1);
  });

  it('does not count a read the replica refused as read-only (it runs again on the primary), but does count other errors', () => {
    const t = new StatementStats(10);
    const { link } = makeLink();
    link.owed = 1;
    link.mode = 'hold';
    link.track(new StatementRun(t, [key('q')], true, true, true, 'replica', 'select', performance.now()));
    link.data(Buffer.concat([error('25006'), ready()]));
    expect(t.rows()).toEqual([]);
    link.owed = 1;
    link.mode = 'relay';
    link.track(new StatementRun(t, [key('q')], true, true, false, 'replica', 'select', performance.now()));
    link.data(Buffer.concat([error('42P01'), ready()]));
    expect(byId(t).q).toMatchObject({ calls: 1, errors: 1 });
  });

  it('keeps one run for Flush-ended pieces written while the server answers none (a batch it skips after an error), not one per piece', () => {
    const t = new StatementStats(10);
    const { link } = makeLink();
    link.track(new StatementRun(t, [key('x')], false, false, false, 'primary', 'transaction', performance.now()));
    link.data(Buffer.concat([bindComplete, error('22012')]));
    for (let i = 0; i < 10_000; i++) link.track(new StatementRun(t, [key('y')], false, false, false, 'primary', 'transaction', performance.now()));
    expect(link.runs.length).toBeLessThanOrEqual(2);
    link.owed = 1;
    link.track(new StatementRun(t, [], false, true, false, 'primary', 'transaction', performance.now()));
    link.data(ready('I'));
    expect(link.runs).toHaveLength(0);
    expect(byId(t).x).toMatchObject({ calls: 1, errors: 1 });
    expect(byId(t).y).toBeUndefined();
  });

  it('steps through the Executes of pieces taken in past its key limit uncounted, and the next unit still gets its own answer', () => {
    const t = new StatementStats(10);
    const { link } = makeLink();
    link.track(new StatementRun(t, [key('p')], false, false, false, 'primary', 'transaction', performance.now()));
    for (let i = 0; i < 1_500; i++) link.track(new StatementRun(t, [key('p')], false, false, false, 'primary', 'transaction', performance.now()));
    expect(link.runs).toHaveLength(1);
    link.data(Buffer.concat(Array.from({ length: 1_501 }, () => Buffer.concat([bindComplete, complete('SELECT 1')]))));
    link.owed = 1;
    link.track(new StatementRun(t, [key('z')], false, true, false, 'primary', 'transaction', performance.now()));
    link.data(Buffer.concat([bindComplete, complete('SELECT 5'), ready('I')]));
    expect(link.runs).toHaveLength(0);
    // The run kept keys for its first 1,000 Executes; the other 501 were answered in order but not counted.
    expect(byId(t).p).toMatchObject({ calls: 1_000, rows: 1_000 });
    expect(byId(t).z).toMatchObject({ calls: 1, rows: 5 });
  });

  it('drops what was running when the connection closes', () => {
    const t = new StatementStats(10);
    const { link } = makeLink();
    link.owed = 1;
    link.track(new StatementRun(t, [key('q')], true, true, false, 'primary', 'write', performance.now()));
    link.conn.socket.emit('close');
    expect(link.runs).toHaveLength(0);
    expect(t.rows()).toEqual([]);
  });
});
