// Streaming scanner of protocol frames (1-byte type + int32 length): finds boundaries without copying bodies.
//
// The proxy forwards the bytes it receives unchanged; the scanner runs beside that forwarding and only
// tells the owner about the frames it asked for. Bodies of frame types marked COLLECT are handed over
// whole (a view into the chunk when the frame is inside one chunk, a copy only when it straddles chunks);
// types marked NOTICE are reported at their header; everything else (DataRow, CopyData …) is skipped.

export const SKIP = 0;
export const NOTICE = 1;
export const COLLECT = 2;

export interface FrameSink {
  /** A frame of a NOTICE type started; bodyLength is the body size after the length word. */
  onFrameHeader(type: number, bodyLength: number): void;
  /** A whole frame of a COLLECT type; `body` (and `frame`, the message with its header) are only valid during the call. */
  onFrame(type: number, body: Buffer, frame: Buffer): void;
}

export class FrameError extends Error {}

const EMPTY = Buffer.alloc(0);

export class FrameScanner {
  /** Complete frames seen so far (all types). */
  frames = 0;
  private readonly header = Buffer.alloc(5);
  private headerFill = 0;
  private inBody = false;
  private remaining = 0;
  private type = 0;
  /** Copy of a frame that straddles chunks, header included. */
  private collecting: Buffer | null = null;
  private collectFill = 0;

  constructor(
    private readonly modes: Uint8Array,
    private readonly sink: FrameSink,
    private readonly maxCollect = 1 << 30,
  ) {}

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
        if (this.collecting !== null) {
          chunk.copy(this.collecting, this.collectFill, i, i + take);
          this.collectFill += take;
        }
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
        chunk.copy(this.header, this.headerFill, i, i + take);
        this.headerFill += take;
        i += take;
        if (this.headerFill < 5) return;
        this.headerFill = 0;
        this.type = this.header[0];
        length = this.header.readInt32BE(1);
      }
      if (length < 4) throw new FrameError(`invalid message length ${length} for message type 0x${this.type.toString(16)}`);
      const bodyLength = length - 4;
      const mode = this.modes[this.type];
      if (mode === COLLECT) {
        if (bodyLength > this.maxCollect) {
          throw new FrameError(`message of type '${String.fromCharCode(this.type)}' is too large (${bodyLength} bytes)`);
        }
        if (headerInChunk && i + bodyLength <= n) {
          this.frames++;
          this.sink.onFrame(this.type, bodyLength === 0 ? EMPTY : chunk.subarray(i, i + bodyLength), chunk.subarray(i - 5, i + bodyLength));
          i += bodyLength;
          continue;
        }
        this.collecting = Buffer.allocUnsafe(bodyLength + 5);
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

  private endBody(): void {
    this.inBody = false;
    this.frames++;
    const frame = this.collecting;
    if (frame !== null) {
      this.collecting = null;
      this.sink.onFrame(this.type, frame.subarray(5), frame);
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
export function collectAll(): Uint8Array {
  return new Uint8Array(256).fill(COLLECT);
}
