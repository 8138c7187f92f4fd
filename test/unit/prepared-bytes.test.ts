// limits.max_prepared_bytes: the size of a session's named prepared statements, and of what a server connection keeps prepared.
import { beforeAll, describe, expect, it } from 'vitest';
import { PreparedOnServer } from '../../src/backend/prepared-on-server.js';
import type { ServerLink } from '../../src/backend/server-link.js';
import { F } from '../../src/protocol/codes.js';
import { Classifier } from '../../src/router/classifier.js';
import { initParser } from '../../src/router/parser.js';
import { PreparedStatements } from '../../src/frontend/prepared-statements.js';
import { newUnit, type Unit } from '../../src/frontend/unit.js';

let classifier: Classifier;
beforeAll(async () => {
  await initParser();
  classifier = new Classifier();
});

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const parse = (name: string, sql: string) => message('P', Buffer.concat([Buffer.from(`${name}\0${sql}\0`), Buffer.from([0, 0])]));
const close = (name: string) => message('C', Buffer.from(`S${name}\0`));

/** The unit a Parse (or Close) of the client joins, after the session has looked at it. */
function send(ps: PreparedStatements, frame: Buffer): Unit {
  const u = newUnit();
  ps.analyze(u, frame[0], frame.subarray(5), frame);
  return u;
}

/** A statement of about `kb` kB whose text is unique to `tag`. */
const big = (tag: string, kb: number) => `SELECT '${tag}' /* ${'x'.repeat(kb * 1024)} */`;

describe('limits.max_prepared_bytes in a session', () => {
  it('refuses (53400) a named Parse that would take the session past the limit, and takes it once a Close made room', () => {
    const ps = new PreparedStatements(classifier, () => 100, null, () => 3 * 1024 + 512);
    expect(send(ps, parse('a', big('a', 1))).refusal).toBeNull();
    expect(send(ps, parse('b', big('b', 1))).refusal).toBeNull();
    expect(send(ps, parse('c', big('c', 1))).refusal).toBeNull();
    const refused = send(ps, parse('d', big('d', 1))).refusal;
    expect(refused?.sqlstate).toBe('53400');
    expect(refused?.message).toContain('limits.max_prepared_bytes');
    expect(ps.size).toBe(3);
    send(ps, close('a'));
    expect(send(ps, parse('d', big('d', 1))).refusal).toBeNull();
    expect(ps.size).toBe(3);
  });

  it('counts a statement prepared again under the same name once, and the unnamed statement not at all', () => {
    const ps = new PreparedStatements(classifier, () => 100, null, () => 2 * 1024 + 512);
    expect(send(ps, parse('a', big('a1', 1))).refusal).toBeNull();
    expect(send(ps, parse('a', big('a2', 1))).refusal).toBeNull();
    expect(send(ps, parse('b', big('b', 1))).refusal).toBeNull();
    expect(send(ps, parse('', big('unnamed', 8))).refusal).toBeNull();
  });
});

describe('limits.max_prepared_bytes on a server connection', () => {
  function linkWith(names: string[], kb: number): ServerLink {
    const prepared = new PreparedOnServer();
    for (const n of names) prepared.set(n, parse(n, big(n, kb)));
    return { prepared, unsure: null, unnamed: null } as unknown as ServerLink;
  }
  const closed = (out: Buffer[]) => out.filter((b) => b[0] === F.Close).map((b) => b.toString('latin1', 6, b.length - 1));

  it('closes the least recently used statements until what the unit Parses fits, and keeps the bytes it holds', () => {
    const ps = new PreparedStatements(classifier, () => 100, null, () => 1 << 20);
    const link = linkWith(['s1', 's2', 's3'], 1);
    const before = link.prepared.bytes;
    expect(before).toBeGreaterThan(3 * 1024);
    const u = send(ps, parse('n', big('n', 1)));
    const out: Buffer[] = [];
    expect(ps.prepareOn(u, link, out, 100, 3 * 1024 + 512)).toBe(true);
    expect(closed(out)).toEqual(['s1']);
    expect([...link.prepared.keys()]).toEqual(['s2', 's3']);
    expect(link.prepared.bytes).toBe(before - parse('s1', big('s1', 1)).length);
  });

  it('never closes a statement the unit itself needs', () => {
    const ps = new PreparedStatements(classifier, () => 100, null, () => 1 << 20);
    send(ps, parse('mine', big('mine', 1)));
    const u = newUnit();
    // Bind of the client's 'mine': the unit needs pgsplit's name for it, prepared on this server first.
    ps.analyze(u, F.Bind, Buffer.from('\0mine\0\0\0\0\0\0\0'), message('B', Buffer.from('\0mine\0\0\0\0\0\0\0')));
    const link = linkWith(['s1', 's2'], 1);
    const out: Buffer[] = [];
    ps.prepareOn(u, link, out, 100, 2 * 1024);
    expect(u.needs).toHaveLength(1);
    expect(link.prepared.has(u.needs[0])).toBe(true);
    expect(closed(out)).toEqual(['s1', 's2']);
  });

  it('keeps its byte count through set, delete and clear', () => {
    const p = new PreparedOnServer();
    p.set('a', Buffer.alloc(10));
    p.set('b', Buffer.alloc(20));
    p.set('a', Buffer.alloc(5));
    expect(p.bytes).toBe(25);
    expect(p.delete('b')).toBe(true);
    expect(p.delete('b')).toBe(false);
    expect(p.bytes).toBe(5);
    p.clear();
    expect(p.bytes).toBe(0);
  });
});
