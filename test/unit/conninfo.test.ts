// Unit tests for libpq connection strings (parseConninfo, formatConninfo, rewriteConninfo) as used to re-point primary_conninfo.
import { describe, it, expect } from 'vitest';
import { formatConninfo, parseConninfo, rewriteConninfo } from '../../src/failover/conninfo.js';

/** What pg_basebackup -R (PostgreSQL 17) writes into postgresql.auto.conf as primary_conninfo. */
const BASEBACKUP =
  "user=postgres passfile='/root/.pgpass' channel_binding=prefer host=127.0.0.1 port=5433 sslmode=prefer sslcompression=0 sslcertmode=allow sslsni=1 ssl_min_protocol_version=TLSv1.2 gssencmode=prefer krbsrvname=postgres gssdelegation=0 target_session_attrs=any load_balance_hosts=disable";

const BASEBACKUP_ENTRIES: [string, string][] = [
  ['user', 'postgres'],
  ['passfile', '/root/.pgpass'],
  ['channel_binding', 'prefer'],
  ['host', '127.0.0.1'],
  ['port', '5433'],
  ['sslmode', 'prefer'],
  ['sslcompression', '0'],
  ['sslcertmode', 'allow'],
  ['sslsni', '1'],
  ['ssl_min_protocol_version', 'TLSv1.2'],
  ['gssencmode', 'prefer'],
  ['krbsrvname', 'postgres'],
  ['gssdelegation', '0'],
  ['target_session_attrs', 'any'],
  ['load_balance_hosts', 'disable'],
];

const entries = (text: string) => [...parseConninfo(text)];

describe('parseConninfo', () => {
  it('parses what pg_basebackup -R writes, keys in order, quotes removed', () => {
    expect(entries(BASEBACKUP)).toEqual(BASEBACKUP_ENTRIES);
  });

  it('keeps spaces inside quoted values', () => {
    expect(entries("host=db1 password='correct horse battery staple' application_name='my app'")).toEqual([
      ['host', 'db1'],
      ['password', 'correct horse battery staple'],
      ['application_name', 'my app'],
    ]);
  });

  it('unescapes \\\' and \\\\ inside quoted values', () => {
    // password='it\'s a \\ secret'  →  it's a \ secret
    expect(parseConninfo("password='it\\'s a \\\\ secret' user=u").get('password')).toBe("it's a \\ secret");
    expect(parseConninfo("passfile='C:\\\\pg\\\\pass'").get('passfile')).toBe('C:\\pg\\pass');
    expect(parseConninfo("password='\\''").get('password')).toBe("'");
  });

  it('unescapes backslashes in unquoted values', () => {
    expect(parseConninfo('password=a\\ b user=u')).toEqual(new Map([['password', 'a b'], ['user', 'u']]));
  });

  it("reads '' as an empty value", () => {
    expect(entries("host=db1 password='' user=postgres")).toEqual([
      ['host', 'db1'],
      ['password', ''],
      ['user', 'postgres'],
    ]);
  });

  it('allows whitespace around "=" and between pairs (tabs, newlines)', () => {
    expect(entries("  host = db1\tport= 5432\n user ='a b'  ")).toEqual([
      ['host', 'db1'],
      ['port', '5432'],
      ['user', 'a b'],
    ]);
  });

  it('keeps "=" inside a value', () => {
    expect(parseConninfo("options='-c search_path=app' host=db1").get('options')).toBe('-c search_path=app');
    expect(parseConninfo('options=-csearch_path=app host=db1').get('options')).toBe('-csearch_path=app');
  });

  it('lets a repeated key take the last value (as libpq does)', () => {
    expect(entries('host=a port=1 host=b')).toEqual([
      ['host', 'b'],
      ['port', '1'],
    ]);
  });

  it('reads an empty string as no keys', () => {
    expect(parseConninfo('').size).toBe(0);
    expect(parseConninfo('   ').size).toBe(0);
  });

  it('throws on an unterminated quote', () => {
    expect(() => parseConninfo("host=db1 password='secret")).toThrow(/unterminated/);
    // The closing quote is escaped, so it does not close the value.
    expect(() => parseConninfo("host=db1 password='secret\\'")).toThrow(/unterminated/);
    expect(() => parseConninfo("password='")).toThrow(/unterminated/);
  });

  it('throws on a key without "="', () => {
    expect(() => parseConninfo('host=db1 port')).toThrow(/missing "="/);
  });

  // libpq ends a keyword at whitespace and then requires "=" ("missing "=" after "host" in connection info string").
  it('throws, as libpq does, when a keyword is followed by something other than "="', () => {
    expect(() => parseConninfo('host db1 port=5432')).toThrow(/missing "="/);
  });
});

