// `pgsplit route`: one JSON line per statement string, from --sql or --jsonl on stdin, optionally with --config.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { runRouteCommand, type RouteIo } from '../../src/cli/route.js';

function fakeIo(input: (string | Buffer)[] = [], extra: Partial<RouteIo> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: RouteIo = {
    stdin: (async function* () {
      for (const chunk of input) yield chunk;
    })(),
    stdout: { write: (s: string) => out.push(s) },
    stderr: { write: (s: string) => err.push(s) },
    ...extra,
  };
  return { io, out: () => out.join(''), err: () => err.join(''), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}

describe('pgsplit route --sql', () => {
  it.each([
    ['SELECT 1', { target: 'replica', reason: 'select' }],
    ['UPDATE t SET a = 1', { target: 'primary', reason: 'write' }],
    ['SET search_path = app', { target: 'session', reason: 'set' }],
    ['BEGIN READ ONLY', { target: 'replica', reason: 'txn-begin-read-only' }],
    ['SELEC 1', { target: 'primary', reason: 'parse-error' }],
  ])('%s', async (sql, expected) => {
    const f = fakeIo();
    expect(await runRouteCommand(['--sql', sql], f.io)).toBe(0);
    expect(f.out()).toBe(`${JSON.stringify(expected)}\n`);
  });

  it('accepts --sql=…', async () => {
    const f = fakeIo();
    expect(await runRouteCommand(['--sql=SELECT nextval($1)'], f.io)).toBe(0);
    expect(f.lines()).toEqual([{ target: 'primary', reason: 'write-function:nextval' }]);
  });

  it('--verbose shows the statements', async () => {
    const f = fakeIo();
    await runRouteCommand(['--verbose', '--sql', 'CREATE TEMP TABLE t (a int)'], f.io);
    expect(f.lines()[0]).toMatchObject({ target: 'primary', reason: 'ddl', statements: [{ kind: 'write', pin: 'temp-table' }] });
  });
});

describe('pgsplit route --jsonl', () => {
  it('prints one line per input line, however stdin is chunked', async () => {
    const f = fakeIo(['"SELECT 1"\n"DELETE', ' FROM t"\n\n', Buffer.from('{"label": "read", "sql": "TABLE t"}\n"LISTEN c"')]);
    expect(await runRouteCommand(['--jsonl'], f.io)).toBe(0);
    expect(f.lines()).toEqual([
      { target: 'replica', reason: 'select' },
      { target: 'primary', reason: 'write' },
      { target: 'replica', reason: 'select' },
      { target: 'primary', reason: 'listen' },
    ]);
  });

  it('answers a line that is not a JSON string with an error and exits 1', async () => {
    const f = fakeIo(['SELECT 1\n', '42\n', '"SELECT 1"\n']);
    expect(await runRouteCommand(['--jsonl'], f.io)).toBe(1);
    expect(f.lines()).toEqual([{ error: 'line 1: expected a JSON string' }, { error: 'line 2: expected a JSON string' }, { target: 'replica', reason: 'select' }]);
  });
});

describe('pgsplit route --config', () => {
  it('uses the config function lists', async () => {
    const config = parseConfig('auth: { method: trust }\nnodes: [{ name: a, host: h }]\nrouting: { write_functions: [app.audit] }\n', {});
    const f = fakeIo(['"SELECT app.audit()"\n'], { loadConfig: () => config });
    expect(await runRouteCommand(['--jsonl', '--config', 'x.yaml'], f.io)).toBe(0);
    expect(f.lines()).toEqual([{ target: 'primary', reason: 'write-function:app.audit' }]);
  });

  it('reads a real file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgsplit-route-'));
    try {
      const file = join(dir, 'pgsplit.yaml');
      writeFileSync(file, 'auth: { method: trust }\nnodes: [{ name: a, host: h }]\nrouting: { max_parse_length: 16B }\n');
      const f = fakeIo();
      expect(await runRouteCommand([`--config=${file}`, '--sql', 'SELECT 1234567890123'], f.io)).toBe(0);
      expect(f.lines()).toEqual([{ target: 'primary', reason: 'too-long' }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a bad config is reported with its key path, exit 2', async () => {
    const f = fakeIo();
    expect(await runRouteCommand(['--config', '/nonexistent/pgsplit.yaml', '--sql', 'SELECT 1'], f.io)).toBe(2);
    expect(f.err()).toContain('config: /nonexistent/pgsplit.yaml: cannot read config file: file not found');
    expect(f.out()).toBe('');
  });
});

describe('usage', () => {
  it.each([[[]], [['--sql']], [['--sql', 'x', '--jsonl']], [['--bogus']]])('%j is a usage error', async (args) => {
    const f = fakeIo();
    expect(await runRouteCommand(args, f.io)).toBe(2);
    expect(f.err()).toContain('usage: pgsplit route');
  });

  it('--help prints usage', async () => {
    const f = fakeIo();
    expect(await runRouteCommand(['--help'], f.io)).toBe(0);
    expect(f.out()).toContain('usage: pgsplit route');
  });
});
