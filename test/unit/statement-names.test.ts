// Pooled servers see pgsplit's statement names: renaming Parse/Bind/Describe/Close, the shared registry, startup parameters as settings.
import { describe, expect, it } from 'vitest';
import { MessageWriter } from '../../src/protocol/writer.js';
import { renameStatement, statementNameSpan } from '../../src/protocol/statement-names.js';
import { StatementRegistry } from '../../src/frontend/statement-registry.js';
import { optionWords, startupSettings } from '../../src/frontend/startup-settings.js';

const parse = (name: string, sql: string, types: number[] = []) =>
  MessageWriter.message(0x50, (w) => {
    w.cstring(name).cstring(sql).int8(0).int8(types.length);
    for (const t of types) w.int32(t);
  });
const bind = (portal: string, stmt: string) => MessageWriter.message(0x42, (w) => w.cstring(portal).cstring(stmt).int8(0).int8(0).int8(0).int8(0).int8(0).int8(0));
const describe_ = (kind: 'S' | 'P', name: string) => MessageWriter.message(0x44, (w) => w.int8(kind.charCodeAt(0)).cstring(name));

describe('renameStatement', () => {
  it('renames the statement of Parse, Bind, Describe S and Close S, keeping the rest byte for byte and the length right', () => {
    const p = renameStatement(parse('mine', 'SELECT $1::int', [23]), 'pgsplit_s1');
    expect(p).toEqual(parse('pgsplit_s1', 'SELECT $1::int', [23]));
    expect(p.readInt32BE(1)).toBe(p.length - 1);
    expect(renameStatement(bind('portal', 'mine'), 'pgsplit_s22')).toEqual(bind('portal', 'pgsplit_s22'));
    expect(renameStatement(describe_('S', 'a-much-longer-client-name'), 'x')).toEqual(describe_('S', 'x'));
    const close = MessageWriter.message(0x43, (w) => w.int8(0x53).cstring('mine'));
    expect(renameStatement(close, 'gone')).toEqual(MessageWriter.message(0x43, (w) => w.int8(0x53).cstring('gone')));
  });

  it('leaves portals alone and renames multibyte names by bytes', () => {
    const d = describe_('P', 'cursor');
    expect(statementNameSpan(d)).toBeNull();
    expect(renameStatement(d, 'x')).toBe(d);
    expect(renameStatement(parse('é', 'SELECT 1'), 'ü')).toEqual(parse('ü', 'SELECT 1'));
  });

  it('throws a RangeError on a name without its terminator (the session answers 08P01)', () => {
    const bad = Buffer.from([0x42, 0, 0, 0, 8, 0x61, 0x62, 0x63, 0x64]);
    expect(() => renameStatement(bad, 'x')).toThrow(RangeError);
  });
});

describe('StatementRegistry', () => {
  const body = (m: Buffer) => m.subarray(5);
  const acquire = (r: StatementRegistry, m: Buffer) => r.acquire(body(m), body(m).indexOf(0), (n) => renameStatement(m, n));

  it('gives one server name to the same text and parameter types, whatever the client called it', () => {
    const r = new StatementRegistry();
    const a = acquire(r, parse('a', 'SELECT $1::int', [23]));
    const b = acquire(r, parse('b', 'SELECT $1::int', [23]));
    const c = acquire(r, parse('a', 'SELECT $1::int', [20]));
    expect(a).toBe(b);
    expect(c.name).not.toBe(a.name);
    expect(a.parse).toEqual(parse(a.name, 'SELECT $1::int', [23]));
    expect(r.size).toBe(2);
  });

  it('forgets a statement when its last user releases it, and never hands out a name twice', () => {
    const r = new StatementRegistry();
    const m = parse('a', 'SELECT 1');
    const first = acquire(r, m);
    acquire(r, m);
    r.release(first);
    expect(r.size).toBe(1);
    r.release(first);
    expect(r.size).toBe(0);
    expect(acquire(r, m).name).not.toBe(first.name);
  });
});

describe('startup parameters as settings', () => {
  const server = new Map([['client_encoding', 'UTF8'], ['application_name', ''], ['datestyle', 'ISO, MDY']]);

  it('turns parameters a fresh server does not already have into set_config calls, options included', () => {
    const list = startupSettings(
      new Map([['user', 'u'], ['database', 'd'], ['client_encoding', 'UTF8'], ['application_name', "it's"], ['options', '-c search_path=a,b --statement-timeout=5s']]),
      server,
    );
    expect(list.map((e) => e.key)).toEqual(['application_name', 'search_path', 'statement_timeout']);
    expect(list[0].sql).toBe("SELECT pg_catalog.set_config($p$application_name$p$, $p$it's$p$, false)");
    expect(list[1].sql).toContain('$p$a,b$p$');
  });

  it('quotes a value that contains the dollar tag with another tag', () => {
    const [e] = startupSettings(new Map([['application_name', 'x$p$y']]), server);
    expect(e.sql).toBe('SELECT pg_catalog.set_config($p$application_name$p$, $p1$x$p$y$p1$, false)');
  });

  it('splits options like PostgreSQL (backslash escapes a space) and refuses other switches with 0A000', () => {
    expect(optionWords('-c  a=b\\ c   -cd=e')).toEqual(['-c', 'a=b c', '-cd=e']);
    expect(() => startupSettings(new Map([['options', '-B 100']]), server)).toThrow(expect.objectContaining({ sqlstate: '0A000' }));
    expect(() => startupSettings(new Map([['options', '-c novalue']]), server)).toThrow(expect.objectContaining({ sqlstate: '0A000' }));
  });
});
