// TLS towards PostgreSQL servers (server_tls, nodes[].tls): the settings per node and the options for tls.connect, per sslmode.
import net from 'node:net';
import tls from 'node:tls';
import type { SERVER_TLS_MODES } from '../config/schema.js';
import { readPem, secureContext } from './files.js';

export type ServerTlsMode = (typeof SERVER_TLS_MODES)[number];

export interface ServerTlsFiles {
  mode: ServerTlsMode;
  ca?: string;
  cert?: string;
  key?: string;
}

/** What connectServer needs to speak TLS to one node; files are read once, when the config is loaded. */
export interface BackendTls {
  mode: Exclude<ServerTlsMode, 'disable'>;
  /** Verify the certificate chain (verify-ca, verify-full; require when a CA is given, as libpq does). */
  verifyChain: boolean;
  /** Also check that the certificate names the host (verify-full). */
  verifyHost: boolean;
  context: tls.SecureContext;
}

/** Build a node's TLS settings; null for mode disable. Throws TlsConfigError naming `keyPath` + ".ca" etc. */
export function backendTls(files: ServerTlsFiles, keyPath: string): BackendTls | null {
  if (files.mode === 'disable') return null;
  const ca = files.ca ? readPem(files.ca, `${keyPath}.ca`) : undefined;
  const cert = files.cert ? readPem(files.cert, `${keyPath}.cert`) : undefined;
  const key = files.key ? readPem(files.key, `${keyPath}.key`) : undefined;
  // Without a CA file, verify-ca and verify-full check against the system's trusted CAs.
  const context = secureContext({ ca, cert, key }, keyPath);
  const verifyChain = files.mode === 'verify-ca' || files.mode === 'verify-full' || (files.mode === 'require' && ca !== undefined);
  return { mode: files.mode, verifyChain, verifyHost: files.mode === 'verify-full', context };
}

/**
 * Options for pgsplit's own connections to a node (node-postgres `ssl`), or undefined for plaintext: node-postgres
 * cannot fall back from TLS, so `prefer` keeps them plaintext.
 */
export function monitorTlsOptions(t: BackendTls | null, host: string): tls.ConnectionOptions | undefined {
  if (t === null || t.mode === 'prefer') return undefined;
  const { socket: _none, ...options } = tlsConnectOptions(t, host, undefined as unknown as net.Socket);
  return options;
}

/** Options for tls.connect over `socket` (already past SSLRequest/'S') to `host`. */
export function tlsConnectOptions(t: BackendTls, host: string, socket: net.Socket): tls.ConnectionOptions {
  return {
    socket,
    secureContext: t.context,
    // SNI must not be an IP address (RFC 6066); the identity check below still sees the host.
    servername: net.isIP(host) ? undefined : host,
    rejectUnauthorized: t.verifyChain,
    checkServerIdentity: t.verifyHost ? (_name, cert) => tls.checkServerIdentity(host, cert) : () => undefined,
  };
}