describe('formatConninfo', () => {
  it('prints plain values bare and quotes values with spaces, quotes, backslashes or nothing', () => {
    const m = new Map([
      ['host', '10.0.0.2'],
      ['password', "it's a \\ secret"],
      ['application_name', 'my app'],
      ['sslpassword', ''],
    ]);
    expect(formatConninfo(m)).toBe("host=10.0.0.2 password='it\\'s a \\\\ secret' application_name='my app' sslpassword=''");
  });

  it('round-trips through parseConninfo, keeping every key, value and the order', () => {
    const tricky = new Map([
      ['user', 'postgres'],
      ['password', "a 'b' \\c\\ d"],
      ['passfile', '/root/my .pgpass'],
      ['options', '-c search_path=app,public'],
      ['application_name', ''],
      ['krbsrvname', '\\'],
      ['sslkey', "'"],
      ['dbname', '  padded\t'],
      ['host', 'db-ü.example'],
    ]);
    expect([...parseConninfo(formatConninfo(tricky))]).toEqual([...tricky]);
    const real = parseConninfo(BASEBACKUP);
    expect([...parseConninfo(formatConninfo(real))]).toEqual(BASEBACKUP_ENTRIES);
  });
});

describe('rewriteConninfo', () => {
  it('re-points a pg_basebackup conninfo: host and port change in place, application_name is added, the rest is kept in order', () => {
    const out = rewriteConninfo(BASEBACKUP, { host: '10.0.0.2', port: '5432', application_name: 'pg2' });
    const want = BASEBACKUP_ENTRIES.map(([k, v]): [string, string] => [k, k === 'host' ? '10.0.0.2' : k === 'port' ? '5432' : v]);
    want.push(['application_name', 'pg2']);
    expect(entries(out)).toEqual(want);
    expect(out.startsWith('user=postgres passfile=')).toBe(true);
    expect(out).toContain(' host=10.0.0.2 port=5432 ');
    expect(out.endsWith(' load_balance_hosts=disable application_name=pg2')).toBe(true);
  });

  it('replaces an existing application_name in place', () => {
    expect(rewriteConninfo('application_name=old host=a port=1', { host: 'b', application_name: 'pg3' })).toBe('application_name=pg3 host=b port=1');
  });

  it('drops hostaddr when host changes (it would override the new host)', () => {
    const out = rewriteConninfo('host=db1 hostaddr=10.0.0.1 port=5432 user=replicator', { host: 'db2', port: '5433' });
    expect(entries(out)).toEqual([
      ['host', 'db2'],
      ['port', '5433'],
      ['user', 'replicator'],
    ]);
  });

  it('keeps hostaddr when only the port changes', () => {
    const out = rewriteConninfo('host=db1 hostaddr=10.0.0.1 port=5432', { port: '5433' });
    expect(entries(out)).toEqual([
      ['host', 'db1'],
      ['hostaddr', '10.0.0.1'],
      ['port', '5433'],
    ]);
  });

  it('keeps quoted values intact and quotes new values that need it', () => {
    const out = rewriteConninfo("host=db1 password='p w\\'d' port=5432", { host: 'db2', application_name: 'node two' });
    expect(parseConninfo(out)).toEqual(
      new Map([
        ['host', 'db2'],
        ['password', "p w'd"],
        ['port', '5432'],
        ['application_name', 'node two'],
      ]),
    );
  });

  it('adds host and port to a conninfo that had neither', () => {
    expect(entries(rewriteConninfo('user=replicator', { host: 'db2', port: '5433' }))).toEqual([
      ['user', 'replicator'],
      ['host', 'db2'],
      ['port', '5433'],
    ]);
  });

  it('throws on a conninfo with an unterminated quote rather than producing a wrong one', () => {
    expect(() => rewriteConninfo("host=db1 password='x", { host: 'db2' })).toThrow(/unterminated/);
  });
});
