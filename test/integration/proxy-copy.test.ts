// COPY FROM STDIN and COPY TO STDOUT through pgsplit with psql, including a COPY that fails midway.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { proxyClient, psql, using } from './helpers.js';

const info = inject('cluster');
const table = `proxy_copy_${process.pid}`;
const N = 100_000;
const rowText = (i: number): string => `${i}\tname-${i}-é😀\n`;
const allRows = (): string => Array.from({ length: N }, (_, k) => rowText(k + 1)).join('');

let proxy: RunningProxy;
let tmp: string;

// Checks read what psql just wrote from another session; read-your-writes is per session, so they ask for the primary.
const q = async (sql: string): Promise<Record<string, unknown>[]> => using(proxyClient(proxy, info), async (c) => (await c.query(`/* pgsplit:primary */ ${sql}`)).rows);

describe('COPY through the proxy', () => {
  beforeAll(async () => {
    proxy = await startProxy(info);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-copy-'));
    await q(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL)`);
  });

  afterAll(async () => {
    if (proxy) await q(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await proxy?.close(1_000);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('loads 100k rows with COPY FROM STDIN piped into psql', async () => {
    const input = allRows();
    const r = await psql(proxy, info, ['-c', `COPY ${table} (id, name) FROM STDIN`], { input });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`COPY ${N}`);
    const [row] = await q(`SELECT count(*)::int AS n, sum(id)::bigint AS s, md5(string_agg(id || E'\\t' || name || E'\\n', '' ORDER BY id)) AS h FROM ${table}`);
    expect(row).toEqual({ n: N, s: String((N * (N + 1)) / 2), h: crypto.createHash('md5').update(input).digest('hex') });
  });

  it('dumps the rows back with COPY TO STDOUT, byte for byte', async () => {
    const r = await psql(proxy, info, ['-c', `COPY (SELECT id, name FROM ${table} ORDER BY id) TO STDOUT`]);
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(allRows().length);
    expect(r.stdout === allRows()).toBe(true);
  });

  it('round-trips through \\copy with files (CSV)', async () => {
    const out = path.join(tmp, 'out.csv');
    const dump = await psql(proxy, info, ['-c', `\\copy (SELECT id, name FROM ${table} WHERE id <= 5000 ORDER BY id) TO '${out}' WITH (FORMAT csv, HEADER)`]);
    expect(dump.stderr).toBe('');
    expect(dump.code).toBe(0);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines.length).toBe(5001);
    expect(lines[0]).toBe('id,name');
    expect(lines[5000]).toBe('5000,name-5000-é😀');

    const other = `${table}_csv`;
    const load = await psql(proxy, info, [
      '-c', `CREATE TABLE ${other} (id int, name text)`,
      '-c', `\\copy ${other} FROM '${out}' WITH (FORMAT csv, HEADER)`,
      '-c', `SELECT count(*), min(id), max(id) FROM ${other}`,
      '-c', `DROP TABLE ${other}`,
    ]);
    expect(load.code).toBe(0);
    expect(load.stdout).toContain('COPY 5000');
    expect(load.stdout).toContain('5000|1|5000');
  });

  it('reports a bad row midway, keeps nothing of that COPY, and the session continues', async () => {
    const good = Array.from({ length: 5_000 }, (_, k) => `${N + k + 1}\tok\n`).join('');
    const script = [
      `COPY ${table} (id, name) FROM STDIN;`,
      good + 'not-a-number\tbad\n' + good.replace(/^(\d+)/gm, (m) => String(Number(m) + 10_000)) + '\\.',
      `SELECT 'still here', count(*) FROM ${table};`,
      '',
    ].join('\n');
    // No ON_ERROR_STOP: psql goes on with the next statement on the same connection.
    const r = await psql(proxy, info, ['-v', 'ON_ERROR_STOP=0', '-f', '-'], { input: script });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/invalid input syntax for type integer: "not-a-number"/);
    expect(r.stderr).toMatch(/COPY proxy_copy_\d+, line 5001/);
    expect(r.stdout).toContain(`still here|${N}`);
  });

  it('reports a constraint violation at the end of COPY with its SQLSTATE', async () => {
    const dup = `1\tduplicate\n`;
    const r = await psql(proxy, info, ['-v', 'VERBOSITY=verbose', '-c', `COPY ${table} (id, name) FROM STDIN`], { input: dup });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/23505/);
    expect(r.stderr).toMatch(/duplicate key value violates unique constraint/);
    const [row] = await q(`SELECT count(*)::int AS n FROM ${table}`);
    expect(row).toEqual({ n: N });
  });
});
