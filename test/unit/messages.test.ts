// Unit tests for the backend message encoders/decoders and the MessageWriter/BodyReader primitives.
import { describe, it, expect } from 'vitest';
import { decodeParse } from '../../src/protocol/frontend-messages.js';
import {
  authenticationMD5Password,
  authenticationOk,
  authenticationSASL,
  authenticationSASLContinue,
  authenticationSASLFinal,
  backendKeyData,
  decodeErrorFields,
  decodeParameterStatus,
  errorResponse,
  parameterStatus,
  readyForQuery,
} from '../../src/protocol/backend-messages.js';
import { BodyReader, MessageWriter } from '../../src/protocol/writer.js';
import { errors, ProxyError } from '../../src/errors.js';

/** Split a typed message into its parts, checking the length word covers exactly the rest. */
function parse(msg: Buffer): { type: string; length: number; body: Buffer } {
  expect(msg.length).toBeGreaterThanOrEqual(5);
  const length = msg.readInt32BE(1);
  expect(length).toBe(msg.length - 1);
  return { type: String.fromCharCode(msg[0]), length, body: msg.subarray(5) };
}

const hex = (b: Buffer): string => b.toString('hex');

describe('errorResponse / decodeErrorFields', () => {
  it('encodes S, V, C, M, D, H in that order with exact bytes', () => {
    const msg = errorResponse({ severity: 'FATAL', sqlstate: '28P01', message: 'bad', detail: 'why', hint: 'try' });
    const { type, body } = parse(msg);
    expect(type).toBe('E');
    expect(body.toString('latin1')).toBe('SFATAL\0VFATAL\0C28P01\0Mbad\0Dwhy\0Htry\0\0');
  });

  it.each([
    ['all fields', { severity: 'ERROR', sqlstate: '57P03', message: 'no primary', detail: 'all down', hint: 'retry' }],
    ['no detail/hint', { severity: 'FATAL', sqlstate: '08006', message: 'lost' }],
    ['hint only', { severity: 'ERROR', sqlstate: '0A000', message: 'nope', hint: 'use 3.0' }],
    ['unicode', { severity: 'FATAL', sqlstate: '28P01', message: 'password authentication failed for user "jürgen" ✗', detail: 'データ' }],
  ] as const)('round-trips (%s)', (_n, err) => {
    const { body } = parse(errorResponse(err));
    const want: Record<string, string> = { S: err.severity, V: err.severity, C: err.sqlstate, M: err.message };
    if ('detail' in err && err.detail) want.D = err.detail;
    if ('hint' in err && err.hint) want.H = err.hint;
    expect(decodeErrorFields(body)).toEqual(want);
  });

  it('an empty detail/hint is left out', () => {
    const { body } = parse(errorResponse({ severity: 'ERROR', sqlstate: 'XX000', message: 'm', detail: '', hint: '' }));
    expect(Object.keys(decodeErrorFields(body))).toEqual(['S', 'V', 'C', 'M']);
  });

  it('encodes a ProxyError from the errors table', () => {
    const e = errors.noPrimary('pg1 is down');
    expect(e).toBeInstanceOf(ProxyError);
    const f = decodeErrorFields(parse(errorResponse(e)).body);
    expect(f).toEqual({ S: 'FATAL', V: 'FATAL', C: '57P03', M: e.message, D: 'pg1 is down', H: e.hint });
  });

  it('can encode a NoticeResponse instead', () => {
    const { type } = parse(errorResponse({ severity: 'ERROR', sqlstate: '01000', message: 'w' }, 0x4e));
    expect(type).toBe('N');
  });

  it('decodes a PostgreSQL ErrorResponse with fields pgsplit does not send', () => {
    const body = Buffer.from('SERROR\0VERROR\0C42P01\0Mrelation "x" does not exist\0P15\0Fparse_relation.c\0L1392\0Rparser\0\0', 'utf8');
    expect(decodeErrorFields(body)).toEqual({
      S: 'ERROR',
      V: 'ERROR',
      C: '42P01',
      M: 'relation "x" does not exist',
      P: '15',
      F: 'parse_relation.c',
      L: '1392',
      R: 'parser',
    });
  });

  it('stops at the terminator and tolerates its absence', () => {
    expect(decodeErrorFields(Buffer.from('Mhi\0\0Mignored\0', 'latin1'))).toEqual({ M: 'hi' });
    expect(decodeErrorFields(Buffer.from('Mhi\0', 'latin1'))).toEqual({ M: 'hi' });
    expect(decodeErrorFields(Buffer.alloc(0))).toEqual({});
  });

  it('a truncated field ends the list with what arrived (a server message cut by the scanner, or malformed, never throws)', () => {
    expect(decodeErrorFields(Buffer.from('SERROR\0C22P02\0Mno terminator', 'latin1'))).toEqual({ S: 'ERROR', C: '22P02', M: 'no terminator' });
    expect(decodeErrorFields(Buffer.from('S', 'latin1'))).toEqual({ S: '' });
  });
});

