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
      consistency: 'read-your-writes',
      max_replica_lag: { bytes: 16777216, time: 2000 },
      unban_after: 2000,
      read_tags: [],
    });
  });

  it('turns routing on when the section is left out or empty', () => {
    expect(parseConfig(MIN, {}).routing.enabled).toBe(true);
    expect(parseConfig(`${MIN}routing:\n`, {}).routing.enabled).toBe(true);
    expect(parseConfig(`${MIN}routing: { enabled: false }\n`, {}).routing.enabled).toBe(false);
  });

  it('converts and keeps values', () => {
    const c = parseConfig(
      `${MIN}routing:\n  enabled: true\n  read_only_functions: [report, app.lookup]\n  write_functions: [Audit.Stamp]\n  max_parse_length: 1MB\n  parse_cache_size: 0\n  load_balance: least-connections\n  primary_reads: include\n  consistency: eventual\n  max_replica_lag: { bytes: 1GB, time: 1.5s }\n  unban_after: 0s\n  read_tags: [analytics, eu-west.1]\n`,
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
      consistency: 'eventual',
      max_replica_lag: { bytes: 1024 ** 3, time: 1500 },
      unban_after: 0,
      read_tags: ['analytics', 'eu-west.1'],
    });
  });

  describe('max_replica_lag', () => {
    const lag = (body: string) => parseConfig(`${MIN}routing:\n  max_replica_lag: ${body}\n`, {}).routing.max_replica_lag;

    it('a bound left out of the mapping is no bound', () => {
      expect(lag('{ bytes: 1MB }')).toEqual({ bytes: 1024 * 1024, time: null });
      expect(lag('{ time: 500ms }')).toEqual({ bytes: null, time: 500 });
      expect(lag('{}')).toEqual({ bytes: null, time: null });
    });

    it('an explicit null is no bound', () => {
      expect(lag('{ bytes: null, time: null }')).toEqual({ bytes: null, time: null });
      expect(lag('{ bytes: ~, time: 3s }')).toEqual({ bytes: null, time: 3000 });
    });

    it('accepts zero bounds (any lag bans)', () => {
      expect(lag('{ bytes: 0B, time: 0s }')).toEqual({ bytes: 0, time: 0 });
    });

    it('a null section keeps the defaults', () => {
      expect(lag('null')).toEqual({ bytes: 16777216, time: 2000 });
    });

    it('names the bad bound', () => {
      expect(errors(`${MIN}routing:\n  max_replica_lag: { bytes: lots, time: 2s }\n`)).toEqual([
        'routing.max_replica_lag.bytes: expected a size with a unit like "64kB" or "1MB" (0B..1PB), got "lots"',
      ]);
      expect(errors(`${MIN}routing:\n  max_replica_lag: { bytes: 10, time: 2, extra: 1 }\n`)).toEqual([
        'routing.max_replica_lag.bytes: expected a size with a unit like "64kB" or "1MB" (0B..1PB), got 10',
        'routing.max_replica_lag.time: expected a duration with a unit like "500ms", "2s", "1m" or "1h" (>= 0, at most 596h), got 2',
        'routing.max_replica_lag.extra: unknown key (allowed: bytes, time)',
      ]);
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
      'routing.extra: unknown key (allowed: enabled, read_only_functions, write_functions, max_parse_length, parse_cache_size, load_balance, primary_reads, consistency, max_replica_lag, unban_after, read_tags)',
    ]);
  });

  it('names bad consistency, unban_after and read_tags', () => {
    expect(errors(`${MIN}routing:\n  consistency: strong\n  unban_after: 5\n  read_tags: [a, "b c"]\n`)).toEqual([
      'routing.consistency: expected one of read-your-writes, eventual, got "strong"',
      'routing.unban_after: expected a duration with a unit like "500ms", "2s", "1m" or "1h" (>= 0, at most 596h), got 5',
      'routing.read_tags[1]: expected a tag made of letters, digits, "_", "." or "-", got "b c"',
    ]);
    expect(errors(`${MIN}routing:\n  read_tags: analytics\n`)).toEqual(['routing.read_tags: expected a list of tags, got "analytics"']);
  });

  it('the example config documents the routing section with its defaults', () => {
    const text = readFileSync(new URL('../../config/pgsplit.example.yaml', import.meta.url), 'utf8');
    const c = parseConfig(text, { APP_PASSWORD: 'x' });
    expect(c.routing).toEqual(parseConfig(MIN, {}).routing);
  });
});
