// What the listener, the cancel registry and the admin side need of a client session, routing or relay alike.
import type { Cancellable } from './cancel-registry.js';
import type { ClientLimits } from './client-startup.js';
import type { ProxyError } from '../errors.js';

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
}
