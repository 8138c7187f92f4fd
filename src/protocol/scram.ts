// SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL uses it: the client side towards servers, the server side towards clients.
import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import saslprepLib from '@mongodb-js/saslprep';

const hmac = (key: Buffer, data: string | Buffer): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();
const xor = (a: Buffer, b: Buffer): Buffer => {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
};

export const DEFAULT_ITERATIONS = 4096;

export interface ScramKeys {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

/**
 * Prepare a password as PostgreSQL's pg_saslprep() does: ASCII is used as is; otherwise SASLprep
 * (RFC 4013), and when that rejects the string (prohibited characters) the raw password is used.
 */
export function preparePassword(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  try {
    return saslprepLib(password, { allowUnassigned: true });
  } catch {
    return password;
  }
}

type DerivedKeys = ScramKeys & { clientKey: Buffer };

function keysFromSalted(salted: Buffer, salt: Buffer, iterations: number): DerivedKeys {
  const clientKey = hmac(salted, 'Client Key');
  return { salt, iterations, clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/** Synchronous derivation: blocks the event loop for the whole PBKDF2 run; for tests and tools only. */
export function deriveKeys(password: string, salt: Buffer, iterations: number): DerivedKeys {
  return keysFromSalted(pbkdf2Sync(preparePassword(password), salt, iterations, 32, 'sha256'), salt, iterations);
}

const pbkdf2Async = promisify(pbkdf2);

/** The same keys as deriveKeys, with PBKDF2 run on libuv's thread pool so the event loop keeps serving. */
export async function deriveKeysAsync(password: string, salt: Buffer, iterations: number): Promise<DerivedKeys> {
  return keysFromSalted(await pbkdf2Async(preparePassword(password), salt, iterations, 32, 'sha256'), salt, iterations);
}

export const SALT_LENGTH = 16;
// Per-process secret behind the mock challenges for unknown users (PostgreSQL's mock_auth_nonce).
const MOCK_SECRET = randomBytes(32);

/**
 * Keys for a user that does not exist, as PostgreSQL's scram_mock_salt does it: the salt is derived from the
 * user name and a per-process secret (the same name gets the same salt every time, like a real user's stored
 * salt), the iteration count is the real one, and the keys are random-looking values no proof can match.
 * Costs three HMACs, no PBKDF2 and no memory per name.
 */
export function mockScramKeys(user: string, secret: Buffer = MOCK_SECRET): ScramKeys {
  return {
    salt: hmac(secret, `salt\0${user}`).subarray(0, SALT_LENGTH),
    iterations: DEFAULT_ITERATIONS,
    storedKey: hmac(secret, `stored\0${user}`),
    serverKey: hmac(secret, `server\0${user}`),
  };
}

function attributes(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) out.set(part[0], part.slice(2));
  }
  return out;
}

export class ScramError extends Error {}

/**
 * The most PBKDF2 iterations pgsplit runs for a server (PostgreSQL's default is 4096): a server, or anyone in
 * the middle, could otherwise make every new server connection burn seconds of CPU.
 */
export const MAX_SERVER_ITERATIONS = 100_000;

/** Client side: one instance per authentication exchange with a server. */
export class ScramClient {
  private readonly nonce = randomBytes(18).toString('base64');
  private readonly firstBare = `n=*,r=${this.nonce}`;
  private expectedServerSignature: Buffer | null = null;
  private verified = false;

  constructor(
    private readonly password: string,
    private readonly maxIterations = MAX_SERVER_ITERATIONS,
  ) {}

  clientFirst(): string {
    return `n,,${this.firstBare}`;
  }

  /** Handle server-first-message; returns client-final-message (PBKDF2 runs off the event loop). */
  async clientFinal(serverFirst: string): Promise<string> {
    const a = attributes(serverFirst);
    const nonce = a.get('r');
    const salt = a.get('s');
    const iterations = Number(a.get('i'));
    if (!nonce || !salt || !Number.isInteger(iterations) || iterations < 1) throw new ScramError('malformed SCRAM server-first-message');
    if (!nonce.startsWith(this.nonce) || nonce.length === this.nonce.length) throw new ScramError('SCRAM server nonce does not extend the client nonce');
    if (iterations > this.maxIterations) throw new ScramError(`server asks for ${iterations} SCRAM iterations; pgsplit runs at most ${this.maxIterations}`);
    const keys = await deriveKeysAsync(this.password, Buffer.from(salt, 'base64'), iterations);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.firstBare},${serverFirst},${withoutProof}`;
    const proof = xor(keys.clientKey, hmac(keys.storedKey, authMessage));
    this.expectedServerSignature = hmac(keys.serverKey, authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  verifyServerFinal(serverFinal: string): void {
    const v = attributes(serverFinal).get('v');
    if (!v || !this.expectedServerSignature) throw new ScramError('malformed SCRAM server-final-message');
    const got = Buffer.from(v, 'base64');
    if (got.length !== this.expectedServerSignature.length || !timingSafeEqual(got, this.expectedServerSignature)) {
      throw new ScramError('server signature does not match: the server does not know the password');
    }
    this.verified = true;
  }

  /** The server proved it knows the password (a server-final-message with the right signature was seen). */
  get serverVerified(): boolean {
    return this.verified;
  }
}

/** Server side: one instance per client authentication exchange. */
export class ScramServer {
  private clientFirstBare = '';
  private serverFirst = '';
  private gs2Header = '';
  private nonce = '';

  constructor(private readonly keys: ScramKeys) {}

  /** Handle client-first-message; returns server-first-message. */
  serverFirstMessage(clientFirst: string): string {
    const m = /^([ny]),(a=[^,]*)?,(.*)$/.exec(clientFirst);
    if (!m) {
      if (clientFirst.startsWith('p=')) throw new ScramError('channel binding is not supported by pgsplit; use SCRAM-SHA-256 without -PLUS');
      throw new ScramError('malformed SCRAM client-first-message');
    }
    this.gs2Header = clientFirst.slice(0, clientFirst.length - m[3].length);
    this.clientFirstBare = m[3];
    const clientNonce = attributes(this.clientFirstBare).get('r');
    if (!clientNonce) throw new ScramError('SCRAM client-first-message has no nonce');
    this.nonce = clientNonce + randomBytes(18).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${this.keys.salt.toString('base64')},i=${this.keys.iterations}`;
    return this.serverFirst;
  }

  /** Handle client-final-message; returns server-final-message, or null when the proof is wrong. */
  serverFinalMessage(clientFinal: string): string | null {
    const a = attributes(clientFinal);
    const proofB64 = a.get('p');
    if (a.get('c') !== Buffer.from(this.gs2Header).toString('base64') || a.get('r') !== this.nonce || !proofB64) {
      throw new ScramError('malformed or mismatched SCRAM client-final-message');
    }
    const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const proof = Buffer.from(proofB64, 'base64');
    if (proof.length !== 32) return null;
    const clientKey = xor(proof, hmac(this.keys.storedKey, authMessage));
    if (!timingSafeEqual(sha256(clientKey), this.keys.storedKey)) return null;
    return `v=${hmac(this.keys.serverKey, authMessage).toString('base64')}`;
  }
}

/** md5 password hashing as PostgreSQL's `md5` method does it. */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user).digest('hex');
  return 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex');
}
