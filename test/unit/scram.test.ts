// Unit tests for SCRAM-SHA-256 (client against server, tampering, RFC 7677 and PostgreSQL vectors) and md5 password hashing.
import { describe, it, expect } from 'vitest';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { DEFAULT_ITERATIONS, deriveKeys, deriveKeysAsync, MAX_SERVER_ITERATIONS, md5Password, ScramClient, ScramError, ScramServer } from '../../src/protocol/scram.js';

const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
const md5hex = (b: Buffer | string): string => createHash('md5').update(b).digest('hex');

function attrs(msg: string): Map<string, string> {
  return new Map(msg.split(',').map((p) => [p.slice(0, 1), p.slice(2)] as [string, string]));
}

/** One full exchange; returns every message so tests can tamper with any step. */
async function exchange(clientPassword: string, serverPassword: string, iterations = DEFAULT_ITERATIONS, salt = randomBytes(16)) {
  const keys = deriveKeys(serverPassword, salt, iterations);
  const client = new ScramClient(clientPassword);
  const server = new ScramServer({ salt: keys.salt, iterations: keys.iterations, storedKey: keys.storedKey, serverKey: keys.serverKey });
  const clientFirst = client.clientFirst();
  const serverFirst = server.serverFirstMessage(clientFirst);
  const clientFinal = await client.clientFinal(serverFirst);
  const serverFinal = server.serverFinalMessage(clientFinal);
  return { client, server, clientFirst, serverFirst, clientFinal, serverFinal };
}

describe('ScramClient ⇄ ScramServer', () => {
  it.each([
    ['ascii', 'secret', 4096],
    ['one iteration', 'secret', 1],
    ['punctuation that is SCRAM syntax', 'a,b=c,,n=x,r=y', 4096],
    ['unicode', 'pässwörd 🐘', 4096],
    ['long', 'x'.repeat(1000), 16],
    ['NFKC-equivalent ligature', '\ufb01sh', 16],
  ])('same password succeeds and verifies the server (%s)', async (_n, password, iterations) => {
    const ex = await exchange(password, password, iterations);
    expect(ex.serverFinal).not.toBeNull();
    expect(ex.serverFinal).toMatch(/^v=[A-Za-z0-9+/]{43}=$/);
    expect(() => ex.client.verifyServerFinal(ex.serverFinal!)).not.toThrow();
  });

  it('messages have the RFC 5802 shape PostgreSQL expects', async () => {
    const salt = Buffer.from('0123456789abcdef');
    const ex = await exchange('pw', 'pw', 4096, salt);
    expect(ex.clientFirst).toMatch(/^n,,n=[^,]*,r=[A-Za-z0-9+/=]{18,}$/);
    const cNonce = attrs(ex.clientFirst.slice(3)).get('r')!;
    const sf = attrs(ex.serverFirst);
    expect(sf.get('r')!.startsWith(cNonce)).toBe(true);
    expect(sf.get('r')!.length).toBeGreaterThan(cNonce.length);
    expect(sf.get('s')).toBe(salt.toString('base64'));
    expect(sf.get('i')).toBe('4096');
    expect(ex.clientFinal).toMatch(/^c=biws,r=[^,]+,p=[A-Za-z0-9+/]{43}=$/);
    expect(attrs(ex.clientFinal).get('r')).toBe(sf.get('r'));
  });

  it('every exchange uses fresh nonces', async () => {
    const a = new ScramClient('pw').clientFirst();
    const b = new ScramClient('pw').clientFirst();
    expect(a).not.toBe(b);
  });

  it.each([
    ['wrong password', 'wrong'],
    ['case differs', 'Secret'],
    ['empty', ''],
    ['prefix', 'secre'],
  ])('%s → serverFinalMessage returns null', async (_n, pw) => {
    expect((await exchange(pw, 'secret', 64)).serverFinal).toBeNull();
  });

  it('a proof of the wrong length is rejected (null), not a crash', async () => {
    const keys = deriveKeys('secret', randomBytes(16), 16);
    const server = new ScramServer(keys);
    const client = new ScramClient('secret');
    const sf = server.serverFirstMessage(client.clientFirst());
    const cf = await client.clientFinal(sf);
    const withoutProof = cf.slice(0, cf.lastIndexOf(',p='));
    expect(server.serverFinalMessage(`${withoutProof},p=${Buffer.alloc(16).toString('base64')}`)).toBeNull();
  });

  it('a flipped proof bit is rejected', async () => {
    const keys = deriveKeys('secret', randomBytes(16), 16);
    const server = new ScramServer(keys);
    const client = new ScramClient('secret');
    const cf = await client.clientFinal(server.serverFirstMessage(client.clientFirst()));
    const i = cf.lastIndexOf(',p=');
    const proof = Buffer.from(cf.slice(i + 3), 'base64');
    proof[0] ^= 1;
    expect(server.serverFinalMessage(`${cf.slice(0, i)},p=${proof.toString('base64')}`)).toBeNull();
  });
});

