// Unit tests for WAL positions as numbers (src/topology/lsn.ts): parseLsn/formatLsn round trips, ordering and invalid input.
import { describe, expect, it } from 'vitest';
import { formatLsn, parseLsn } from '../../src/topology/lsn.js';

describe('parseLsn', () => {
  it.each<[string, number]>([
    ['0/0', 0],
    ['0/1', 1],
    ['0/3000148', 0x3000148],
    ['1/0', 2 ** 32],
    ['16/B374D848', 0x16 * 2 ** 32 + 0xb374d848],
    ['FFFFF/FFFFFFFF', 2 ** 52 - 1],
  ])('%s → %d', (text, value) => {
    expect(parseLsn(text)).toBe(value);
  });

  it('accepts lower-case hex', () => {
    expect(parseLsn('16/b374d848')).toBe(parseLsn('16/B374D848'));
  });

  it('orders positions as PostgreSQL does (the high half counts first)', () => {
    const sorted = ['0/FFFFFFFF', '1/0', '0/10', '1/1', 'A/0', '9/FFFFFFFF'].sort((a, b) => parseLsn(a)! - parseLsn(b)!);
    expect(sorted).toEqual(['0/10', '0/FFFFFFFF', '1/0', '1/1', '9/FFFFFFFF', 'A/0']);
    expect(parseLsn('1/0')! - parseLsn('0/FFFFFFFF')!).toBe(1);
  });

  it.each<[string, string | null | undefined]>([
    ['null', null],
    ['undefined', undefined],
    ['empty', ''],
    ['no slash', '3000148'],
    ['nothing before the slash', '/5'],
    ['nothing after the slash', '5/'],
    ['not hex (high)', 'G/1'],
    ['not hex (low)', '1/zz'],
    ['words', 'not an lsn'],
  ])('invalid input (%s) → null', (_n, text) => {
    expect(parseLsn(text)).toBeNull();
  });
});

describe('formatLsn', () => {
  it.each(['0/0', '0/1', '0/3000148', '1/0', '16/B374D848', 'FFFFF/FFFFFFFF'])('round-trips %s', (text) => {
    expect(formatLsn(parseLsn(text)!)).toBe(text);
  });

  it('prints as PostgreSQL does: upper case, no leading zeros', () => {
    expect(formatLsn(parseLsn('16/b374d848')!)).toBe('16/B374D848');
    expect(formatLsn(parseLsn('00/0000000A')!)).toBe('0/A');
    expect(formatLsn(2 ** 32 - 1)).toBe('0/FFFFFFFF');
    expect(formatLsn(2 ** 32)).toBe('1/0');
  });

  it('a byte offset moves to the right half', () => {
    expect(formatLsn(parseLsn('16/B374D848')! + 0x100)).toBe('16/B374D948');
    expect(formatLsn(parseLsn('0/FFFFFFFF')! + 1)).toBe('1/0');
  });
});