describe('ReadyForQuery', () => {
  it.each([
    ['I', '5a0000000549'],
    ['T', '5a0000000554'],
    ['E', '5a0000000545'],
  ] as const)('status %s → %s', (status, want) => {
    const msg = readyForQuery(status);
    expect(hex(msg)).toBe(want);
    expect(parse(msg)).toMatchObject({ type: 'Z', length: 5 });
  });
});

describe('BackendKeyData', () => {
  it.each([
    [1234, 5678],
    [0x7fffffff, -1],
    [1, -0x80000000],
  ])('pid=%i secret=%i', (pid, secret) => {
    const msg = backendKeyData(pid, secret);
    const { type, length, body } = parse(msg);
    expect(type).toBe('K');
    expect(length).toBe(12);
    expect(body.readInt32BE(0)).toBe(pid);
    expect(body.readInt32BE(4)).toBe(secret);
  });

  it('exact bytes', () => {
    expect(hex(backendKeyData(0x01020304, 0x0a0b0c0d))).toBe('4b0000000c010203040a0b0c0d');
  });
});

describe('ParameterStatus', () => {
  it('exact bytes', () => {
    expect(parameterStatus('TimeZone', 'UTC').toString('latin1')).toBe('S\0\0\0\x11TimeZone\0UTC\0');
  });

  it.each([
    ['server_version', '15.18 (Debian 15.18-0+deb12u1)'],
    ['application_name', ''],
    ['application_name', 'ünï ✓ 🐘'],
    ['DateStyle', 'ISO, MDY'],
    ['search_path', '"$user", public'],
    ['long', 'v'.repeat(5000)], // past the writer's initial 256-byte buffer
  ])('%s = %j round-trips through decodeParameterStatus', (name, value) => {
    const { type, length, body } = parse(parameterStatus(name, value));
    expect(type).toBe('S');
    expect(length).toBe(4 + Buffer.byteLength(name) + 1 + Buffer.byteLength(value) + 1);
    expect(decodeParameterStatus(body)).toEqual([name, value]);
  });

  it('a truncated body throws RangeError', () => {
    expect(() => decodeParameterStatus(Buffer.from('TimeZone\0UTC', 'latin1'))).toThrow(RangeError);
    expect(() => decodeParameterStatus(Buffer.from('TimeZone', 'latin1'))).toThrow(RangeError);
  });
});