describe('ScramServer: tampering and malformed client messages', () => {
  const setup = async () => {
    const keys = deriveKeys('secret', randomBytes(16), 16);
    const server = new ScramServer(keys);
    const client = new ScramClient('secret');
    const sf = server.serverFirstMessage(client.clientFirst());
    const cf = await client.clientFinal(sf);
    return { server, client, sf, cf };
  };

  it('client-final with a different nonce → ScramError', async () => {
    const { server, cf } = await setup();
    const r = attrs(cf).get('r')!;
    expect(() => server.serverFinalMessage(cf.replace(`r=${r}`, `r=${r}x`))).toThrow(ScramError);
    expect(() => server.serverFinalMessage(cf.replace(`r=${r}`, `r=${r.slice(0, -1)}`))).toThrow(ScramError);
  });

  it('client-final with only the client part of the nonce → ScramError', async () => {
    const { server, client, cf } = await setup();
    const cNonce = attrs(client.clientFirst().slice(3)).get('r')!;
    const r = attrs(cf).get('r')!;
    expect(() => server.serverFinalMessage(cf.replace(`r=${r}`, `r=${cNonce}`))).toThrow(ScramError);
  });

  it.each([
    ['channel binding data for another header', 'c=eSws'], // base64('y,,')
    ['missing channel binding', null],
    ['-PLUS style binding', 'c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws'],
  ])('client-final with %s → ScramError', async (_n, replacement) => {
    const { server, cf } = await setup();
    const tampered = replacement === null ? cf.replace('c=biws,', '') : cf.replace('c=biws', replacement);
    expect(() => server.serverFinalMessage(tampered)).toThrow(ScramError);
  });

  it('client-final without a proof → ScramError', async () => {
    const { server, cf } = await setup();
    expect(() => server.serverFinalMessage(cf.slice(0, cf.lastIndexOf(',p=')))).toThrow(ScramError);
  });

  it.each([
    ['tls-server-end-point', 'p=tls-server-end-point,,n=,r=abcdef'],
    ['tls-unique with authzid', 'p=tls-unique,a=bob,n=,r=abcdef'],
  ])("channel-binding 'p=' gs2 header (%s) → ScramError naming channel binding", async (_n, first) => {
    const server = new ScramServer(deriveKeys('x', randomBytes(16), 1));
    expect(() => server.serverFirstMessage(first)).toThrow(ScramError);
    expect(() => server.serverFirstMessage(first)).toThrow(/channel binding/);
  });

  it.each([
    ['empty', ''],
    ['no gs2 header', 'n=,r=abc'],
    ['unknown flag', 'x,,n=,r=abc'],
    ['no nonce', 'n,,n=user'],
    ['empty nonce', 'n,,n=,r='],
  ])('malformed client-first (%s) → ScramError', async (_n, first) => {
    const server = new ScramServer(deriveKeys('x', randomBytes(16), 1));
    expect(() => server.serverFirstMessage(first)).toThrow(ScramError);
  });

  it("accepts the 'y' flag (client supports binding, thinks the server does not) with c=base64('y,,')", async () => {
    const keys = deriveKeys('pw', randomBytes(16), 16);
    const server = new ScramServer(keys);
    // Build the client side by hand for the y,, header.
    const cNonce = 'fyko+d2lbbFgONRv9qkxdawL';
    const first = `y,,n=,r=${cNonce}`;
    const sf = server.serverFirstMessage(first);
    const r = attrs(sf).get('r')!;
    const withoutProof = `c=${Buffer.from('y,,').toString('base64')},r=${r}`;
    const authMessage = `n=,r=${cNonce},${sf},${withoutProof}`;
    const proof = Buffer.from(keys.clientKey.map((b, i) => b ^ hmac(keys.storedKey, authMessage)[i]));
    const final = server.serverFinalMessage(`${withoutProof},p=${proof.toString('base64')}`);
    expect(final).toBe(`v=${hmac(keys.serverKey, authMessage).toString('base64')}`);
  });
});

