// Unit tests for the streaming frame scanner: boundaries, NOTICE/COLLECT delivery and errors under every way of chunking a stream.
import { describe, it, expect } from 'vitest';
import {
  COLLECT,
  FrameError,
  FrameScanner,
  NOTICE,
  SKIP,
  collectAll,
  frameModes,
  type FrameSink,
} from '../../src/protocol/frame-scanner.js';

// ---------------------------------------------------------------------------------------------
// Building a realistic backend stream by hand (independently of the project's encoders).
// ---------------------------------------------------------------------------------------------

function frame(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
const i16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(v);
  return b;
};
const i32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
};

function rowDescription(names: string[]): Buffer {
  const parts: Buffer[] = [i16(names.length)];
  names.forEach((n, idx) => {
    // name, table oid, column attnum, type oid, type size, type modifier, format code
    parts.push(cstr(n), i32(16384), i16(idx + 1), i32(25), i16(-1), i32(-1), i16(0));
  });
  return Buffer.concat(parts);
}

function dataRow(cols: (Buffer | null)[]): Buffer {
  const parts: Buffer[] = [i16(cols.length)];
  for (const c of cols) {
    if (c === null) parts.push(i32(-1));
    else parts.push(i32(c.length), c);
  }
  return Buffer.concat(parts);
}

function errorFields(fields: [string, string][]): Buffer {
  return Buffer.concat([...fields.flatMap(([k, v]) => [Buffer.from(k), cstr(v)]), Buffer.from([0])]);
}

/** Deterministic PRNG (mulberry32) so failures are reproducible. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pseudoRandomBytes(n: number, seed: number): Buffer {
  const rnd = mulberry32(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

interface Msg {
  type: string;
  body: Buffer;
}

function buildStream(bigRowSize: number): Msg[] {
  return [
    { type: '1', body: Buffer.alloc(0) }, // ParseComplete: zero-length body
    { type: '2', body: Buffer.alloc(0) }, // BindComplete: zero-length body
    { type: 'T', body: rowDescription(['id', 'payload']) },
    { type: 'D', body: dataRow([Buffer.from('1'), Buffer.from('hello')]) },
    { type: 'D', body: dataRow([Buffer.from('2'), null]) },
    { type: 'D', body: dataRow([Buffer.from('3'), pseudoRandomBytes(bigRowSize, 7)]) },
    { type: 'D', body: dataRow([Buffer.from('4'), Buffer.from('ünïcödé ✓', 'utf8')]) },
    { type: 'N', body: errorFields([['S', 'NOTICE'], ['V', 'NOTICE'], ['C', '00000'], ['M', 'just saying']]) },
    { type: 'C', body: cstr('SELECT 4') },
    { type: 'I', body: Buffer.alloc(0) }, // EmptyQueryResponse: zero-length body
    {
      type: 'E',
      body: errorFields([['S', 'ERROR'], ['V', 'ERROR'], ['C', '42P01'], ['M', 'relation "nope" does not exist'], ['P', '15']]),
    },
    { type: 'S', body: Buffer.concat([cstr('TimeZone'), cstr('UTC')]) },
    { type: 'Z', body: Buffer.from('I') },
  ];
}

// ---------------------------------------------------------------------------------------------
// Expected vs observed events.
// ---------------------------------------------------------------------------------------------

type Ev = { t: 'frame'; type: number; body: Buffer } | { t: 'header'; type: number; len: number };

class RecordingSink implements FrameSink {
  events: Ev[] = [];
  onFrameHeader(type: number, bodyLength: number): void {
    this.events.push({ t: 'header', type, len: bodyLength });
  }
  onFrame(type: number, body: Buffer): void {
    // The view is only valid during the call: copy it.
    this.events.push({ t: 'frame', type, body: Buffer.from(body) });
  }
}

interface Layout {
  msgs: Msg[];
  bytes: Buffer;
  /** start offset of each frame, and end (exclusive). */
  starts: number[];
  ends: number[];
}

function layout(msgs: Msg[]): Layout {
  const frames = msgs.map((m) => frame(m.type, m.body));
  const starts: number[] = [];
  const ends: number[] = [];
  let off = 0;
  for (const f of frames) {
    starts.push(off);
    off += f.length;
    ends.push(off);
  }
  return { msgs, bytes: Buffer.concat(frames), starts, ends };
}

