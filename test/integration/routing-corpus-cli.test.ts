// `pgsplit route --jsonl` (the built CLI, as users run it) on every statement of the shared routing corpus: reads to a replica, writes to the primary, session state to every backend.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../harness/proxy.js';
import { run } from './helpers.js';

interface Case {
  category: string;
  label: 'read' | 'write' | 'txn' | 'session';
  sql: string;
}

// The shared corpus beside the repository when it is there, else the copy kept in test/fixtures.
const BESIDE = path.resolve(REPO_ROOT, '../shared/routing-corpus/statements.jsonl');
const CORPUS = fs.existsSync(BESIDE) ? BESIDE : path.join(REPO_ROOT, 'test/fixtures/routing-corpus-shared.jsonl');
const BIN = path.join(REPO_ROOT, 'bin/pgsplit.js');

/**
 * Corpus lines whose label contradicts DESIGN.md §4 / issue 3 (the same list as test/unit/router-corpus.test.ts):
 * a WITH HOLD cursor pins the session to the primary; SET SESSION CHARACTERISTICS is session state.
 */
const DISAGREE: Record<string, string> = {
  'DECLARE c2 NO SCROLL CURSOR WITH HOLD FOR SELECT id FROM t ORDER BY id': 'primary',
  'SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED': 'session',
};

function expected(c: Case): string {
  if (DISAGREE[c.sql]) return DISAGREE[c.sql]!;
  switch (c.label) {
    case 'read':
      return 'replica';
    case 'write':
      return 'primary';
    case 'session':
      return 'session';
    case 'txn':
      // BEGIN READ ONLY-type statements may start a replica transaction; other transaction control goes to the primary.
      return /\bread\s+only\b/i.test(c.sql) ? 'replica' : 'primary';
  }
}

describe('pgsplit route --jsonl on the shared corpus', () => {
  const cases: Case[] = fs.readFileSync(CORPUS, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Case);

  it('routes every corpus statement where its label says', async () => {
    expect(cases.length).toBeGreaterThan(200);
    const input = cases.map((c) => JSON.stringify(c.sql)).join('\n') + '\n';
    const r = await run(process.execPath, [BIN, 'route', '--jsonl'], { input, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(cases.length);
    const wrong: string[] = [];
    const seen = { read: 0, write: 0, txn: 0, session: 0 };
    cases.forEach((c, i) => {
      const out = JSON.parse(lines[i]!) as { target?: string; reason?: string; error?: string };
      expect(typeof out.reason, lines[i]).toBe('string');
      seen[c.label]++;
      const want = expected(c);
      if (out.target !== want) wrong.push(`${i + 1} [${c.label}] ${c.sql.slice(0, 90)} → ${out.target} (${out.reason}), expected ${want}`);
    });
    expect(wrong, wrong.join('\n')).toEqual([]);
    expect(seen.read).toBeGreaterThan(0);
    expect(seen.write).toBeGreaterThan(0);
  });

  it('prints the same answer for --sql as for the same statement in --jsonl', async () => {
    const sample = [cases.find((c) => c.label === 'read'), cases.find((c) => c.label === 'write'), cases.find((c) => c.label === 'session')].filter((c): c is Case => !!c);
    const jsonl = await run(process.execPath, [BIN, 'route', '--jsonl'], { input: sample.map((c) => JSON.stringify(c.sql)).join('\n'), timeoutMs: 30_000 });
    expect(jsonl.code, jsonl.stderr).toBe(0);
    const fromJsonl = jsonl.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
    for (let i = 0; i < sample.length; i++) {
      const one = await run(process.execPath, [BIN, 'route', '--sql', sample[i]!.sql], { timeoutMs: 30_000 });
      expect(one.code, one.stderr).toBe(0);
      expect(JSON.parse(one.stdout.trim())).toEqual(fromJsonl[i]);
    }
  });

  it('answers a line that is not a JSON string with an error line and exit code 1, keeping the lines aligned', async () => {
    const r = await run(process.execPath, [BIN, 'route', '--jsonl'], { input: '"SELECT 1"\nnot json\n"DELETE FROM t"\n', timeoutMs: 30_000 });
    expect(r.code).toBe(1);
    const out = r.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
    expect(out).toHaveLength(3);
    expect(out[0].target).toBe('replica');
    expect(out[1].error).toBeDefined();
    expect(out[2].target).toBe('primary');
  });
});
