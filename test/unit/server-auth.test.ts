// pgsplit authenticating to a server that misbehaves (a tiny fake server): SCRAM without SASLFinal, a wrong signature, a huge iteration count.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectServer } from '../../src/backend/connect.js';
import { backendTls } from '../../src/tls/backend-tls.js';
import { authenticationOk, authenticationSASL, authenticationSASLContinue, authenticationSASLFinal, readyForQuery } from '../../src/protocol/backend-messages.js';
import { deriveKeys, ScramServer } from '../../src/protocol/scram.js';
import type { ProxyError } from '../../src/errors.js';

type Behaviour = 'honest' | 'skip-final' | 'wrong-signature' | 'huge-iterations';

/** Reads length-prefixed messages: the untyped StartupMessage first, then typed ones. */
function messages(socket: net.Socket, onMessage: (body: Buffer) => void): void {
  let buf = Buffer.alloc(0);
  let startup = true;
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const head = startup ? 0 : 1;
      if (buf.length < head + 4) return;
      const len = buf.readInt32BE(head);
      if (buf.length < head + len) return;
      onMessage(buf.subarray(head + 4, head + len));
      buf = buf.subarray(head + len);
      startup = false;
    }
  });
}

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A server that asks for SCRAM-SHA-256 and then behaves as told; its stored password is "secret". */
async function fakeServer(behaviour: Behaviour): Promise<number> {
  const keys = deriveKeys('secret', Buffer.from('0123456789abcdef'), 4096);
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const scram = new ScramServer(behaviour === 'huge-iterations' ? { ...keys, iterations: 1_000_000_000 } : keys);
    let step = 0;
    messages(socket, (body) => {
      step++;
      if (step === 1) socket.write(authenticationSASL(['SCRAM-SHA-256']));
      else if (step === 2) {
        const mechEnd = body.indexOf(0);
        const clientFirst = body.subarray(mechEnd + 5).toString();
        socket.write(authenticationSASLContinue(scram.serverFirstMessage(clientFirst)));
      } else if (step === 3) {
        const final = scram.serverFinalMessage(body.toString());
        const ok = Buffer.concat([authenticationOk(), readyForQuery('I')]);
        if (behaviour === 'skip-final') socket.write(ok);
        else if (behaviour === 'wrong-signature') socket.write(Buffer.concat([authenticationSASLFinal(`v=${Buffer.alloc(32, 7).toString('base64')}`), ok]));
        else socket.write(Buffer.concat([authenticationSASLFinal(final!), ok]));
      }
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

const connect = (port: number, password = 'secret') =>
  connectServer({
    node: 'fake',
    host: '127.0.0.1',
    port,
    user: 'app',
    password,
    params: new Map([['user', 'app'], ['database', 'appdb']]),
    connectTimeout: 10_000,
  });

describe('SCRAM towards a server', () => {
  it('connects to an honest server (the fake server works)', async () => {
    const conn = await connect(await fakeServer('honest'));
    conn.socket.destroy();
  });

  it('refuses a server that sends AuthenticationOk without SASLFinal', async () => {
    const err = (await connect(await fakeServer('skip-final')).then(
      () => null,
      (e: ProxyError) => e,
    ))!;
    expect(err).not.toBeNull();
    expect(err.sqlstate).toBe('08006');
    expect(err.detail).toMatch(/AuthenticationOk without completing SCRAM/);
  });

  it('refuses a server whose SASLFinal signature is wrong', async () => {
    const err = await connect(await fakeServer('wrong-signature')).then(
      () => null,
      (e: ProxyError) => e,
    );
    expect(err?.detail).toMatch(/server signature does not match/);
  });

  it('refuses a server-sent iteration count above the bound instead of deriving keys for it', async () => {
    const err = await connect(await fakeServer('huge-iterations')).then(
      () => null,
      (e: ProxyError) => e,
    );
    expect(err?.detail).toMatch(/1000000000 SCRAM iterations/);
  });
});

describe('SSLRequest towards a server', () => {
  /** A server that answers SSLRequest with `answer` and then, when still talking, runs a trust login. */
  async function sslServer(answer: Buffer): Promise<number> {
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      let first = true;
      socket.on('data', () => {
        if (first) socket.write(answer);
        else socket.write(Buffer.concat([authenticationOk(), readyForQuery('I')]));
        first = false;
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as net.AddressInfo).port;
  }
  const tlsFor = (mode: 'prefer' | 'require') => backendTls({ mode }, 'server_tls');
  const connectTls = (port: number, mode: 'prefer' | 'require') =>
    connectServer({ node: 'fake', host: '127.0.0.1', port, user: 'app', password: null, params: new Map([['user', 'app']]), connectTimeout: 10_000, tls: tlsFor(mode) });

  it("continues in plaintext after 'N' only with mode prefer", async () => {
    const port = await sslServer(Buffer.from('N'));
    const conn = await connectTls(port, 'prefer');
    expect(conn.tls).toBe(false);
    conn.socket.destroy();
    const err = await connectTls(port, 'require').then(
      () => null,
      (e: ProxyError) => e,
    );
    expect(err?.detail).toMatch(/server does not support SSL, but TLS is required towards it \(server_tls \/ nodes\[\]\.tls mode require\)/);
  });

  it("refuses bytes that follow the server's 'S' before the TLS handshake", async () => {
    const port = await sslServer(Buffer.concat([Buffer.from('S'), authenticationOk()]));
    const err = await connectTls(port, 'require').then(
      () => null,
      (e: ProxyError) => e,
    );
    expect(err?.detail).toMatch(/unencrypted data after its SSL response/);
  });
});

