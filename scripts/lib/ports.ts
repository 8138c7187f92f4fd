// Port helpers for the scripts: use a well-known port (6432, 9930) when it is free, otherwise any free loopback port.
import net from 'node:net';
import { freePort } from '../../test/harness/ports.js';

export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export async function preferredPort(port: number): Promise<number> {
  return (await isPortFree(port)) ? port : freePort();
}

export { freePort };
