// Client messages: encoders for those the proxy sends servers itself (auth replies, Terminate, Query), and the Parse decoder.
import { F } from './codes.js';
import { MessageWriter } from './writer.js';

export function passwordMessage(password: string): Buffer {
  return MessageWriter.message(F.Password, (w) => w.cstring(password));
}

export function saslInitialResponse(mechanism: string, data: string): Buffer {
  const payload = Buffer.from(data);
  return MessageWriter.message(F.Password, (w) => w.cstring(mechanism).int32(payload.length).bytes(payload));
}

export function saslResponse(data: string): Buffer {
  return MessageWriter.message(F.Password, (w) => w.bytes(Buffer.from(data)));
}

export function terminate(): Buffer {
  return MessageWriter.message(F.Terminate, () => {});
}

export function query(sql: string): Buffer {
  return MessageWriter.message(F.Query, (w) => w.cstring(sql));
}

/** Where a Parse body's statement name and query text end (each at its NUL terminator). */
export interface ParseFields {
  name: string;
  nameEnd: number;
  query: string;
}

/** The statement name and query text of a Parse message body; RangeError when a terminator is missing. */
export function decodeParse(body: Buffer): ParseFields {
  const nameEnd = body.indexOf(0);
  if (nameEnd < 0) throw new RangeError('Parse without a statement name terminator');
  const queryEnd = body.indexOf(0, nameEnd + 1);
  if (queryEnd < 0) throw new RangeError('Parse without a query terminator');
  return { name: body.toString('utf8', 0, nameEnd), nameEnd, query: body.toString('utf8', nameEnd + 1, queryEnd) };
}
