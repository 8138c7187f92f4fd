// Unit tests for startup-packet decoding (SSL/GSSENC/cancel/startup/unsupported) and the startup/cancel encoders.
import { describe, it, expect } from 'vitest';
import { decodeStartupPacket, encodeCancelRequest, encodeStartupMessage, MAX_STARTUP_PACKET } from '../../src/protocol/startup.js';

/** A startup-phase packet built by hand: int32 length (self-inclusive), then the given int32 words and bytes. */
function packet(words: number[], tail: Buffer = Buffer.alloc(0)): Buffer {
  const body = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => body.writeInt32BE(w | 0, i * 4));
  const len = Buffer.alloc(4);
  len.writeInt32BE(4 + body.length + tail.length);
  return Buffer.concat([len, body, tail]);
}

const params = (pairs: [string, string][]): Buffer =>
  Buffer.concat([...pairs.flatMap(([k, v]) => [Buffer.from(`${k}\0${v}\0`, 'utf8')]), Buffer.from([0])]);

const V3 = (3 << 16) | 0; // 196608

describe('decodeStartupPacket: request codes', () => {
  it.each([
    ['SSLRequest', 80877103, { kind: 'ssl' }],
    ['GSSENCRequest', 80877104, { kind: 'gssenc' }],
  ])('%s', (_name, code, want) => {
    expect(decodeStartupPacket(packet([code]))).toEqual(want);
  });

  it.each([
    [1234, 0x12345678],
    [1, -1],
    [0x7fffffff, -0x80000000],
    [42, 0],
  ])('CancelRequest pid=%i secret=%i', (pid, secret) => {
    expect(decodeStartupPacket(packet([80877102, pid, secret]))).toEqual({ kind: 'cancel', pid, secret });
  });

  it('a truncated CancelRequest throws RangeError', () => {
    expect(() => decodeStartupPacket(packet([80877102, 1234]))).toThrow(RangeError);
  });

  it.each([
    [2, 0],
    [1, 0],
    [4, 0],
    [1234, 5681], // the neighbourhood of the cancel/SSL/GSSENC codes (1234.5678 to 1234.5680)
    [0xffff, 0xffff],
  ])('protocol %i.%i is reported unsupported with its major/minor', (major, minor) => {
    const code = ((major << 16) | minor) | 0;
    expect(decodeStartupPacket(packet([code]))).toEqual({ kind: 'unsupported', major, minor });
  });

  it.each([1, 2])('protocol 3.%i is accepted as a startup with its minor version (negotiated down to 3.0)', (minor) => {
    const got = decodeStartupPacket(packet([(3 << 16) | minor], Buffer.from('user\0app\0\0')));
    expect(got).toEqual({ kind: 'startup', params: new Map([['user', 'app']]), minor });
  });

  it('protocol 2.0 (a 296-byte v2 startup packet) is unsupported {2, 0}', () => {
    // v2 StartupPacket: length, version, then fixed-size database/user/options/unused/tty fields.
    const v2 = packet([2 << 16], Buffer.alloc(64 + 32 + 64 + 64 + 64));
    expect(v2.length).toBe(296);
    expect(decodeStartupPacket(v2)).toEqual({ kind: 'unsupported', major: 2, minor: 0 });
  });

  it('a packet too short to hold a request code throws RangeError', () => {
    expect(() => decodeStartupPacket(Buffer.from([0, 0, 0, 4]))).toThrow(RangeError);
    expect(() => decodeStartupPacket(Buffer.alloc(0))).toThrow(RangeError);
  });

  it('MAX_STARTUP_PACKET matches PostgreSQL (10000)', () => {
    expect(MAX_STARTUP_PACKET).toBe(10000);
  });
});

