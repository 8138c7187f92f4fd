// The Reloader on a fake target: results and counts for applied, partial and rejected files, one reload at a time, log lines, and which nodes' pools a reload drains.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { Reloader } from '../../src/compose/reload.js';
import { changedNodes } from '../../src/compose/frontend.js';
import { createLogger } from '../../src/util/logger.js';

const BASE = `listen: { port: 6432 }
users: [{ name: app, password: s3cret }]
nodes:
  - { name: pg1, host: db1 }
  - { name: pg2, host: db2 }
`;

let dir: string;
let file: string;
let lines: Record<string, unknown>[];
let running: Config;
let applied: Config[];

function reloader(): Reloader {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const log = createLogger('info', sink as unknown as Parameters<typeof createLogger>[1]);
  return new Reloader(
    {
      current: () => running,
      runtime: () => ({ primary: 'pg1', workers: 1 }),
      async apply(next) {
        // Applying takes a while (workers confirming): a second reload must wait for it.
        await new Promise((r) => setTimeout(r, 20));
        applied.push(next);
        running = next;
      },
    },
    log,
    file,
  );
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-reloader-'));
  file = path.join(dir, 'pgsplit.yaml');
  fs.writeFileSync(file, BASE);
  running = parseConfig(BASE, {});
  lines = [];
  applied = [];
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const settle = () => new Promise((r) => setTimeout(r, 50));

describe('Reloader', () => {
  it('applies live changes, says which, and counts the reload', async () => {
    fs.writeFileSync(file, `${BASE}routing: { parse_cache_size: 5 }\n`);
    const r = reloader();
    expect(await r.reloadConfig()).toEqual({ result: 'applied', applied: ['routing.parse_cache_size'], kept: [] });
    expect(running.routing.parse_cache_size).toBe(5);
    expect(r.counts).toEqual({ applied: 1, partial: 0, rejected: 0 });
    await settle();
    expect(lines.at(-1)).toMatchObject({ msg: 'config reloaded', applied: ['routing.parse_cache_size'] });
  });

  it('keeps restart-only keys by name, with the reason, in the answer and the warning', async () => {
    fs.writeFileSync(file, `${BASE.replace('port: 6432', 'port: 7000')}log: { level: debug }\n`);
    const r = reloader();
    const res = await r.reloadConfig();
    expect(res).toMatchObject({ result: 'partial', applied: ['log.level'], kept: [{ key: 'listen.port', reason: expect.stringMatching(/bound once/) }] });
    expect(running.listen.port).toBe(6432);
    expect(running.log.level).toBe('debug');
    await settle();
    expect(lines.at(-1)).toMatchObject({ msg: expect.stringMatching(/keep their running value/), kept: [{ key: 'listen.port' }] });
    expect(r.counts.partial).toBe(1);
  });

  it('rejects an invalid file whole, naming the key, and keeps the running config', async () => {
    fs.writeFileSync(file, `${BASE}pool: { size: lots }\nlog: { level: debug }\n`);
    const r = reloader();
    const res = await r.reloadConfig();
    expect(res).toEqual({ result: 'rejected', applied: [], kept: [], error: expect.stringMatching(/^pool\.size: expected an integer/) });
    expect(applied).toEqual([]);
    expect(r.counts).toEqual({ applied: 0, partial: 0, rejected: 1 });
    await settle();
    expect(lines.at(-1)).toMatchObject({ msg: expect.stringMatching(/rejected/), error: res.error });
  });

  it('rejects a file whose TLS files cannot be loaded', async () => {
    fs.writeFileSync(file, `${BASE}tls: { mode: allow, cert: ${dir}/missing.crt, key: ${dir}/missing.key }\n`);
    const res = await reloader().reloadConfig();
    expect(res).toMatchObject({ result: 'rejected', error: expect.stringMatching(/^tls\.cert: cannot read/) });
    expect(applied).toEqual([]);
  });

  it('rejects removing the current primary', async () => {
    fs.writeFileSync(file, BASE.replace('  - { name: pg1, host: db1 }\n', ''));
    expect(await reloader().reloadConfig()).toMatchObject({ result: 'rejected', error: expect.stringMatching(/^nodes: "pg1" is the current primary/) });
  });

  it('without a file, there is nothing to re-read', async () => {
    const r = new Reloader({ current: () => running, runtime: () => ({ primary: null, workers: 1 }), apply: async () => {} }, createLogger('silent'), null);
    expect(await r.reloadConfig()).toMatchObject({ result: 'rejected', error: expect.stringMatching(/not started from a config file/) });
  });

  it('runs one reload at a time: the second plans against what the first put in place', async () => {
    const r = reloader();
    fs.writeFileSync(file, `${BASE}routing: { parse_cache_size: 5 }\n`);
    const first = r.reloadConfig();
    const second = r.reload(parseConfig(`${BASE}routing: { parse_cache_size: 5 }\nlog: { level: debug }\n`, {}));
    expect((await first).applied).toEqual(['routing.parse_cache_size']);
    expect((await second).applied).toEqual(['log.level']);
    expect(applied).toHaveLength(2);
  });
});

describe('changedNodes', () => {
  const c = (nodes: string, extra = '') => parseConfig(`users: [{ name: app, password: x }]\nnodes:\n${nodes}${extra}`, {});
  it('names nodes removed or reached differently (address, TLS, cleartext passwords), not those with other changes', () => {
    const before = c('  - { name: pg1, host: a }\n  - { name: pg2, host: b }\n  - { name: pg3, host: c }\n  - { name: pg4, host: d }\n');
    const after = c('  - { name: pg1, host: a, weight: 5 }\n  - { name: pg2, host: b, port: 6000 }\n  - { name: pg4, host: d, allow_cleartext_password: true }\n  - { name: pg5, host: e }\n');
    expect(changedNodes(before, after)).toEqual(['pg2', 'pg3', 'pg4']);
    expect(changedNodes(before, c('  - { name: pg1, host: a }\n  - { name: pg2, host: b }\n  - { name: pg3, host: c }\n  - { name: pg4, host: d, tls: { mode: require } }\n'))).toEqual(['pg4']);
    expect(changedNodes(before, c('  - { name: pg1, host: a }\n  - { name: pg2, host: b }\n  - { name: pg3, host: c }\n  - { name: pg4, host: d }\n', 'server_tls: { mode: require }\n'))).toEqual(['pg1', 'pg2', 'pg3', 'pg4']);
  });
});
