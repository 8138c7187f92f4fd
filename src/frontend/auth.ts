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
import { DEFAULT_ITERATIONS, deriveKeysAsync, md5Password, mockScramKeys, SALT_LENGTH, ScramError, ScramServer, type ScramKeys } from '../protocol/scram.js';
import { BodyReader } from '../protocol/writer.js';
import type { HandshakeReader } from './handshake-reader.js';

export type AuthMethod = 'scram-sha-256' | 'md5' | 'trust';

// A configured user's SCRAM keys, derived once per (user, password) with the async PBKDF2 and kept: every
// later login costs only HMACs, and the salt stays the same across attempts as PostgreSQL's stored one does.
// Only configured users get here (unknown names use mockScramKeys), so the map is bounded by the config;
// the clear guards against many reloads with changing passwords.
const keyCache = new Map<string, Promise<ScramKeys>>();
const MAX_CACHED_KEYS = 10_000;

function scramKeys(user: string, password: string): Promise<ScramKeys> {
  const id = `${user}\0${password}`;
  let k = keyCache.get(id);
  if (!k) {
    if (keyCache.size >= MAX_CACHED_KEYS) keyCache.clear();
    k = deriveKeysAsync(password, randomBytes(SALT_LENGTH), DEFAULT_ITERATIONS).then(({ salt, iterations, storedKey, serverKey }) => ({ salt, iterations, storedKey, serverKey }));
    k.catch(() => keyCache.delete(id));
    keyCache.set(id, k);
  }
  return k;
}

/** Start deriving the configured users' SCRAM keys ahead of their first login (when settings are built); returns `users`. */
export function prepareScramKeys<T extends ReadonlyMap<string, string>>(method: AuthMethod, users: T): T {
  if (method === 'scram-sha-256') for (const [user, password] of users) scramKeys(user, password).catch(() => {});
  return users;
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
  // An unknown user goes through the same exchange with mock keys (a salt fixed per name, the same iteration
  // count) and fails only at the proof, so it looks exactly like a wrong password. The mock keys are computed
  // for every user so that both paths do the same work.
  const mock = mockScramKeys(user);
  const keys = password === undefined ? mock : await scramKeys(user, password);
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
