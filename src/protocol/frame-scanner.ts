// Streaming scanner of protocol frames (1-byte type + int32 length): finds boundaries without copying bodies.
//
// The proxy forwards the bytes it receives unchanged; the scanner runs beside that forwarding and only
// tells the owner about the frames it asked for. Bodies of frame types marked COLLECT are handed over
// whole (a view into the chunk when the frame is inside one chunk, a copy only when it straddles chunks);
// types marked NOTICE are reported at their header; everything else (DataRow, CopyData …) is skipped.
//
// Memory follows what arrived, never what a header claims: a straddling frame's copy grows as its bytes
// come in. A frame over `maxFrame` (any mode) is an error; a COLLECT frame over `maxCollect` is either an
// error or, with `truncate`, handed over as its first `maxCollect` body bytes (a server's 17 MB
// ErrorResponse only needs its SQLSTATE, which comes first) while the rest streams past.

export const SKIP = 0;
export const NOTICE = 1;
export const COLLECT = 2;

export interface FrameSink {
  /** A frame of a NOTICE type started; bodyLength is the body size after the length word. */
  onFrameHeader(type: number, bodyLength: number): void;
  /** A whole frame of a COLLECT type; `body` (and `frame`, the message with its header) are only valid during the call. */
  onFrame(type: number, body: Buffer, frame: Buffer): void;
}

export class FrameError extends Error {
  constructor(
    message: string,
    /** 'too-large': the frame is over a limit (type and declared body size say which); 'invalid': a bad length word. */
    readonly kind: 'too-large' | 'invalid' = 'invalid',
    readonly type = 0,
    readonly bodyLength = 0,
  ) {
    super(message);
  }
}

export interface ScannerLimits {
  /** COLLECT bodies larger than this are an error, or truncated (see `truncate`). */
  maxCollect?: number;
  /** Any frame whose body is larger than this is an error. */
  maxFrame?: number;
  /** Hand over an over-long COLLECT frame's first maxCollect body bytes instead of failing (`frame` is then the prefix too). */
  truncate?: boolean;
}

// First size of a straddling frame's copy; it doubles as bytes arrive, up to the frame's size.
const INITIAL_COPY = 16 * 1024;

const EMPTY = Buffer.alloc(0);

export class FrameScanner {
  /** Complete frames seen so far (all types). */
  frames = 0;
  /** A header split across chunks is put together here (made on first need: most connections never need it). */
  private header: Buffer | null = null;
  private headerFill = 0;
  private inBody = false;
  private remaining = 0;
  private type = 0;
  /** Copy of a frame that straddles chunks, header included; grows with what arrived. */
  private collecting: Buffer | null = null;
  private collectFill = 0;
  /** Size the copy will have when complete (header + body, or header + truncated body). */
  private collectTarget = 0;
  private readonly maxCollect: number;
  private readonly maxFrame: number;
  private readonly truncate: boolean;

  constructor(
    private modes: Uint8Array,
    private readonly sink: FrameSink,
    limits: number | ScannerLimits = {},
  ) {
    const l = typeof limits === 'number' ? { maxCollect: limits } : limits;
    this.maxCollect = l.maxCollect ?? 1 << 30;
    this.maxFrame = l.maxFrame ?? Infinity;
    this.truncate = l.truncate ?? false;
  }

  /** Which frame types to report from the next frame on (one already started keeps the mode it began with). */
  setModes(modes: Uint8Array): void {
    this.modes = modes;
  }

  /** True when the scanner stands exactly between two frames (nothing partial buffered). */
  get atBoundary(): boolean {
    return !this.inBody && this.headerFill === 0;
  }

  push(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.inBody) {
        const take = Math.min(this.remaining, n - i);
        if (this.collecting !== null && this.collectFill < this.collectTarget) this.copyIn(chunk, i, Math.min(take, this.collectTarget - this.collectFill));
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) this.endBody();
        continue;
      }
      let length: number;
      let headerInChunk = false;
      if (this.headerFill === 0 && i + 5 <= n) {
        headerInChunk = true;
        this.type = chunk[i];
        length = chunk.readInt32BE(i + 1);
        i += 5;
      } else {
        const take = Math.min(5 - this.headerFill, n - i);
        const header = (this.header ??= Buffer.alloc(5));
        chunk.copy(header, this.headerFill, i, i + take);
        this.headerFill += take;
        i += take;
        if (this.headerFill < 5) return;
        this.headerFill = 0;
        this.type = header[0];
        length = header.readInt32BE(1);
      }
      if (length < 4) throw new FrameError(`invalid message length ${length} for message type 0x${this.type.toString(16)}`, 'invalid', this.type, length);
      const bodyLength = length - 4;
      if (bodyLength > this.maxFrame) {
        throw new FrameError(`message of type '${String.fromCharCode(this.type)}' is too large (${bodyLength} bytes)`, 'too-large', this.type, bodyLength);
      }
      const mode = this.modes[this.type];
      if (mode === COLLECT) {
        let keep = bodyLength;
        if (bodyLength > this.maxCollect) {
          if (!this.truncate) throw new FrameError(`message of type '${String.fromCharCode(this.type)}' is too large (${bodyLength} bytes)`, 'too-large', this.type, bodyLength);
          keep = this.maxCollect;
        }
        if (headerInChunk && keep === bodyLength && i + bodyLength <= n) {
          this.frames++;
          this.sink.onFrame(this.type, bodyLength === 0 ? EMPTY : chunk.subarray(i, i + bodyLength), chunk.subarray(i - 5, i + bodyLength));
          i += bodyLength;
          continue;
        }
        this.collectTarget = keep + 5;
        this.collecting = Buffer.allocUnsafe(Math.min(this.collectTarget, INITIAL_COPY));
        this.collecting[0] = this.type;
        this.collecting.writeInt32BE(length, 1);
        this.collectFill = 5;
      } else if (mode === NOTICE) {
        this.sink.onFrameHeader(this.type, bodyLength);
      }
      if (bodyLength === 0) {
        this.endBody();
      } else {
        this.inBody = true;
        this.remaining = bodyLength;
      }
    }
  }

  private copyIn(chunk: Buffer, from: number, n: number): void {
    let buf = this.collecting!;
    const need = this.collectFill + n;
    if (need > buf.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.collectTarget, Math.max(need, buf.length * 2)));
      buf.copy(grown, 0, 0, this.collectFill);
      this.collecting = buf = grown;
    }
    chunk.copy(buf, this.collectFill, from, from + n);
    this.collectFill = need;
  }

  private endBody(): void {
    this.inBody = false;
    this.frames++;
    const frame = this.collecting;
    if (frame !== null) {
      this.collecting = null;
      const whole = frame.subarray(0, this.collectFill);
      this.sink.onFrame(this.type, whole.subarray(5), whole);
    }
  }
}

/** Build a mode table from a map of message type characters to modes. */
export function frameModes(spec: Record<string, number>): Uint8Array {
  const modes = new Uint8Array(256);
  for (const [ch, mode] of Object.entries(spec)) modes[ch.charCodeAt(0)] = mode;
  return modes;
}

/** Collects every frame whole; for the short handshake phases where each message is decoded. */
const ALL = new Uint8Array(256).fill(COLLECT);

/** Every type COLLECT (shared: scanners only read their modes). */
export function collectAll(): Uint8Array {
  return ALL;
}
