// The client-facing TCP listener: accepts connections and drains sessions on shutdown.
import net from 'node:net';
import { acceptClient, type FrontendContext } from './client-startup.js';

export class Listener {
  private readonly server: net.Server;
  private drainingFlag = false;

  constructor(private readonly ctx: Omit<FrontendContext, 'draining'>) {
    const full: FrontendContext = { ...ctx, draining: () => this.drainingFlag };
    // Paused on connect so that acceptClient can move the handle into a socket that reads into its own buffer.
    this.server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
      void acceptClient(socket, full);
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.removeListener('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stop accepting, let sessions finish their transactions, force-close what is left at the deadline. */
  async drain(timeoutMs: number): Promise<void> {
    this.drainingFlag = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.ctx.sessions) s.drain();
    const deadline = Date.now() + timeoutMs;
    while (this.ctx.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of [...this.ctx.sessions]) s.destroy();
    await closed;
  }
}
