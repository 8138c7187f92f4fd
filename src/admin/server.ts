// The admin HTTP port: /metrics (Prometheus), /health (liveness), /ready (a primary is known), /status (JSON).
import http from 'node:http';
import type net from 'node:net';
import type { Registry } from 'prom-client';
import type { Topology } from '../topology/topology.js';

export interface AdminContext {
  registry: Registry;
  topology: Topology;
  status(): unknown;
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
