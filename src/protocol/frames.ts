// Whole protocol messages in buffers: joined into one without copying when they lie side by side, and walked one by one.

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

/** Each whole message in a list of buffers that hold one or more messages back to back. */
export function forEachMessage(frames: readonly Buffer[], fn: (type: number, body: Buffer) => void): void {
  for (const buf of frames) {
    let i = 0;
    while (i + 5 <= buf.length) {
      const len = buf.readInt32BE(i + 1);
      if (len < 4 || i + 1 + len > buf.length) break;
      fn(buf[i], buf.subarray(i + 5, i + 1 + len));
      i += 1 + len;
    }
  }
}
