// Encoders for the client messages the proxy sends to servers itself (auth replies, Terminate, Query).
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
