// Opening a server connection: TCP, StartupMessage and authentication as a client, up to the first ReadyForQuery.
import net from 'node:net';
import tls from 'node:tls';
import { AUTH, B, SSL_REQUEST } from '../protocol/codes.js';
import { collectAll, FrameScanner, type FrameSink } from '../protocol/frame-scanner.js';
import { decodeErrorFields, decodeParameterStatus } from '../protocol/backend-messages.js';
import { passwordMessage, saslInitialResponse, saslResponse } from '../protocol/frontend-messages.js';
import { encodeStartupMessage } from '../protocol/startup.js';
import { md5Password, ScramClient } from '../protocol/scram.js';
import { BodyReader } from '../protocol/writer.js';
import { errors, ProxyError } from '../errors.js';
import { ReadSlot } from '../util/read-slot.js';
import { tlsConnectOptions, type BackendTls } from '../tls/backend-tls.js';

export interface ConnectOptions {
  node: string;
  host: string;
  port: number;
  user: string;
  /** null when the proxy knows no password for the user (trust towards the server). */
  password: string | null;
  /** Startup parameters to send (user and database included). */
  params: ReadonlyMap<string, string>;
  connectTimeout: number;
  /** nodes[].allow_cleartext_password: answer AuthenticationCleartextPassword on a connection without TLS. */
  allowCleartextPassword?: boolean;
  /** TLS settings for this node (server_tls / nodes[].tls); null or absent: plaintext. */
  tls?: BackendTls | null;
  tlsError?: string;
}

/** Per node, from the config: how pgsplit connects to it (nodes[].allow_cleartext_password; TLS). */
export interface NodeConnectSettings {
  allowCleartextPassword: boolean;
  /** server_tls / nodes[].tls; null: plaintext (mode disable). */
  tls: BackendTls | null;
  /** The node's TLS settings could not be loaded (a bad file on reload): connections to it fail with this. */
  tlsError?: string;
}

export interface ServerConnection {
  node: string;
  /** The connection to write to, pause, resume and close: the TLS socket when the connection uses TLS. */
  socket: net.Socket;
  /** TLS is in use on this connection. */
  tls: boolean;
  /** The socket's read buffer; its handler is the relay's once the session starts. */
  slot: ReadSlot;
  pid: number;
  secret: number;
  parameters: Map<string, string>;
  /** ParameterStatus and NoticeResponse frames of the startup, whole, to relay to the client. */
  startupFrames: Buffer[];
}

/** The server refused the startup (bad database, too many connections, …): its ErrorResponse frame, as sent. */
export class ServerStartupError extends Error {
  constructor(
    readonly frame: Buffer,
    readonly fields: Record<string, string>,
  ) {
    super(fields.M ?? 'server refused the connection');
  }
  get sqlstate(): string {
    return this.fields.C ?? '08006';
  }
}

