// Switching a client connection to TLS after its SSLRequest: refuse bytes sent ahead of the handshake, answer 'S', read through the TLS socket.
import type net from 'node:net';
import type tls from 'node:tls';
import { ProxyError } from '../errors.js';
import { upgradeClient, type FrontendTls } from '../tls/frontend-tls.js';
import type { ReadSlot } from '../util/read-slot.js';
import { HandshakeReader } from './handshake-reader.js';

const YES = Buffer.from('S');

/** A client sent a StartupMessage in plaintext while tls.mode is require (like an hba hostssl miss). */
export const tlsRequired = (): ProxyError => new ProxyError('28000', 'tls_required', 'pgsplit: TLS is required (tls.mode = require)', 'FATAL');

/**
 * Answer the SSLRequest with 'S' and start TLS on `raw`. Bytes the client sent after its SSLRequest and before
 * the handshake were not encrypted and may have been injected by someone on the path (CVE-2021-23214): they
 * are refused, as PostgreSQL does. From then on the slot's handler reads the TLS socket's data through a new
 * HandshakeReader; the caller uses the returned socket for everything (writes, close, the session).
 */
export function startClientTls(raw: net.Socket, slot: ReadSlot, reader: HandshakeReader, t: FrontendTls): { socket: tls.TLSSocket; reader: HandshakeReader } {
  if (reader.buffered > 0) {
    throw new ProxyError('08P01', 'protocol_violation', 'received unencrypted data after SSL request', 'FATAL',
      'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.');
  }
  reader.detach();
  raw.write(YES);
  const socket = upgradeClient(raw, t);
  // A failed handshake surfaces as 'error' (the reader sees it and ends the login); never unhandled.
  socket.on('error', () => {});
  const next = new HandshakeReader(socket);
  slot.handler = next.push;
  slot.follow(socket);
  return { socket, reader: next };
}
