// Client authentication against the configured users: SCRAM-SHA-256, md5 or trust.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type net from 'node:net';
import { errors } from '../errors.js';
import { F } from '../protocol/codes.js';
import {
  authenticationMD5Password,
  authenticationOk,
  authenticationSASL,
  authenticationSASLContinue,
  authenticationSASLFinal,
} from '../protocol/backend-messages.js';
import { DEFAULT_ITERATIONS, deriveKeys, md5Password, ScramError, ScramServer, type ScramKeys } from '../protocol/scram.js';
import { BodyReader } from '../protocol/writer.js';
import type { HandshakeReader } from './handshake-reader.js';

export type AuthMethod = 'scram-sha-256' | 'md5' | 'trust';

// Deriving SCRAM keys costs a PBKDF2 run; keep one per (user, password) so reconnect storms stay cheap.
const keyCache = new Map<string, ScramKeys>();
function scramKeys(user: string, password: string): ScramKeys {
  const id = `${user}\0${password}`;
  let k = keyCache.get(id);
  if (!k) {
    const { salt, iterations, storedKey, serverKey } = deriveKeys(password, randomBytes(16), DEFAULT_ITERATIONS);
    k = { salt, iterations, storedKey, serverKey };
    if (keyCache.size > 10_000) keyCache.clear();
    keyCache.set(id, k);
  }
  return k;
}

async function passwordMessage(reader: HandshakeReader, deadline: number): Promise<Buffer> {
  const m = await reader.message(deadline);
  if (m.type !== F.Password) throw errors.protocolViolation(`expected a password message, got '${String.fromCharCode(m.type)}'`);
  return m.body;
}

function equalStrings(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Run the authentication exchange. `password` is the configured password, or undefined when the user is
 * not configured. Resolves after AuthenticationOk was sent; throws a ProxyError (28P01 …) otherwise.
 */
export async function authenticateClient(
  socket: net.Socket,
  reader: HandshakeReader,
  method: AuthMethod,
  user: string,
  password: string | undefined,
  deadline: number,
): Promise<void> {
  if (method === 'trust') {
    socket.write(authenticationOk());
    return;
  }
  if (method === 'md5') {
    const salt = randomBytes(4);
    socket.write(authenticationMD5Password(salt));
    const got = new BodyReader(await passwordMessage(reader, deadline)).cstring();
    if (password === undefined) throw errors.unknownUser(user);
    if (!equalStrings(got, md5Password(user, password, salt))) throw errors.authFailed(user);
    socket.write(authenticationOk());
    return;
  }
  socket.write(authenticationSASL(['SCRAM-SHA-256']));
  const initial = new BodyReader(await passwordMessage(reader, deadline));
  const mechanism = initial.cstring();
  if (mechanism !== 'SCRAM-SHA-256') throw errors.protocolViolation(`client selected an invalid SASL authentication mechanism "${mechanism}"`);
  const len = initial.int32();
  const clientFirst = (len >= 0 ? initial.bytes(len) : Buffer.alloc(0)).toString();
  // An unknown user still goes through the exchange with throwaway keys, so it looks like a bad password.
  const keys = scramKeys(password === undefined ? `\0unknown:${user}` : user, password ?? randomBytes(16).toString('hex'));
  const server = new ScramServer(keys);
  try {
    socket.write(authenticationSASLContinue(server.serverFirstMessage(clientFirst)));
    const clientFinal = (await passwordMessage(reader, deadline)).toString();
    const serverFinal = server.serverFinalMessage(clientFinal);
    if (serverFinal === null || password === undefined) throw errors.authFailed(user);
    socket.write(authenticationSASLFinal(serverFinal));
  } catch (err) {
    if (err instanceof ScramError) throw errors.protocolViolation(err.message);
    throw err;
  }
  socket.write(authenticationOk());
}
