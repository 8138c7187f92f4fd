// A small message builder: type byte, length word patched at the end, then typed fields.

export class MessageWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  int32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  cstring(s: string): this {
    const len = Buffer.byteLength(s);
    this.ensure(len + 1);
    this.buf.write(s, this.pos);
    this.pos += len;
    this.buf[this.pos++] = 0;
    return this;
  }

  bytes(b: Buffer): this {
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }

  /** A typed message: `type` byte, then the length of everything written since. */
  static message(type: number, fill: (w: MessageWriter) => void): Buffer {
    const w = new MessageWriter();
    w.int8(type).int32(0);
    fill(w);
    w.buf.writeInt32BE(w.pos - 1, 1);
    return Buffer.from(w.buf.subarray(0, w.pos));
  }

  /** An untyped startup-phase packet: length first. */
  static packet(fill: (w: MessageWriter) => void): Buffer {
    const w = new MessageWriter();
    w.int32(0);
    fill(w);
    w.buf.writeInt32BE(w.pos, 0);
    return Buffer.from(w.buf.subarray(0, w.pos));
  }
}

/** Read NUL-terminated strings out of a body; used by the decoders. */
export class BodyReader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new RangeError('unterminated string in message');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }

  int32(): number {
    if (this.pos + 4 > this.buf.length) throw new RangeError('message too short');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  int8(): number {
    if (this.pos >= this.buf.length) throw new RangeError('message too short');
    return this.buf[this.pos++];
  }

  rest(): Buffer {
    const b = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return b;
  }

  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.buf.length) throw new RangeError('message too short');
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
}
