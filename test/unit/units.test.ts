// Unit tests for duration and size parsing used by the config file.
import { describe, it, expect } from 'vitest';
import { parseDuration, parseSize } from '../../src/config/units.js';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['2s', 2000],
    ['1.5s', 1500],
    ['1m', 60_000],
    ['2min', 120_000],
    ['1h', 3_600_000],
    [' 10 s ', 10_000],
    ['0s', 0],
  ])('%j -> %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(['', '1000', '1', 's', '-1s', '1 sec', '250us', '1d', '1S', '1.s', 'abc', '1s2'])('rejects %j', (input) => {
    expect(() => parseDuration(input)).toThrow(/invalid duration .*expected a number with a unit/);
  });

  it('names the bad input', () => {
    expect(() => parseDuration('10 parsecs')).toThrow('invalid duration "10 parsecs"');
  });

  it('rejects non-strings at runtime', () => {
    expect(() => parseDuration(1000 as unknown as string)).toThrow('invalid duration 1000');
  });
});

describe('parseSize', () => {
  it.each([
    ['100B', 100],
    ['512kB', 512 * 1024],
    ['8KB', 8 * 1024],
    ['16MB', 16 * 1024 ** 2],
    ['1GB', 1024 ** 3],
    ['1TB', 1024 ** 4],
    ['1.5kB', 1536],
    [' 2 MB ', 2 * 1024 ** 2],
  ])('%j -> %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it.each(['', '16', 'MB', '-1MB', '16mb', '16Mb', '1 PB', 'lots'])('rejects %j', (input) => {
    expect(() => parseSize(input)).toThrow(/invalid size .*expected a number with a unit/);
  });

  it('rejects sizes beyond exact integer range', () => {
    expect(() => parseSize('99999999TB')).toThrow('too large');
  });
});