export function connectServer(o: ConnectOptions): Promise<ServerConnection> {
  if (o.tlsError) return Promise.reject(errors.backendConnect(o.node, o.tlsError));
  return new Promise((resolve, reject) => {
    const slot = new ReadSlot();
    const raw = net.connect({ host: o.host, port: o.port, onread: slot.onread } as net.NetConnectOpts);
    raw.setNoDelay(true);
    raw.setKeepAlive(true, 10_000);
    let done = false;
    let scram: ScramClient | null = null;
    const tlsSettings = o.tls ?? null;
    // conn.socket becomes the TLS socket once the server accepted SSLRequest.
    const conn: ServerConnection = { node: o.node, socket: raw, tls: false, slot, pid: 0, secret: 0, parameters: new Map(), startupFrames: [] };

    const fail = (err: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      slot.handler = () => {};
      conn.socket.destroy();
      raw.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(errors.backendConnect(o.node, `timed out after ${o.connectTimeout} ms connecting to ${o.host}:${o.port}`)),
      o.connectTimeout,
    );
    const needPassword = (): string => {
      if (o.password === null) throw errors.backendConnect(o.node, `server asks a password for user "${o.user}" but none is configured in users`);
      return o.password;
    };

    const sink: FrameSink = {
      onFrameHeader() {},
      onFrame(type, body, frame) {
        if (done) return;
        try {
          switch (type) {
            case B.Authentication: {
              const r = new BodyReader(body);
              const kind = r.int32();
              if (kind === AUTH.Ok) {
                // A server that skips SASLFinal has not proved it knows the password (it may be an impostor).
                if (scram && !scram.serverVerified) {
                  throw errors.backendConnect(o.node, 'server sent AuthenticationOk without completing SCRAM (no server signature): it did not prove it knows the password');
                }
                break;
              }
              if (kind === AUTH.CleartextPassword) {
                if (!o.allowCleartextPassword && !conn.tls) {
                  throw errors.backendConnect(
                    o.node,
                    `server asks for the password of user "${o.user}" in cleartext (hba method "password") on a connection without TLS; ` +
                      `pgsplit does not send it unless nodes[].allow_cleartext_password is true for node "${o.node}" or the connection uses TLS (server_tls, nodes[].tls)`,
                  );
                }
                conn.socket.write(passwordMessage(needPassword()));
              }
              else if (kind === AUTH.MD5Password) conn.socket.write(passwordMessage(md5Password(o.user, needPassword(), r.bytes(4))));
              else if (kind === AUTH.SASL) {
                const mechanisms: string[] = [];
                for (let m = r.cstring(); m !== ''; m = r.cstring()) mechanisms.push(m);
                if (!mechanisms.includes('SCRAM-SHA-256')) throw errors.backendConnect(o.node, `server offers only SASL mechanisms ${mechanisms.join(', ')}`);
                scram = new ScramClient(needPassword());
                conn.socket.write(saslInitialResponse('SCRAM-SHA-256', scram.clientFirst()));
              } else if (kind === AUTH.SASLContinue && scram) {
                // PBKDF2 runs on the thread pool; the server sends nothing until it gets the answer.
                scram.clientFinal(r.rest().toString()).then(
                  (final) => {
                    if (!done) conn.socket.write(saslResponse(final));
                  },
                  (err: Error) => fail(errors.backendConnect(o.node, err.message)),
                );
              }
              else if (kind === AUTH.SASLFinal && scram) scram.verifyServerFinal(r.rest().toString());
              else throw errors.backendConnect(o.node, `server asked for an authentication method pgsplit does not speak (code ${kind})`);
              break;
            }
            case B.ParameterStatus: {
              const [k, v] = decodeParameterStatus(body);
              conn.parameters.set(k, v);
              conn.startupFrames.push(Buffer.from(frame));
              break;
            }
            case B.NoticeResponse:
              conn.startupFrames.push(Buffer.from(frame));
              break;
            case B.BackendKeyData: {
              const r = new BodyReader(body);
              conn.pid = r.int32();
              conn.secret = r.int32();
              break;
            }
            case B.ErrorResponse:
              fail(new ServerStartupError(Buffer.from(frame), decodeErrorFields(body)));
              break;
            case B.ReadyForQuery:
              done = true;
              clearTimeout(timer);
              slot.handler = () => {};
              conn.socket.removeListener('error', onError);
              conn.socket.removeListener('close', onClose);
              resolve(conn);
              break;
            default:
              throw errors.backendConnect(o.node, `unexpected message '${String.fromCharCode(type)}' during startup`);
          }
        } catch (err) {
          fail(err instanceof ProxyError ? err : errors.backendConnect(o.node, (err as Error).message));
        }
      },
    };
    const scanner = new FrameScanner(collectAll(), sink, 1 << 20);
    const onData = (chunk: Buffer) => {
      try {
        scanner.push(chunk);
      } catch (err) {
        fail(errors.backendConnect(o.node, (err as Error).message));
      }
    };
    const onError = (err: Error) => fail(errors.backendConnect(o.node, `${err.message} (${o.host}:${o.port})`));
    const onClose = () => fail(errors.backendConnect(o.node, 'server closed the connection during startup'));
    const startup = () => {
      slot.handler = onData;
      conn.socket.write(encodeStartupMessage(o.params));
    };

    // TLS: SSLRequest first; the server answers one byte, 'S' (go ahead) or 'N' (no TLS here).
    const onSslResponse = (chunk: Buffer) => {
      if (done || !tlsSettings) return;
      const answer = chunk[0];
      // Bytes after the answer were not encrypted and could come from anyone on the path (CVE-2021-23222).
      if (chunk.length > 1) return fail(errors.backendConnect(o.node, 'server sent unencrypted data after its SSL response'));
      if (answer === 0x4e /* N */) {
        if (tlsSettings.mode === 'prefer') return startup();
        return fail(errors.backendConnect(o.node, `server does not support SSL, but TLS is required towards it (server_tls / nodes[].tls mode ${tlsSettings.mode})`));
      }
      if (answer !== 0x53 /* S */) return fail(errors.backendConnect(o.node, `server answered SSLRequest with '${String.fromCharCode(answer)}' instead of 'S' or 'N'`));
      slot.handler = () => {};
      raw.removeListener('error', onError);
      raw.removeListener('close', onClose);
      raw.on('error', () => {});
      const secure = tls.connect(tlsConnectOptions(tlsSettings, o.host, raw));
      conn.socket = secure;
      conn.tls = true;
      secure.on('error', (err) => fail(errors.backendConnect(o.node, `TLS with ${o.host}:${o.port} failed (mode ${tlsSettings.mode}): ${err.message}`)));
      secure.on('close', onClose);
      // From here on the TLS socket's 'data' events feed the same slot handler as the plain socket's reads did.
      slot.follow(secure);
      secure.once('secureConnect', () => {
        secure.removeAllListeners('error');
        secure.on('error', onError);
        startup();
      });
    };

    raw.on('error', onError);
    raw.on('close', onClose);
    raw.once('connect', () => {
      if (!tlsSettings) return startup();
      slot.handler = onSslResponse;
      raw.write(SSL_REQUEST_PACKET);
    });
  });
}

const SSL_REQUEST_PACKET = (() => {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(SSL_REQUEST, 4);
  return b;
})();

/** Send a CancelRequest for (pid, secret) to a server; best effort, like libpq's PQcancel. */
export function sendCancel(host: string, port: number, packet: Buffer, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => s.destroy(), timeoutMs);
    s.once('connect', () => s.end(packet));
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}
