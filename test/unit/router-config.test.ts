// The routing section of pgsplit.yaml: defaults, conversions and error messages.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';

const MIN = 'auth: { method: trust }\nnodes: [{ name: pg1, host: db1 }]\n';

function errors(text: string): string[] {
  try {
    parseConfig(text, {}, 'test.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('routing config', () => {
  it('has defaults', () => {
    expect(parseConfig(MIN, {}).routing).toEqual({
      enabled: true,
      read_only_functions: [],
      write_functions: [],
      max_parse_length: 65536,
      parse_cache_size: 10000,
      load_balance: 'round-robin',
      primary_reads: 'fallback',
    });
  });

  it('converts and keeps values', () => {
    const c = parseConfig(
      `${MIN}routing:\n  enabled: true\n  read_only_functions: [report, app.lookup]\n  write_functions: [Audit.Stamp]\n  max_parse_length: 1MB\n  parse_cache_size: 0\n  load_balance: least-connections\n  primary_reads: include\n`,
      {},
    );
    expect(c.routing).toEqual({
      enabled: true,
      read_only_functions: ['report', 'app.lookup'],
      write_functions: ['Audit.Stamp'],
      max_parse_length: 1024 * 1024,
      parse_cache_size: 0,
      load_balance: 'least-connections',
      primary_reads: 'include',
    });
  });

  it('names each bad key', () => {
    expect(
      errors(`${MIN}routing:\n  read_only_functions: ["a b"]\n  write_functions: nope\n  max_parse_length: 64\n  parse_cache_size: -1\n  load_balance: fastest\n  primary_reads: sometimes\n  extra: 1\n`),
    ).toEqual([
      'routing.read_only_functions[0]: expected a function name like "f" or "schema.f", got "a b"',
      'routing.write_functions: expected a list of function names, got "nope"',
      'routing.max_parse_length: expected a size with a unit like "64kB" or "1MB" (1B..1GB), got 64',
      'routing.parse_cache_size: expected an integer 0..10000000, got -1',
      'routing.load_balance: expected one of round-robin, random, least-connections, got "fastest"',
      'routing.primary_reads: expected one of fallback, include, never, got "sometimes"',
      'routing.extra: unknown key (allowed: enabled, read_only_functions, write_functions, max_parse_length, parse_cache_size, load_balance, primary_reads)',
    ]);
  });

  it('the example config documents the routing section with its defaults', () => {
    const text = readFileSync(new URL('../../config/pgsplit.example.yaml', import.meta.url), 'utf8');
    const c = parseConfig(text, { APP_PASSWORD: 'x' });
    expect(c.routing).toEqual(parseConfig(MIN, {}).routing);
  });
});
