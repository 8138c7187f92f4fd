// What the listener, the cancel registry and the admin side need of a client session, routing or relay alike.
import type { Cancellable } from './cancel-registry.js';
import type { ClientLimits } from './client-startup.js';
import type { ProxyError } from '../errors.js';
import type { ServerInfo } from '../backend/pool.js';

/** One client connection as the admin console lists it (SHOW CLIENTS). */
export interface ClientInfo {
  /** The BackendKeyData pid pgsplit gave the client. */
  pid: number;
  user: string;
  database: string;
  applicationName: string;
  /** host:port of the client; null once the socket has no peer. */
  address: string | null;
  /** idle, active (a statement runs), waiting (queued for a server, or held by PAUSE), in transaction, in failed transaction. */
  state: string;
  connectedAt: number;
  /** What keeps it on its primary connection (temp-table, listen …); empty when nothing does. */
  pins: string[];
  /** The node of the server connection serving it now, if any. */
  target: string | null;
  /** The replica it reads from (kept while usable). */
  replica: string | null;
  /** The server connections it holds now. */
  servers: ServerInfo[];
}

/** host:port of a socket's peer (IPv6 in brackets), or null. */
export function peerAddress(socket: { remoteAddress?: string; remotePort?: number }): string | null {
  const a = socket.remoteAddress;
  if (a === undefined) return null;
  return a.includes(':') ? `[${a}]:${socket.remotePort}` : `${a}:${socket.remotePort}`;
}

export interface ClientSession extends Cancellable {
  /** The BackendKeyData pgsplit gave the client. */
  readonly key: { pid: number; secret: number };
  readonly user: string;
  /** Pinned to its server connection by state that cannot move (always false for the relay, which owns its connection). */
  readonly pinned: boolean;
  /** The client was told it is in: read it from now on (`leftover`: bytes it sent ahead of that). */
  start(leftover: Buffer): void;
  /** Shutting down: end when idle (now, or after the transaction in progress). */
  drain(): void;
  /** Close the session if it has been idle longer than a configured timeout. */
  checkIdle(now: number, limits: ClientLimits): void;
  /** End it with this error. */
  end(err: ProxyError): void;
  /** Drop every socket now (the drain deadline passed). */
  destroy(): void;
  /** What the admin console shows of it. */
  info(): ClientInfo;
}