describe('decodeStartupPacket: StartupMessage', () => {
  const cases: [string, [string, string][]][] = [
    ['user only', [['user', 'app']]],
    ['user and database', [['user', 'app'], ['database', 'appdb']]],
    [
      'options with spaces and escapes',
      [
        ['user', 'app'],
        ['options', '-c search_path=a,b -c statement_timeout=5s -c x=with\\ space'],
      ],
    ],
    ['application_name', [['user', 'app'], ['application_name', 'psql'], ['client_encoding', 'UTF8']]],
    ['unicode names and values', [['user', 'jürgen'], ['database', 'データベース'], ['application_name', '🐘 app ✓']]],
    ['empty value', [['user', 'app'], ['application_name', '']]],
    ['replication', [['user', 'postgres'], ['replication', 'database'], ['database', 'postgres']]],
    ['no parameters at all', []],
  ];

  it.each(cases)('%s', (_name, pairs) => {
    const got = decodeStartupPacket(packet([V3], params(pairs)));
    expect(got.kind).toBe('startup');
    if (got.kind !== 'startup') return;
    expect([...got.params]).toEqual(pairs);
  });

  it('a later duplicate parameter wins (as in PostgreSQL)', () => {
    const got = decodeStartupPacket(packet([V3], params([['user', 'a'], ['user', 'b']])));
    expect(got.kind === 'startup' && got.params.get('user')).toBe('b');
  });

  it('tolerates a missing final terminator', () => {
    const tail = Buffer.from('user\0app\0', 'utf8');
    const got = decodeStartupPacket(packet([V3], tail));
    expect(got.kind === 'startup' && [...got.params]).toEqual([['user', 'app']]);
  });

  it('an unterminated parameter throws RangeError', () => {
    expect(() => decodeStartupPacket(packet([V3], Buffer.from('user\0app', 'utf8')))).toThrow(RangeError);
    expect(() => decodeStartupPacket(packet([V3], Buffer.from('user', 'utf8')))).toThrow(RangeError);
  });
});

describe('encodeStartupMessage', () => {
  it('produces the exact wire bytes', () => {
    const b = encodeStartupMessage([['user', 'u'], ['database', 'd']]);
    const want = packet([V3], Buffer.from('user\0u\0database\0d\0\0', 'utf8'));
    expect(b.equals(want)).toBe(true);
    expect(b.readInt32BE(0)).toBe(b.length);
    expect(b.readInt32BE(4)).toBe(196608);
    expect(b[b.length - 1]).toBe(0);
  });

  it.each([
    [[['user', 'app'], ['database', 'appdb']]],
    [[['user', 'jürgen'], ['database', 'データベース'], ['options', '-c a=b -c c=d'], ['application_name', '🐘 pgsplit']]],
    [[]],
    [[['user', 'x'.repeat(2000)], ['database', 'y'.repeat(2000)]]], // past the writer's initial 256-byte buffer
  ] as [[string, string][]][])('round-trips through decodeStartupPacket (%#)', (pairs) => {
    const b = encodeStartupMessage(pairs);
    expect(b.readInt32BE(0)).toBe(b.length);
    const got = decodeStartupPacket(b);
    expect(got.kind).toBe('startup');
    if (got.kind === 'startup') expect([...got.params]).toEqual(pairs);
  });

  it('accepts a Map', () => {
    const m = new Map([['user', 'app'], ['database', 'appdb']]);
    const got = decodeStartupPacket(encodeStartupMessage(m));
    expect(got).toEqual({ kind: 'startup', params: m, minor: 0 });
  });
});

describe('encodeCancelRequest', () => {
  it.each([
    [1234, 5678],
    [0x7fffffff, -1],
    [1, -0x80000000],
  ])('pid=%i secret=%i: 16 bytes, code 80877102, round-trips', (pid, secret) => {
    const b = encodeCancelRequest(pid, secret);
    expect(b.length).toBe(16);
    expect(b.readInt32BE(0)).toBe(16);
    expect(b.readInt32BE(4)).toBe(80877102);
    expect(b.readInt32BE(8)).toBe(pid);
    expect(b.readInt32BE(12)).toBe(secret);
    expect(decodeStartupPacket(b)).toEqual({ kind: 'cancel', pid, secret });
  });

  it('exact bytes', () => {
    expect(encodeCancelRequest(1, 2).toString('hex')).toBe('00000010' + '04d2162e' + '00000001' + '00000002');
  });
});