describe('ScramClient: checks on the server', () => {
  it('a server nonce that does not extend the client nonce → ScramError', async () => {
    const client = new ScramClient('pw');
    client.clientFirst();
    await expect(client.clientFinal('r=somebodyElsesNonce,s=c2FsdA==,i=4096')).rejects.toThrow(ScramError);
  });

  it.each([
    ['no nonce', 's=c2FsdA==,i=4096'],
    ['no salt', 'r=@,i=4096'],
    ['no iterations', 'r=@,s=c2FsdA=='],
    ['zero iterations', 'r=@,s=c2FsdA==,i=0'],
    ['non-numeric iterations', 'r=@,s=c2FsdA==,i=many'],
    ['fractional iterations', 'r=@,s=c2FsdA==,i=1.5'],
  ])('malformed server-first (%s) → ScramError', async (_n, tmpl) => {
    const client = new ScramClient('pw');
    const nonce = attrs(client.clientFirst().slice(3)).get('r')!;
    await expect(client.clientFinal(tmpl.replace('@', nonce + 'srv'))).rejects.toThrow(ScramError);
  });

  it('a server nonce equal to the client nonce (no server part) → ScramError', async () => {
    const client = new ScramClient('pw');
    const nonce = attrs(client.clientFirst().slice(3)).get('r')!;
    await expect(client.clientFinal(`r=${nonce},s=c2FsdA==,i=4096`)).rejects.toThrow(ScramError);
  });

  it('an iteration count above the bound → ScramError before any key derivation', async () => {
    const client = new ScramClient('pw');
    const nonce = attrs(client.clientFirst().slice(3)).get('r')!;
    await expect(client.clientFinal(`r=${nonce}srv,s=c2FsdA==,i=${MAX_SERVER_ITERATIONS + 1}`)).rejects.toThrow(/SCRAM iterations/);
    await expect(client.clientFinal(`r=${nonce}srv,s=c2FsdA==,i=1000000000`)).rejects.toThrow(ScramError);
    // The bound itself and PostgreSQL's default are accepted.
    expect(MAX_SERVER_ITERATIONS).toBeGreaterThanOrEqual(DEFAULT_ITERATIONS);
    await expect(new ScramClient('pw', 8).clientFinal(`r=${nonce}srv,s=c2FsdA==,i=9`)).rejects.toThrow(ScramError);
  });

  it('serverVerified is true only after a server-final-message with the right signature', async () => {
    const ex = await exchange('pw', 'pw', 16);
    expect(ex.client.serverVerified).toBe(false);
    expect(() => ex.client.verifyServerFinal(`v=${randomBytes(32).toString('base64')}`)).toThrow(ScramError);
    expect(ex.client.serverVerified).toBe(false);
    ex.client.verifyServerFinal(ex.serverFinal!);
    expect(ex.client.serverVerified).toBe(true);
  });

  it('deriveKeysAsync gives the same keys as deriveKeys', async () => {
    const salt = randomBytes(16);
    const a = deriveKeys('pässwörd', salt, 64);
    const b = await deriveKeysAsync('pässwörd', salt, 64);
    expect(b.storedKey.equals(a.storedKey) && b.serverKey.equals(a.serverKey) && b.clientKey.equals(a.clientKey)).toBe(true);
  });

  it('verifyServerFinal with a wrong signature throws ScramError', async () => {
    const ex = await exchange('pw', 'pw', 16);
    const sig = Buffer.from(ex.serverFinal!.slice(2), 'base64');
    sig[31] ^= 0x80;
    expect(() => ex.client.verifyServerFinal(`v=${sig.toString('base64')}`)).toThrow(ScramError);
    expect(() => ex.client.verifyServerFinal(`v=${randomBytes(32).toString('base64')}`)).toThrow(/server signature does not match/);
  });

  it('verifyServerFinal rejects a signature from a server that derived keys from another password', async () => {
    // The server "accepts" any proof but signs with keys for a different password.
    const client = new ScramClient('right');
    const keysRight = deriveKeys('right', randomBytes(16), 16);
    const server = new ScramServer(keysRight);
    const sf = server.serverFirstMessage(client.clientFirst());
    const cf = await client.clientFinal(sf);
    const other = deriveKeys('wrong', keysRight.salt, 16);
    const authMessage = `${client.clientFirst().slice(3)},${sf},${cf.slice(0, cf.lastIndexOf(',p='))}`;
    expect(() => client.verifyServerFinal(`v=${hmac(other.serverKey, authMessage).toString('base64')}`)).toThrow(ScramError);
    expect(() => client.verifyServerFinal(server.serverFinalMessage(cf)!)).not.toThrow();
  });

  it.each([
    ['error from the server', 'e=invalid-proof'],
    ['empty', ''],
    ['short signature', 'v=AAAA'],
  ])('verifyServerFinal: %s → ScramError', async (_n, msg) => {
    const ex = await exchange('pw', 'pw', 16);
    expect(() => ex.client.verifyServerFinal(msg)).toThrow(ScramError);
  });

  it('verifyServerFinal before clientFinal → ScramError', async () => {
    const client = new ScramClient('pw');
    client.clientFirst();
    expect(() => client.verifyServerFinal(`v=${randomBytes(32).toString('base64')}`)).toThrow(ScramError);
  });
});

