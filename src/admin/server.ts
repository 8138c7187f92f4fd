// The admin HTTP port: /metrics (Prometheus), /health (liveness), /ready (a primary is known), /status (JSON), POST /switchover.
import http from 'node:http';
import type net from 'node:net';
import type { Registry } from 'prom-client';
import type { Topology } from '../topology/topology.js';
import { SwitchoverRefused } from '../errors.js';

export interface AdminContext {
  registry: Registry;
  topology: Topology;
  status(): unknown;
  /** Planned promotion of a replica; rejects with SwitchoverRefused when it cannot be done. */
  switchover?(to: string): Promise<unknown>;
}

function readBody(req: http.IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      body += d;
      if (body.length > limit) reject(new SwitchoverRefused('request body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, code: number, type: string, body: string): void {
  res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

export class AdminServer {
  private readonly server: http.Server;

  constructor(private readonly ctx: AdminContext) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err) => send(res, 500, 'text/plain', `error: ${(err as Error).message}\n`));
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/switchover') {
      await this.switchover(req, res);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain', `method ${req.method} not allowed on ${path}\n`);
      return;
    }
    switch (path) {
      case '/metrics':
        send(res, 200, this.ctx.registry.contentType, await this.ctx.registry.metrics());
        return;
      case '/health':
        send(res, 200, 'text/plain', 'ok\n');
        return;
      case '/ready': {
        const p = this.ctx.topology.primary;
        if (p) send(res, 200, 'text/plain', `ready: primary is ${p.name}\n`);
        else send(res, 503, 'text/plain', 'not ready: no primary is known\n');
        return;
      }
      case '/status':
        send(res, 200, 'application/json', JSON.stringify(this.ctx.status(), null, 2) + '\n');
        return;
      default:
        send(res, 404, 'text/plain', 'not found; try /metrics, /health, /ready or /status\n');
    }
  }

  private async switchover(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const json = (code: number, body: unknown) => send(res, code, 'application/json', JSON.stringify(body) + '\n');
    if (req.method !== 'POST') return json(405, { error: 'use POST /switchover with {"to": "<node name>"}' });
    if (!this.ctx.switchover) return json(404, { error: 'switchover is not available' });
    let to: unknown;
    try {
      to = (JSON.parse((await readBody(req)) || '{}') as { to?: unknown }).to;
    } catch {
      return json(400, { error: 'the body must be JSON like {"to": "pg2"}' });
    }
    if (typeof to !== 'string' || to === '') return json(400, { error: 'missing "to": the name of the replica to promote' });
    try {
      const event = await this.ctx.switchover(to);
      json(200, { ok: true, event });
    } catch (err) {
      json(err instanceof SwitchoverRefused ? 409 : 500, { error: (err as Error).message });
    }
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

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}
