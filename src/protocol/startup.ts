// The startup phase: decoding what a client sends before it is authenticated, and encoding what we send a server.
import { CANCEL_REQUEST, GSSENC_REQUEST, PROTOCOL_3_0, SSL_REQUEST } from './codes.js';
import { BodyReader, MessageWriter } from './writer.js';

export type StartupPacket =
  | { kind: 'startup'; params: Map<string, string>; minor: number }
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'unsupported'; major: number; minor: number };

export const MAX_STARTUP_PACKET = 10000; // PostgreSQL's own MAX_STARTUP_PACKET_LENGTH

/** Decode a whole startup packet, `packet` including its length word. Throws RangeError when malformed. */
export function decodeStartupPacket(packet: Buffer): StartupPacket {
  const r = new BodyReader(packet);
  r.int32();
  const code = r.int32();
  if (code === SSL_REQUEST) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST) return { kind: 'cancel', pid: r.int32(), secret: r.int32() };
  // Any 3.x is accepted: a newer minor version is answered with NegotiateProtocolVersion and runs as 3.0.
  if (code >>> 16 !== PROTOCOL_3_0 >>> 16) return { kind: 'unsupported', major: code >>> 16, minor: code & 0xffff };
  const params = new Map<string, string>();
  while (!r.done) {
    const name = r.cstring();
    if (name === '') break;
    params.set(name, r.cstring());
  }
  return { kind: 'startup', params, minor: code & 0xffff };
}

export function encodeStartupMessage(params: Iterable<[string, string]>): Buffer {
  return MessageWriter.packet((w) => {
    w.int32(PROTOCOL_3_0);
    for (const [k, v] of params) w.cstring(k).cstring(v);
    w.int8(0);
  });
}

export function encodeCancelRequest(pid: number, secret: number): Buffer {
  return MessageWriter.packet((w) => w.int32(CANCEL_REQUEST).int32(pid).int32(secret));
}
