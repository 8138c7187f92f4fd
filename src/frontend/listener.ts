// The client-facing TCP listener: accepts connections, enforces idle timeouts, and drains sessions on shutdown.
import net from 'node:net';
import { acceptClient, acceptHandle, type FrontendContext } from './client-startup.js';

// How often idle sessions are looked for when a timeout is set (a quarter of it, within these bounds).
const SWEEP_MIN = 100;
const SWEEP_MAX = 1000;

export class Listener {
  private readonly server: net.Server;
  private drainingFlag = false;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweepEvery = 0;

  private readonly full: FrontendContext;

  constructor(private readonly ctx: Omit<FrontendContext, 'draining'>) {
    const full: FrontendContext = (this.full = { ...ctx, draining: () => this.drainingFlag });
    // Paused on connect so that acceptClient can move the handle into a socket that reads into its own buffer.
    this.server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
      acceptClient(socket, full).catch((err: unknown) => {
        // acceptClient handles its own errors; anything that escapes is a bug, and only this connection pays.
        ctx.log.error({ err: (err as Error)?.stack ?? String(err) }, 'client startup failed unexpectedly');
        socket.destroy();
      });
    });
    // After listen() an error (EMFILE on accept, …) must not take the process down.
    this.server.on('error', (err) => ctx.log.error({ err: err.message }, 'listener error'));
    this.scheduleSweep();
  }

  /** (Re)arm the idle sweep for the current limits; called at start and after a reload. */
  scheduleSweep(): void {
    const l = this.ctx.settings().limits;
    const shortest = Math.min(...[l.clientIdleTimeoutMs, l.idleTransactionTimeoutMs].filter((t) => t > 0));
    const every = Number.isFinite(shortest) ? Math.max(SWEEP_MIN, Math.min(SWEEP_MAX, Math.floor(shortest / 4))) : 0;
    if (every === this.sweepEvery) return;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    this.sweepEvery = every;
    if (every === 0) return;
    this.sweepTimer = setInterval(() => {
      const limits = this.ctx.settings().limits;
      const now = Date.now();
      for (const s of this.ctx.sessions) s.checkIdle(now, limits);
    }, every);
    this.sweepTimer.unref();
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

  /** A client connection accepted elsewhere (a worker's coordinator) and handed over as a raw TCP handle. */
  adopt(handle: unknown): void {
    acceptHandle(handle, this.full).catch((err: unknown) => {
      this.ctx.log.error({ err: (err as Error)?.stack ?? String(err) }, 'client startup failed unexpectedly');
    });
  }

  /** Stop accepting, let sessions finish their transactions, force-close what is left at the deadline. */
  async drain(timeoutMs: number): Promise<void> {
    this.drainingFlag = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.ctx.sessions) s.drain();
    const deadline = Date.now() + timeoutMs;
    while (this.ctx.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of [...this.ctx.sessions]) s.destroy();
    await closed;
  }
}
