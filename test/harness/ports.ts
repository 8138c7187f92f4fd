// Loopback TCP ports for test servers and scripts (PostgreSQL nodes, proxies, admin endpoints): free ones handed out once, a preferred one when it is free, and listening on one.
import net from 'node:net';

/** server.listen on host:port (0: any free port); resolves to the port bound, rejects on a listen error. */
export function listenOn(server: net.Server, port = 0, host = '127.0.0.1', exclusive = false): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive }, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : 0);
    });
  });
}

/** Binds host:port and releases it at once: the port that was bound (port 0: the one the kernel chose). */
async function bindAndRelease(port: number, host = '127.0.0.1'): Promise<number> {
  const srv = net.createServer();
  srv.unref();
  const bound = await listenOn(srv, port, host, true);
  await new Promise<void>((resolve, reject) => srv.close((err) => (err ? reject(err) : resolve())));
  return bound;
}

// The kernel may return a port we just released, so a second caller in the same process could get
// a port that a server started by the first caller has not bound yet.
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await bindAndRelease(0);
    if (port > 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: could not find an unused loopback port after 100 attempts');
}

export async function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return bindAndRelease(port, host).then(
    () => true,
    () => false,
  );
}

/** A well-known port (the demo's 6432, 9930) when it is free, otherwise any free loopback port. */
export async function preferredPort(port: number): Promise<number> {
  return (await isPortFree(port)) ? port : freePort();
}
