// Joining whole protocol messages into one buffer without copying when they already lie side by side.

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
