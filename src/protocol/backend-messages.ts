// Encoders for the server messages the proxy itself sends to clients, and decoders of server messages it reads.
import { AUTH, B } from './codes.js';
import { BodyReader, MessageWriter } from './writer.js';
import type { ProxyError } from '../errors.js';

export function errorResponse(err: Pick<ProxyError, 'sqlstate' | 'message' | 'severity' | 'detail' | 'hint'>, type: number = B.ErrorResponse): Buffer {
  return MessageWriter.message(type, (w) => {
    w.int8(0x53).cstring(err.severity); // S
    w.int8(0x56).cstring(err.severity); // V (not localized)
    w.int8(0x43).cstring(err.sqlstate); // C
    w.int8(0x4d).cstring(err.message); // M
    if (err.detail) w.int8(0x44).cstring(err.detail); // D
    if (err.hint) w.int8(0x48).cstring(err.hint); // H
    w.int8(0);
  });
}

export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return MessageWriter.message(B.ReadyForQuery, (w) => w.int8(status.charCodeAt(0)));
}

export function backendKeyData(pid: number, secret: number): Buffer {
  return MessageWriter.message(B.BackendKeyData, (w) => w.int32(pid).int32(secret));
}

export function parameterStatus(name: string, value: string): Buffer {
  return MessageWriter.message(B.ParameterStatus, (w) => w.cstring(name).cstring(value));
}

/** NegotiateProtocolVersion: the newest minor version we speak and the protocol options we did not recognize. */
export function negotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  return MessageWriter.message(0x76, (w) => {
    w.int32((3 << 16) | newestMinor).int32(unrecognized.length);
    for (const o of unrecognized) w.cstring(o);
  });
}

export function authenticationOk(): Buffer {
  return MessageWriter.message(B.Authentication, (w) => w.int32(AUTH.Ok));
}

export function authenticationMD5Password(salt: Buffer): Buffer {
  return MessageWriter.message(B.Authentication, (w) => w.int32(AUTH.MD5Password).bytes(salt));
}

export function authenticationSASL(mechanisms: string[]): Buffer {
  return MessageWriter.message(B.Authentication, (w) => {
    w.int32(AUTH.SASL);
    for (const m of mechanisms) w.cstring(m);
    w.int8(0);
  });
}

export function authenticationSASLContinue(data: string): Buffer {
  return MessageWriter.message(B.Authentication, (w) => w.int32(AUTH.SASLContinue).bytes(Buffer.from(data)));
}

export function authenticationSASLFinal(data: string): Buffer {
  return MessageWriter.message(B.Authentication, (w) => w.int32(AUTH.SASLFinal).bytes(Buffer.from(data)));
}

/** Fields of an ErrorResponse/NoticeResponse body, keyed by their one-letter codes. */
/** Fields of an ErrorResponse/NoticeResponse; tolerant of a truncated or malformed body (a field without its NUL ends the list). */
export function decodeErrorFields(body: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  let pos = 0;
  while (pos < body.length) {
    const code = body[pos++];
    if (code === 0) break;
    const end = body.indexOf(0, pos);
    fields[String.fromCharCode(code)] = body.toString('utf8', pos, end < 0 ? body.length : end);
    if (end < 0) break;
    pos = end + 1;
  }
  return fields;
}

export function decodeParameterStatus(body: Buffer): [string, string] {
  const r = new BodyReader(body);
  return [r.cstring(), r.cstring()];
}
