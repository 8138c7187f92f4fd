// Joining a unit's frames, and the replies the proxy gives to statements it answers itself.
import { MessageWriter } from '../protocol/writer.js';

/** One buffer for several whole messages; a view when they are consecutive in the same read buffer. */
export function joinFrames(frames: Buffer[]): Buffer {
  if (frames.length === 1) return frames[0];
  const first = frames[0];
  let end = first.byteOffset + first.length;
  let contiguous = true;
  for (let i = 1; i < frames.length; i++) {
    const f = frames[i];
    if (f.buffer !== first.buffer || f.byteOffset !== end) {
      contiguous = false;
      break;
    }
    end += f.length;
  }
  return contiguous ? Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset) : Buffer.concat(frames);
}

const empty = (type: number) => MessageWriter.message(type, () => {});

export const localReply = {
  commandComplete: (tag: string) => MessageWriter.message(0x43, (w) => w.cstring(tag)),
  parseComplete: () => empty(0x31),
  bindComplete: () => empty(0x32),
  closeComplete: () => empty(0x33),
  noData: () => empty(0x6e),
  /** RowDescription of SHOW name: one text column named like PostgreSQL names it. */
  showRowDescription(name: string): Buffer {
    return MessageWriter.message(0x54, (w) => {
      w.int8(0).int8(1); // int16 field count = 1
      w.cstring(name).int32(0).int8(0).int8(0).int32(25).int8(0xff).int8(0xff).int32(-1).int8(0).int8(0);
    });
  },
  /** SHOW name: one text column, one row (RowDescription only in the simple protocol; Describe gives it otherwise). */
  show(name: string, value: string, simple: boolean): Buffer[] {
    const out: Buffer[] = [];
    if (simple) out.push(localReply.showRowDescription(name));
    const v = Buffer.from(value);
    out.push(MessageWriter.message(0x44, (w) => w.int8(0).int8(1).int32(v.length).bytes(v)));
    out.push(localReply.commandComplete('SHOW'));
    return out;
  },
};
