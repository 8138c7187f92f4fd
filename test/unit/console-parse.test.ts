// Unit tests for the admin console's command parser: every command, case and spacing, quoting, comments, several per query, and the 42601 answers.
import { describe, expect, it } from 'vitest';
import { COMMANDS, MAX_COMMANDS, parseCommands, splitStatements } from '../../src/console/parse-command.js';

const ok = (text: string) => {
  const p = parseCommands(text);
  if (!p.ok) throw new Error(`expected ${JSON.stringify(text)} to parse, got ${p.error.message}`);
  return p.commands;
};
const fails = (text: string) => {
  const p = parseCommands(text);
  if (p.ok) throw new Error(`expected ${JSON.stringify(text)} to fail, got ${JSON.stringify(p.commands)}`);
  return p.error;
};

describe('parseCommands', () => {
  it.each([
    ['SHOW NODES', { kind: 'show', topic: 'nodes' }],
    ['show pools', { kind: 'show', topic: 'pools' }],
    ['  Show   Clients ; ', { kind: 'show', topic: 'clients' }],
    ['SHOW SERVERS;', { kind: 'show', topic: 'servers' }],
    ['SHOW STATS', { kind: 'show', topic: 'stats' }],
    ['SHOW STATEMENTS', { kind: 'show', topic: 'statements' }],
    ['SHOW CONFIG', { kind: 'show', topic: 'config' }],
    ['SHOW VERSION', { kind: 'show', topic: 'version' }],
    ['SHOW HELP', { kind: 'show', topic: 'help' }],
    ['RELOAD', { kind: 'reload' }],
    ['pause', { kind: 'pause' }],
    ['Resume;', { kind: 'resume' }],
    ['BAN pg2', { kind: 'ban', node: 'pg2' }],
    ['unban pg2', { kind: 'unban', node: 'pg2' }],
    ['SWITCHOVER pg2', { kind: 'switchover', node: 'pg2' }],
    ['switchover to pg3', { kind: 'switchover', node: 'pg3' }],
    ["BAN 'pg2'", { kind: 'ban', node: 'pg2' }],
    ['BAN "db-2.east"', { kind: 'ban', node: 'db-2.east' }],
    // Node names keep their case: they are compared with the config's exactly.
    ['BAN PG2', { kind: 'ban', node: 'PG2' }],
    ['\tSHOW\nNODES\n', { kind: 'show', topic: 'nodes' }],
    ['RESET STATS', { kind: 'reset-stats' }],
    ['reset stats;', { kind: 'reset-stats' }],
  ])('%j', (text, command) => {
    expect(ok(text)).toEqual([command]);
  });

  it('takes several commands in one query, in order, and drops comments', () => {
    expect(ok('SHOW NODES; -- the nodes\n/* then */ SHOW POOLS;;BAN pg3')).toEqual([
      { kind: 'show', topic: 'nodes' },
      { kind: 'show', topic: 'pools' },
      { kind: 'ban', node: 'pg3' },
    ]);
  });

  it('answers an empty query (or one of only comments and semicolons) with no command', () => {
    expect(ok('')).toEqual([]);
    expect(ok(' ; -- nothing\n ;')).toEqual([]);
  });

  it('does not split at a semicolon inside quotes', () => {
    expect(splitStatements("BAN 'a;b'; SHOW NODES")).toEqual(["BAN 'a;b'", 'SHOW NODES']);
    expect(splitStatements("BAN 'it''s'")).toEqual(["BAN 'it''s'"]);
  });

  it('refuses with 42601 and a hint listing every command', () => {
    const e = fails('SELECT 1');
    expect(e.sqlstate).toBe('42601');
    expect(e.message).toMatch(/unknown admin console command "SELECT 1"/);
    for (const [syntax] of COMMANDS) expect(e.hint).toContain(syntax);
  });

  it.each([
    ['SHOW', /SHOW takes one of NODES, POOLS/],
    ['SHOW TABLES', /SHOW takes one of/],
    ['SHOW NODES POOLS', /SHOW takes one of/],
    ['BAN', /BAN takes one node name/],
    ['BAN pg2 pg3', /BAN takes one node name/],
    ["BAN 'pg 2'", /BAN takes one node name/],
    ['BAN pg2;drop', /unknown admin console command "drop"/],
    ['SWITCHOVER', /SWITCHOVER takes one node name/],
    ['RELOAD now', /RELOAD takes no arguments/],
    ['RESET', /RESET takes STATS/],
    ['RESET ALL', /RESET takes STATS/],
    ["BAN 'pg2", /unterminated/],
    ['SHOW NODES /* open', /unterminated/],
  ])('%j is a syntax error', (text, message) => {
    const e = fails(text);
    expect(e.sqlstate).toBe('42601');
    expect(e.message).toMatch(message);
  });

  it('runs nothing when one of several commands is wrong', () => {
    expect(fails('PAUSE; SHOW NODS').message).toMatch(/SHOW takes one of/);
  });

  it(`takes at most ${MAX_COMMANDS} commands in one query`, () => {
    expect(ok(Array(MAX_COMMANDS).fill('SHOW VERSION').join(';'))).toHaveLength(MAX_COMMANDS);
    expect(fails(Array(MAX_COMMANDS + 1).fill('SHOW VERSION').join(';')).message).toMatch(/at most 16 commands/);
  });

  it('shortens a long unknown command in its message', () => {
    const e = fails(`FROB ${'x'.repeat(500)}`);
    expect(e.message.length).toBeLessThan(120);
  });
});
