// Rewriting the statement name in Parse, Bind, Describe and Close messages, so that pooled servers see pgsplit's own names.
import { F } from './codes.js';
import { MessageWriter } from './writer.js';

function cstringEnd(body: Buffer, from: number): number {
  const end = body.indexOf(0, from);
  if (end < 0) throw new RangeError('a string without its terminator');
  return end;
}

/** Where the statement name sits in a frame (header included): [start, end) of its bytes, the terminator at end. */
export function statementNameSpan(frame: Buffer): [number, number] | null {
  const type = frame[0];
  if (type === F.Parse) return [5, cstringEnd(frame, 5)];
  if (type === F.Bind) {
    const portalEnd = cstringEnd(frame, 5);
    return [portalEnd + 1, cstringEnd(frame, portalEnd + 1)];
  }
  if (type === F.Describe || type === F.Close) return frame[5] === 0x53 /* S */ ? [6, cstringEnd(frame, 6)] : null;
  return null;
}

/** The same message naming statement `name` instead (a new buffer; the rest of the bytes as they were). */
export function renameStatement(frame: Buffer, name: string): Buffer {
  const span = statementNameSpan(frame);
  if (span === null) return frame;
  const [start, end] = span;
  const nameBytes = Buffer.byteLength(name);
  const out = Buffer.allocUnsafe(frame.length - (end - start) + nameBytes);
  frame.copy(out, 0, 0, start);
  out.write(name, start, 'utf8');
  frame.copy(out, start + nameBytes, end);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

/** Close of a prepared statement. */
export function closeStatement(name: string): Buffer {
  return MessageWriter.message(F.Close, (w) => w.int8(0x53).cstring(name));
}