describe('deriveKeys', () => {
  it.each([
    ['pencil', 'W22ZaJ0SNY7soEsUEjb6gQ==', 4096],
    ['secret', 'c2FsdHNhbHRzYWx0', 1],
    ['', 'AAAA', 2],
    ['pässwörd', 'bk+zbqehefVf+snLLu0OmQ==', 100],
  ])('matches a direct pbkdf2/hmac computation (%j)', async (password, saltB64, iterations) => {
    const salt = Buffer.from(saltB64, 'base64');
    const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
    const clientKey = hmac(salted, 'Client Key');
    const k = deriveKeys(password, salt, iterations);
    expect(k.salt.equals(salt)).toBe(true);
    expect(k.iterations).toBe(iterations);
    expect(k.clientKey.equals(clientKey)).toBe(true);
    expect(k.storedKey.equals(sha256(clientKey))).toBe(true);
    expect(k.serverKey.equals(hmac(salted, 'Server Key'))).toBe(true);
  });

  // RFC 7677 section 3. ScramClient draws its own nonce (no way to inject one), so the exchange itself
  // cannot be replayed; instead the keys deriveKeys produces must reproduce the vector's proof and signature.
  it('reproduces the RFC 7677 test vector (ClientProof and ServerSignature)', async () => {
    const clientFirstBare = 'n=user,r=rOprNGfwEbeRWgbNEkqO';
    const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
    const withoutProof = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
    const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
    const k = deriveKeys('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096);
    const sig = hmac(k.storedKey, authMessage);
    const proof = Buffer.from(k.clientKey.map((b, i) => b ^ sig[i]));
    expect(proof.toString('base64')).toBe('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=');
    expect(hmac(k.serverKey, authMessage).toString('base64')).toBe('6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
  });

  it('ScramServer accepts the RFC 7677 client proof shape with the RFC keys', async () => {
    const k = deriveKeys('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096);
    const server = new ScramServer(k);
    const sf = server.serverFirstMessage('n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
    expect(sf).toMatch(/^r=rOprNGfwEbeRWgbNEkqO[^,]+,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096$/);
    const r = attrs(sf).get('r')!;
    const withoutProof = `c=biws,r=${r}`;
    const authMessage = `n=user,r=rOprNGfwEbeRWgbNEkqO,${sf},${withoutProof}`;
    const proof = Buffer.from(k.clientKey.map((b, i) => b ^ hmac(k.storedKey, authMessage)[i]));
    expect(server.serverFinalMessage(`${withoutProof},p=${proof.toString('base64')}`)).toBe(
      `v=${hmac(k.serverKey, authMessage).toString('base64')}`,
    );
  });

  // Verifiers PostgreSQL 15 itself stored for CREATE ROLE … PASSWORD '<password>' (pg_authid.rolpassword,
  // 'SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>'). The server runs SASLprep (RFC 4013) on the
  // password: ASCII passes unchanged, non-ASCII space maps to ' ', "commonly mapped to nothing" characters
  // (U+00AD, U+200B, …) are deleted, then NFKC; when the result contains a prohibited character the raw
  // password is used. libpq does the same on the client side, so pgsplit must too to interoperate.
  describe.each([
    ['ascii', 'pencil', 'SCRAM-SHA-256$4096:bk+zbqehefVf+snLLu0OmQ==$YlMGN/jCX+6fagJLXeqYQcgmuCALJOGyNNhuTLsa0Pk=:loOjdxBFBWWHmhHG88OxyjRjHVhmUAHMWTUGblloyOI='],
    ['ascii with a control character (ASCII is not prepped)', 'ab\u0007', 'SCRAM-SHA-256$4096:zw0ULAoNFoS4xv4nYE1hQQ==$ozR2tpw5nrYVK0Q6l2dEwmHVLzE23BgdJ9qfAaxPU+E=:JGtNoLDAaGiVa8FlU373QceBrSNsuhpy4vxRiy0JWwI='],
    ['ligature (NFKC)', '\ufb01sh', 'SCRAM-SHA-256$4096:e9BYzTTETXotoNxkdzZRgg==$Q1kV16CTOwxpeTjnKYZ9oxFUhZm1Do8lFsWzqw/tmHU=:D1M7rRTx9US8ZzNO7LaHCqfv2TFv3Oc5YV7vOwKKLJQ='],
    ['no-break space (mapped to space)', 'pen\u00a0cil', 'SCRAM-SHA-256$4096:b7ah0IHKmoMVmoiBk/BG2g==$5nGbVQKt30FOYcu8rjrKPvitDCM7AN4LailgtK0oiZ0=:RUpASDkACAyRq6FkyKk5M670vJoIWFIoPp7fPK+ZP3k='],
    ['soft hyphen (mapped to nothing)', 'pen\u00adcil', 'SCRAM-SHA-256$4096:CHe4jV7jWW7SgjmKDqRoQQ==$TBONAIsgXziO+YWer9DCzPpFbSuCE2Zh+a+uSb1JOJs=:wejwzA0z1Wmcamf+FYDA92p9UKoz/A68lsgPk6CrKXE='],
    ['zero-width space (mapped to nothing)', 'pen\u200bcil', 'SCRAM-SHA-256$4096:gJEbfLkxsooFVLI49EPQlg==$iaBZpzmf343vfZXcGNtT6YrNArbskbv9VNVWUo61HgY=:/hlSNAXIUX41aaa1gk7l2I7Yr35GfowUbwH3fXN4OWs='],
    ['non-ASCII with a prohibited character (raw password used)', '\ufb01\u0007', 'SCRAM-SHA-256$4096:cFVHy2UJGkF+VcdE4IilJw==$osDQjwC98dvS0Vi3yAI9MtwMKLAJsLC/1JHrI6wjB30=:+gV3mZVILBxUVkTYLaOaHCIB4OWC4ldSaAu2njgJ9VQ='],
  ])('matches the verifier PostgreSQL stored: %s', (_n, password, verifier) => {
    const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier)!;
    const [iterations, salt, storedKey, serverKey] = [Number(m[1]), m[2], m[3], m[4]];
    const keys = () => deriveKeys(password, Buffer.from(salt, 'base64'), iterations);
    it('StoredKey', () => expect(keys().storedKey.toString('base64')).toBe(storedKey));
    it('ServerKey', () => expect(keys().serverKey.toString('base64')).toBe(serverKey));
  });
});

describe('md5Password', () => {
  it.each([
    ['user', 'pw', Buffer.from([0x01, 0x02, 0x03, 0x04])],
    ['md5user', 'md5secret', Buffer.from([0xde, 0xad, 0xbe, 0xef])],
    ['jürgen', 'pässwörd', Buffer.from([0x00, 0xff, 0x7f, 0x80])],
    ['u', '', Buffer.from([0, 0, 0, 0])],
  ])("md5Password(%j, %j, salt) = 'md5' + md5(md5(password + user) + salt)", async (user, pw, salt) => {
    const inner = md5hex(Buffer.from(pw + user, 'utf8'));
    const want = 'md5' + md5hex(Buffer.concat([Buffer.from(inner, 'ascii'), salt]));
    const got = md5Password(user, pw, salt);
    expect(got).toBe(want);
    expect(got).toMatch(/^md5[0-9a-f]{32}$/);
  });

  it('a known value (computed with md5sum)', async () => {
    // printf pwuser | md5sum → 871c429757b7a0bf1654fad112b77bd4; printf '871c…bd4abcd' | md5sum → d79d…495f
    expect(md5Password('user', 'pw', Buffer.from('abcd'))).toBe('md5d79d8448c33606d692ded4b89951495f');
  });

  it('depends on the salt', async () => {
    expect(md5Password('user', 'pw', Buffer.from([1, 2, 3, 4]))).not.toBe(md5Password('user', 'pw', Buffer.from([1, 2, 3, 5])));
  });
});
