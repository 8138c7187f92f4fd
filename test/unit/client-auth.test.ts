// Unit tests for SCRAM towards clients (frontend/auth.ts): an unknown user gets a mock challenge shaped like a real one.
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import { authenticateClient } from '../../src/frontend/auth.js';
import { HandshakeReader } from '../../src/frontend/handshake-reader.js';
import { saslInitialResponse, saslResponse } from '../../src/protocol/frontend-messages.js';
import { DEFAULT_ITERATIONS, mockScramKeys, ScramClient } from '../../src/protocol/scram.js';
import type { ProxyError } from '../../src/errors.js';

/** Just enough of a socket for the handshake: collects what the proxy writes. */
class FakeSocket extends EventEmitter {
  written: Buffer[] = [];
  write(b: Buffer): boolean {
    this.written.push(Buffer.from(b));
    this.emit('wrote');
    return true;
  }
}

/** Authentication request messages ('R') the proxy wrote: their code and payload. */
function authMessages(bufs: Buffer[]): { code: number; data: Buffer }[] {
  const all = Buffer.concat(bufs);
  const out: { code: number; data: Buffer }[] = [];
  for (let off = 0; off + 5 <= all.length; ) {
    const len = all.readInt32BE(off + 1);
    if (all[off] === 0x52) out.push({ code: all.readInt32BE(off + 5), data: all.subarray(off + 9, off + 1 + len) });
    off += 1 + len;
  }
  return out;
}

const users = new Map([['app', 'secret']]);

/** Runs one SCRAM exchange as `user` with `password`; returns the server-first message and the outcome. */
async function attempt(user: string, password: string): Promise<{ serverFirst: string; error: ProxyError | null; codes: number[] }> {
  const socket = new FakeSocket();
  const reader = new HandshakeReader(socket as unknown as net.Socket);
  const client = new ScramClient(password);
  const deadline = Date.now() + 10_000;
  const done = authenticateClient(socket as unknown as net.Socket, reader, 'scram-sha-256', user, users.get(user), deadline).then(
    () => null,
    (err: ProxyError) => err,
  );
  const nextAuth = async (code: number): Promise<Buffer> => {
    for (;;) {
      const m = authMessages(socket.written).find((x) => x.code === code);
      if (m) return m.data;
      await new Promise((r) => socket.once('wrote', r));
    }
  };
  await nextAuth(10); // AuthenticationSASL
  reader.push(saslInitialResponse('SCRAM-SHA-256', client.clientFirst()));
  const serverFirst = (await nextAuth(11)).toString();
  reader.push(saslResponse(await client.clientFinal(serverFirst)));
  const error = await done;
  return { serverFirst, error, codes: authMessages(socket.written).map((m) => m.code) };
}

const attrs = (msg: string) => new Map(msg.split(',').map((p) => [p[0], p.slice(2)] as [string, string]));
const shape = (serverFirst: string) => serverFirst.replace(/r=[^,]+/, 'r=…').replace(/s=[^,]+/, (s) => `s=<${Buffer.from(s.slice(2), 'base64').length} bytes>`);

describe('SCRAM towards clients', () => {
  it('lets a configured user in with the right password (SASLFinal, then AuthenticationOk)', async () => {
    const r = await attempt('app', 'secret');
    expect(r.error).toBeNull();
    expect(r.codes).toEqual([10, 11, 12, 0]);
  });

  it('gives an unknown user a server-first message of the same shape as a configured user', async () => {
    const known = await attempt('app', 'wrong');
    const unknown = await attempt('nobody_here', 'whatever');
    expect(shape(unknown.serverFirst)).toBe(shape(known.serverFirst));
    expect(shape(known.serverFirst)).toBe(`r=…,s=<16 bytes>,i=${DEFAULT_ITERATIONS}`);
    expect(attrs(unknown.serverFirst).get('r')!.length).toBe(attrs(known.serverFirst).get('r')!.length);
  });

  it('fails an unknown user only at the proof, with the same error as a wrong password', async () => {
    const known = await attempt('app', 'wrong');
    const unknown = await attempt('nobody_here', 'whatever');
    for (const r of [known, unknown]) {
      expect(r.codes).toEqual([10, 11]);
      expect(r.error?.sqlstate).toBe('28P01');
    }
    expect(unknown.error!.message).toBe(known.error!.message.replace('"app"', '"nobody_here"'));
  });

  it('gives the same salt to the same unknown name on every attempt, and different salts to different names', async () => {
    const salt = async (user: string) => attrs((await attempt(user, 'x')).serverFirst).get('s');
    const a1 = await salt('ghost_a');
    const a2 = await salt('ghost_a');
    const b = await salt('ghost_b');
    expect(a1).toBe(a2);
    expect(b).not.toBe(a1);
  });

  it('gives a configured user the same salt on every attempt too', async () => {
    const s1 = attrs((await attempt('app', 'wrong')).serverFirst).get('s');
    const s2 = attrs((await attempt('app', 'secret')).serverFirst).get('s');
    expect(s1).toBe(s2);
  });

  it('mock keys depend on the per-process secret', () => {
    const k1 = mockScramKeys('ghost', Buffer.alloc(32, 1));
    const k2 = mockScramKeys('ghost', Buffer.alloc(32, 2));
    expect(k1.salt.equals(k2.salt)).toBe(false);
    expect(k1.iterations).toBe(DEFAULT_ITERATIONS);
    expect(mockScramKeys('ghost', Buffer.alloc(32, 1)).salt.equals(k1.salt)).toBe(true);
  });
});
