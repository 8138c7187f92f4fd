// TLS towards clients (tls.*): the secure context built from tls.cert/key/ca, and the upgrade of a client socket after SSLRequest.
import type net from 'node:net';
import tls from 'node:tls';
import type { CLIENT_TLS_MODES } from '../config/schema.js';
import { readPem, secureContext } from './files.js';

export type ClientTlsMode = (typeof CLIENT_TLS_MODES)[number];

export interface ClientTlsFiles {
  mode: ClientTlsMode;
  cert?: string;
  key?: string;
  ca?: string;
}

/** What the client startup needs: whether to answer SSLRequest with 'S', whether plaintext is refused, and the context. */
export interface FrontendTls {
  mode: Exclude<ClientTlsMode, 'disable'>;
  context: tls.SecureContext;
}

/** Build the client-side TLS settings; null for mode disable. Throws TlsConfigError naming tls.cert, tls.key or tls.ca. */
export function frontendTls(files: ClientTlsFiles): FrontendTls | null {
  if (files.mode === 'disable') return null;
  const cert = readPem(files.cert ?? '', 'tls.cert');
  const key = readPem(files.key ?? '', 'tls.key');
  const ca = files.ca ? readPem(files.ca, 'tls.ca') : undefined;
  return { mode: files.mode, context: secureContext({ cert, key, ca }, 'tls') };
}

/** Start TLS as the server on a client socket that just got 'S'; the handshake runs as the client sends. */
export function upgradeClient(socket: net.Socket, t: FrontendTls): tls.TLSSocket {
  return new tls.TLSSocket(socket, { isServer: true, secureContext: t.context, requestCert: false, rejectUnauthorized: false });
}