describe('Authentication requests', () => {
  it('AuthenticationOk', () => {
    expect(hex(authenticationOk())).toBe('520000000800000000');
  });

  it('AuthenticationMD5Password carries the 4-byte salt', () => {
    const msg = authenticationMD5Password(Buffer.from([0xde, 0xad, 0xbe, 0xef]));
    expect(hex(msg)).toBe('52' + '0000000c' + '00000005' + 'deadbeef');
  });

  it('AuthenticationSASL lists the mechanisms, NUL-terminated, then an empty terminator', () => {
    const msg = authenticationSASL(['SCRAM-SHA-256']);
    const { type, length, body } = parse(msg);
    expect(type).toBe('R');
    expect(length).toBe(4 + 4 + 'SCRAM-SHA-256'.length + 1 + 1);
    expect(body.readInt32BE(0)).toBe(10);
    expect(body.subarray(4).toString('latin1')).toBe('SCRAM-SHA-256\0\0');
  });

  it('AuthenticationSASL with two mechanisms', () => {
    const body = parse(authenticationSASL(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'])).body;
    expect(body.subarray(4).toString('latin1')).toBe('SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0');
  });

  it.each([
    ['SASLContinue', authenticationSASLContinue, 11, 'r=abc,s=c2FsdA==,i=4096'],
    ['SASLFinal', authenticationSASLFinal, 12, 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='],
  ] as const)('Authentication%s carries the data without a terminator', (_n, fn, code, data) => {
    const { type, length, body } = parse(fn(data));
    expect(type).toBe('R');
    expect(length).toBe(4 + 4 + data.length);
    expect(body.readInt32BE(0)).toBe(code);
    expect(body.subarray(4).toString('latin1')).toBe(data);
  });
});

describe('MessageWriter', () => {
  it('message(): type, self-inclusive length without the type byte, fields', () => {
    const b = MessageWriter.message(0x51, (w) => w.cstring('SELECT 1'));
    expect(b.toString('latin1')).toBe('Q\0\0\0\x0dSELECT 1\0');
  });

  it('packet(): length includes itself', () => {
    const b = MessageWriter.packet((w) => w.int32(80877103));
    expect(hex(b)).toBe('0000000804d2162f');
  });

  it('an empty message is 5 bytes with length 4', () => {
    expect(hex(MessageWriter.message(0x31, () => {}))).toBe('3100000004');
  });

  it('grows past its initial size and keeps earlier bytes', () => {
    const big = Buffer.alloc(10_000);
    for (let i = 0; i < big.length; i++) big[i] = i & 0xff;
    const b = MessageWriter.message(0x64, (w) => {
      w.int8(7);
      w.bytes(big);
      w.int32(-2);
      w.cstring('tail ✓');
    });
    const { type, length, body } = parse(b);
    expect(type).toBe('d');
    expect(length).toBe(4 + 1 + big.length + 4 + Buffer.byteLength('tail ✓') + 1);
    expect(body[0]).toBe(7);
    expect(body.subarray(1, 1 + big.length).equals(big)).toBe(true);
    expect(body.readInt32BE(1 + big.length)).toBe(-2);
    expect(body.subarray(5 + big.length).toString('utf8')).toBe('tail ✓\0');
  });

  it('returns a buffer that does not share memory with later messages', () => {
    const a = MessageWriter.message(0x5a, (w) => w.int8(0x49));
    const before = hex(a);
    MessageWriter.message(0x5a, (w) => w.int8(0x45));
    expect(hex(a)).toBe(before);
  });
});

describe('BodyReader', () => {
  it('reads int8, int32, cstring, bytes, rest in sequence', () => {
    const buf = Buffer.concat([Buffer.from([9]), Buffer.from('ffffff85', 'hex'), Buffer.from('héllo\0', 'utf8'), Buffer.from([1, 2, 3, 4, 5])]);
    const r = new BodyReader(buf);
    expect(r.done).toBe(false);
    expect(r.int8()).toBe(9);
    expect(r.int32()).toBe(-123);
    expect(r.cstring()).toBe('héllo');
    expect([...r.bytes(2)]).toEqual([1, 2]);
    expect([...r.rest()]).toEqual([3, 4, 5]);
    expect(r.done).toBe(true);
    expect(r.rest().length).toBe(0);
  });

  it.each([
    ['int32 on 3 bytes', Buffer.from([0, 0, 1]), (r: BodyReader) => r.int32()],
    ['int32 on empty', Buffer.alloc(0), (r: BodyReader) => r.int32()],
    ['int8 on empty', Buffer.alloc(0), (r: BodyReader) => r.int8()],
    ['cstring without NUL', Buffer.from('abc'), (r: BodyReader) => r.cstring()],
    ['cstring on empty', Buffer.alloc(0), (r: BodyReader) => r.cstring()],
    ['bytes past the end', Buffer.from([1, 2, 3]), (r: BodyReader) => r.bytes(4)],
    ['negative bytes', Buffer.from([1, 2, 3]), (r: BodyReader) => r.bytes(-1)],
    ['second int32 after the first', Buffer.from([0, 0, 0, 1, 0, 0]), (r: BodyReader) => (r.int32(), r.int32())],
  ])('%s throws RangeError', (_n, buf, read) => {
    expect(() => read(new BodyReader(buf))).toThrow(RangeError);
  });

  it('a failed read does not advance', () => {
    const r = new BodyReader(Buffer.from([0, 0, 1]));
    expect(() => r.int32()).toThrow(RangeError);
    expect(r.pos).toBe(0);
    expect(r.int8()).toBe(0);
  });

  it('an empty cstring is valid', () => {
    const r = new BodyReader(Buffer.from([0, 0x41, 0]));
    expect(r.cstring()).toBe('');
    expect(r.cstring()).toBe('A');
    expect(r.done).toBe(true);
  });
});

describe('decodeParse', () => {
  const body = (...parts: (string | Buffer)[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
  it('reads the statement name and the query text up to their terminators', () => {
    const f = decodeParse(body('s1\0', 'SELECT $1::int\0', Buffer.from([0, 1, 0, 0, 0, 23])));
    expect(f).toEqual({ name: 's1', nameEnd: 2, query: 'SELECT $1::int' });
  });
  it('reads the unnamed statement and multi-byte text', () => {
    expect(decodeParse(body('\0', "SELECT 'ünïcödé'\0", Buffer.from([0, 0])))).toEqual({ name: '', nameEnd: 0, query: "SELECT 'ünïcödé'" });
  });
  it('refuses a body without its terminators (RangeError: a protocol violation for the session)', () => {
    expect(() => decodeParse(body('s1'))).toThrow(RangeError);
    expect(() => decodeParse(body('s1\0SELECT 1'))).toThrow(/query terminator/);
  });
});