/** The events a sink must have seen once the first `upTo` bytes of the stream were pushed. */
function expectedEvents(l: Layout, modes: Uint8Array, upTo = l.bytes.length): Ev[] {
  const out: Ev[] = [];
  l.msgs.forEach((m, k) => {
    const type = m.type.charCodeAt(0);
    const mode = modes[type];
    if (mode === NOTICE && l.starts[k] + 5 <= upTo) out.push({ t: 'header', type, len: m.body.length });
    if (mode === COLLECT && l.ends[k] <= upTo) out.push({ t: 'frame', type, body: m.body });
  });
  return out;
}

function completeFrames(l: Layout, upTo: number): number {
  return l.ends.filter((e) => e <= upTo).length;
}

function isBoundary(l: Layout, pos: number): boolean {
  return pos === 0 || l.ends.includes(pos);
}

function describeEv(e: Ev | undefined): string {
  if (!e) return '(none)';
  const c = String.fromCharCode(e.type);
  return e.t === 'header' ? `header ${c} len=${e.len}` : `frame ${c} body=${e.body.length}B`;
}

/** First difference between two event sequences, or null. Cheap enough to run 100k times. */
function diffEvents(got: Ev[], want: Ev[]): string | null {
  const n = Math.max(got.length, want.length);
  for (let i = 0; i < n; i++) {
    const g = got[i];
    const w = want[i];
    const same =
      g !== undefined &&
      w !== undefined &&
      g.t === w.t &&
      g.type === w.type &&
      (g.t === 'header' ? g.len === (w as Extract<Ev, { t: 'header' }>).len : g.body.equals((w as Extract<Ev, { t: 'frame' }>).body));
    if (!same) return `event #${i}: got ${describeEv(g)}, want ${describeEv(w)}`;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Mode tables under test.
// ---------------------------------------------------------------------------------------------

const ALL_TYPES = [...new Set(buildStream(1).map((m) => m.type))];

const MODE_TABLES: [string, Uint8Array][] = [
  // What a session watches on the server side, plus a few headers.
  ['mixed (Z/E/C/1 collect, T/D/I notice, rest skip)', frameModes({ Z: COLLECT, E: COLLECT, C: COLLECT, '1': COLLECT, T: NOTICE, D: NOTICE, I: NOTICE })],
  ['server-session (Z/E collect)', frameModes({ Z: COLLECT, E: COLLECT })],
  ['collectAll()', collectAll()],
  ['notice every type', frameModes(Object.fromEntries(ALL_TYPES.map((t) => [t, NOTICE])))],
  ['skip everything', new Uint8Array(256)],
];

const BIG = 100 * 1024;
const bigStream = layout(buildStream(BIG));
// A smaller stream for the per-byte runs of tables that collect the big row (copying 100 kB on each of
// 100k split positions would dominate the run time without testing anything new).
const smallStream = layout(buildStream(3000));

function streamFor(modes: Uint8Array): Layout {
  return modes['D'.charCodeAt(0)] === COLLECT ? smallStream : bigStream;
}

function run(modes: Uint8Array, chunks: Buffer[], maxCollect?: number): { sink: RecordingSink; scanner: FrameScanner } {
  const sink = new RecordingSink();
  const scanner = new FrameScanner(modes, sink, maxCollect);
  for (const c of chunks) scanner.push(c);
  return { sink, scanner };
}

describe('frameModes / collectAll', () => {
  it('maps type characters to modes in a 256-entry table, everything else SKIP', () => {
    const m = frameModes({ Z: COLLECT, E: COLLECT, Q: NOTICE });
    expect(m).toBeInstanceOf(Uint8Array);
    expect(m.length).toBe(256);
    expect(m[0x5a]).toBe(COLLECT);
    expect(m[0x45]).toBe(COLLECT);
    expect(m[0x51]).toBe(NOTICE);
    const others = [...m.entries()].filter(([i]) => i !== 0x5a && i !== 0x45 && i !== 0x51);
    expect(others.every(([, v]) => v === SKIP)).toBe(true);
  });

  it('collectAll marks every byte value COLLECT', () => {
    const m = collectAll();
    expect(m.length).toBe(256);
    expect(m.every((v) => v === COLLECT)).toBe(true);
  });

  it('SKIP, NOTICE and COLLECT are distinct and SKIP is the zero default', () => {
    expect(SKIP).toBe(0);
    expect(new Set([SKIP, NOTICE, COLLECT]).size).toBe(3);
  });
});

describe.each(MODE_TABLES)('FrameScanner with %s', (_name, modes) => {
  // The big stream everywhere except the per-split-position run of tables that collect the big row.
  const l = bigStream;
  const want = expectedEvents(l, modes);

  it('the fixture contains zero-length bodies and a 100 kB row', () => {
    expect(l.msgs.filter((m) => m.body.length === 0)).toHaveLength(3);
    expect(l.msgs.some((m) => m.body.length > BIG)).toBe(true);
  });

  it('(a) whole stream in one chunk', () => {
    const { sink, scanner } = run(modes, [l.bytes]);
    expect(diffEvents(sink.events, want)).toBeNull();
    expect(scanner.frames).toBe(l.msgs.length);
    expect(scanner.atBoundary).toBe(true);
  });

  it('(b) split into two chunks at every byte position', () => {
    const failures: string[] = [];
    const l = streamFor(modes);
    const want = expectedEvents(l, modes);
    const total = l.bytes.length;
    for (let p = 0; p <= total && failures.length < 5; p++) {
      const sink = new RecordingSink();
      const scanner = new FrameScanner(modes, sink);
      scanner.push(l.bytes.subarray(0, p));
      const midDiff = diffEvents(sink.events, expectedEvents(l, modes, p));
      if (midDiff) failures.push(`split@${p} after first chunk: ${midDiff}`);
      if (scanner.frames !== completeFrames(l, p)) failures.push(`split@${p}: frames=${scanner.frames} after first chunk, want ${completeFrames(l, p)}`);
      if (scanner.atBoundary !== isBoundary(l, p)) failures.push(`split@${p}: atBoundary=${scanner.atBoundary} after first chunk`);
      scanner.push(l.bytes.subarray(p));
      const endDiff = diffEvents(sink.events, want);
      if (endDiff) failures.push(`split@${p}: ${endDiff}`);
      if (scanner.frames !== l.msgs.length) failures.push(`split@${p}: frames=${scanner.frames} at end`);
      if (!scanner.atBoundary) failures.push(`split@${p}: not at boundary at end`);
    }
    expect(failures).toEqual([]);
  });

  it('(c) one byte at a time', () => {
    const sink = new RecordingSink();
    const scanner = new FrameScanner(modes, sink);
    const failures: string[] = [];
    for (let p = 0; p < l.bytes.length; p++) {
      scanner.push(l.bytes.subarray(p, p + 1));
      if (scanner.atBoundary !== isBoundary(l, p + 1) && failures.length < 5) failures.push(`after byte ${p}: atBoundary=${scanner.atBoundary}`);
    }
    expect(failures).toEqual([]);
    expect(diffEvents(sink.events, want)).toBeNull();
    expect(scanner.frames).toBe(l.msgs.length);
    expect(scanner.atBoundary).toBe(true);
  });

  it.each([1, 2, 3, 42, 1234, 0xdeadbeef])('(d) random chunk sizes, seed %i, through a reused receive buffer', (seed) => {
    const rnd = mulberry32(seed);
    const sink = new RecordingSink();
    const scanner = new FrameScanner(modes, sink);
    // Like a socket reading into one buffer: the bytes of a chunk are overwritten after push() returns,
    // so anything the scanner kept a reference to (instead of copying) would come out corrupted.
    const scratch = Buffer.alloc(l.bytes.length);
    let pos = 0;
    let pushes = 0;
    while (pos < l.bytes.length) {
      const r = rnd();
      // mostly small chunks, some mid-sized, a few big ones; empty chunks too
      const size = r < 0.05 ? 0 : r < 0.7 ? 1 + Math.floor(rnd() * 16) : r < 0.95 ? 1 + Math.floor(rnd() * 700) : 1 + Math.floor(rnd() * 40000);
      const end = Math.min(l.bytes.length, pos + size);
      const n = l.bytes.copy(scratch, 0, pos, end);
      scanner.push(scratch.subarray(0, n));
      scratch.fill(0xaa, 0, n);
      pos = end;
      pushes++;
      expect(scanner.frames).toBe(completeFrames(l, pos));
      expect(scanner.atBoundary).toBe(isBoundary(l, pos));
    }
    expect(pushes).toBeGreaterThan(10);
    expect(diffEvents(sink.events, want)).toBeNull();
    expect(scanner.frames).toBe(l.msgs.length);
    expect(scanner.atBoundary).toBe(true);
  });

  it('stopping inside a header or body leaves atBoundary false; the rest completes it', () => {
    const bigIdx = l.msgs.findIndex((m) => m.body.length > 1000);
    const cases = [
      l.starts[bigIdx] + 1, // inside the type+length header
      l.starts[bigIdx] + 4,
      l.starts[bigIdx] + 5, // header complete, body not started
      l.starts[bigIdx] + 5 + 500, // inside the body
      l.ends[bigIdx] - 1, // one byte short
    ];
    for (const p of cases) {
      const { sink, scanner } = run(modes, [l.bytes.subarray(0, p)]);
      expect(scanner.atBoundary, `stopped at ${p}`).toBe(false);
      expect(scanner.frames).toBe(bigIdx);
      scanner.push(l.bytes.subarray(p));
      expect(scanner.atBoundary).toBe(true);
      expect(diffEvents(sink.events, want)).toBeNull();
    }
  });
});

describe('FrameScanner: bodies and views', () => {
  it('collects a 100 kB frame split across many chunks byte-exactly', () => {
    const body = pseudoRandomBytes(BIG, 99);
    const f = frame('D', body);
    for (const step of [1, 7, 4096, 65536, f.length - 1]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < f.length; i += step) chunks.push(f.subarray(i, i + step));
      const { sink, scanner } = run(collectAll(), chunks);
      expect(sink.events).toHaveLength(1);
      const ev = sink.events[0];
      expect(ev.t).toBe('frame');
      if (ev.t === 'frame') expect(ev.body.equals(body)).toBe(true);
      expect(scanner.frames).toBe(1);
      expect(scanner.atBoundary).toBe(true);
    }
  });

  it('hands a zero-length COLLECT body as an empty buffer', () => {
    const { sink } = run(collectAll(), [frame('1', Buffer.alloc(0)), frame('n', Buffer.alloc(0))]);
    expect(sink.events.map((e) => (e.t === 'frame' ? [String.fromCharCode(e.type), e.body.length] : null))).toEqual([
      ['1', 0],
      ['n', 0],
    ]);
  });

  it('a view passed to onFrame covers only the body (no header, no following bytes)', () => {
    const bodies: string[] = [];
    const scanner = new FrameScanner(collectAll(), {
      onFrameHeader() {},
      onFrame(_t, body) {
        bodies.push(body.toString('latin1'));
      },
    });
    scanner.push(Buffer.concat([frame('C', cstr('INSERT 0 1')), frame('Z', Buffer.from('T'))]));
    expect(bodies).toEqual(['INSERT 0 1\0', 'T']);
  });

  it('NOTICE reports the header as soon as it is complete, before the body arrives', () => {
    const sink = new RecordingSink();
    const scanner = new FrameScanner(frameModes({ Q: NOTICE }), sink);
    const q = frame('Q', cstr('SELECT 1'));
    scanner.push(q.subarray(0, 5));
    expect(sink.events).toEqual([{ t: 'header', type: 0x51, len: 9 }]);
    expect(scanner.frames).toBe(0);
    expect(scanner.atBoundary).toBe(false);
    scanner.push(q.subarray(5));
    expect(scanner.frames).toBe(1);
    expect(scanner.atBoundary).toBe(true);
    expect(sink.events).toHaveLength(1);
  });

  it('an empty push changes nothing', () => {
    const sink = new RecordingSink();
    const scanner = new FrameScanner(collectAll(), sink);
    scanner.push(Buffer.alloc(0));
    expect(scanner.atBoundary).toBe(true);
    expect(scanner.frames).toBe(0);
    const z = frame('Z', Buffer.from('I'));
    scanner.push(z.subarray(0, 3));
    scanner.push(Buffer.alloc(0));
    expect(scanner.atBoundary).toBe(false);
    scanner.push(z.subarray(3));
    expect(sink.events).toEqual([{ t: 'frame', type: 0x5a, body: Buffer.from('I') }]);
  });
});

describe('FrameScanner: errors', () => {
  const badHeader = (type: string, length: number): Buffer => {
    const b = Buffer.alloc(5);
    b[0] = type.charCodeAt(0);
    b.writeInt32BE(length, 1);
    return b;
  };

  it.each([
    ['length 3', 3],
    ['length 0', 0],
    ['length -1', -1],
    ['length INT32_MIN', -0x80000000],
  ])('%s throws FrameError (whole header in one chunk)', (_n, length) => {
    const scanner = new FrameScanner(collectAll(), new RecordingSink());
    expect(() => scanner.push(badHeader('Z', length))).toThrow(FrameError);
    expect(() => new FrameScanner(new Uint8Array(256), new RecordingSink()).push(badHeader('D', length))).toThrow(
      /invalid message length/,
    );
  });

  it('a bad length is detected when the header arrives one byte at a time, after good frames', () => {
    const sink = new RecordingSink();
    const scanner = new FrameScanner(frameModes({ Z: COLLECT }), sink);
    const bytes = Buffer.concat([frame('Z', Buffer.from('I')), badHeader('X', 2)]);
    let thrown: unknown = null;
    for (let i = 0; i < bytes.length; i++) {
      try {
        scanner.push(bytes.subarray(i, i + 1));
      } catch (e) {
        thrown = e;
        expect(i).toBe(bytes.length - 1); // only when the last header byte arrives
        break;
      }
    }
    expect(thrown).toBeInstanceOf(FrameError);
    expect((thrown as Error).message).toMatch(/invalid message length 2 .*0x58/);
    expect(scanner.frames).toBe(1);
    expect(sink.events).toHaveLength(1);
  });

  it('FrameError is an Error', () => {
    expect(new FrameError('x')).toBeInstanceOf(Error);
  });

  describe('maxCollect', () => {
    it.each([
      ['one chunk', 1],
      ['byte at a time', 0],
    ])('a COLLECT body of exactly maxCollect is fine, one byte more throws (%s)', (_n, whole) => {
      const push = (scanner: FrameScanner, b: Buffer): void => {
        if (whole) scanner.push(b);
        else for (let i = 0; i < b.length; i++) scanner.push(b.subarray(i, i + 1));
      };
      const ok = new RecordingSink();
      push(new FrameScanner(collectAll(), ok, 16), frame('E', Buffer.alloc(16, 1)));
      expect(ok.events).toHaveLength(1);

      const scanner = new FrameScanner(collectAll(), new RecordingSink(), 16);
      expect(() => push(scanner, frame('E', Buffer.alloc(17, 1)))).toThrow(FrameError);
    });

    it('throws as soon as the header is known, without waiting for (or buffering) the body', () => {
      const scanner = new FrameScanner(frameModes({ E: COLLECT }), new RecordingSink(), 1 << 20);
      expect(() => scanner.push(badHeader('E', (1 << 24) + 4))).toThrow(/message of type 'E' is too large \(16777216 bytes\)/);
    });

    it('with truncate, an over-long COLLECT frame is handed over as its first maxCollect bytes and the stream goes on', () => {
      for (const whole of [true, false]) {
        const sink = new RecordingSink();
        const scanner = new FrameScanner(frameModes({ E: COLLECT, Z: COLLECT }), sink, { maxCollect: 8, truncate: true });
        const stream = Buffer.concat([frame('E', Buffer.from('C22P02\0Mlong message here\0\0')), frame('Z', Buffer.from('I'))]);
        if (whole) scanner.push(stream);
        else for (let i = 0; i < stream.length; i++) scanner.push(stream.subarray(i, i + 1));
        expect(scanner.frames).toBe(2);
        expect(sink.events).toEqual([
          { t: 'frame', type: 0x45, body: Buffer.from('C22P02\0M') },
          { t: 'frame', type: 0x5a, body: Buffer.from('I') },
        ]);
      }
    });

    it('maxFrame refuses a frame of any mode as soon as its header is known, saying its type and size', () => {
      const scanner = new FrameScanner(new Uint8Array(256), new RecordingSink(), { maxFrame: 100 });
      scanner.push(frame('d', Buffer.alloc(100)));
      let thrown: unknown;
      try {
        scanner.push(badHeader('d', 1 << 30));
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(FrameError);
      expect(thrown).toMatchObject({ kind: 'too-large', type: 0x64, bodyLength: (1 << 30) - 4 });
    });

    it('a straddling frame reserves memory as its bytes arrive, not what its header claims', () => {
      const sink = new RecordingSink();
      const scanner = new FrameScanner(collectAll(), sink);
      scanner.push(badHeader('Q', (1 << 30) + 4));
      scanner.push(Buffer.alloc(1000, 0x41));
      const copy = (scanner as unknown as { collecting: Buffer }).collecting;
      expect(copy.length).toBeLessThanOrEqual(64 * 1024);
      const body = Buffer.alloc(200_000, 0x42);
      const s2 = new FrameScanner(collectAll(), sink);
      const f = frame('Q', body);
      for (let i = 0; i < f.length; i += 777) s2.push(f.subarray(i, i + 777));
      expect(sink.events.at(-1)).toEqual({ t: 'frame', type: 0x51, body });
    });

    it('applies only to COLLECT types: SKIP and NOTICE frames of any size pass', () => {
      const sink = new RecordingSink();
      const scanner = new FrameScanner(frameModes({ Z: COLLECT, T: NOTICE }), sink, 8);
      scanner.push(frame('D', Buffer.alloc(1000)));
      scanner.push(frame('T', Buffer.alloc(1000)));
      scanner.push(frame('Z', Buffer.from('I')));
      expect(scanner.frames).toBe(3);
      expect(sink.events).toEqual([
        { t: 'header', type: 0x54, len: 1000 },
        { t: 'frame', type: 0x5a, body: Buffer.from('I') },
      ]);
    });
  });
});
