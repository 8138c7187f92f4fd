// Maps the BackendKeyData pgsplit hands to each client to the server connection running that client's queries.
import { randomInt, timingSafeEqual } from 'node:crypto';

export interface Cancellable {
  /** Forward a cancel to whatever server is running this session's query now. */
  cancel(): void;
}

/** With workers, a key's pid carries its owner: bits 24..30 hold the worker index + 1, the low 24 bits a number. */
const OWNER_SHIFT = 24;
const LOCAL_MASK = (1 << OWNER_SHIFT) - 1;

/** The worker whose session a pid belongs to, or null for a pid of a single-process pgsplit (or a forged one). */
export function pidOwner(pid: number): number | null {
  const o = Math.floor(pid / (1 << OWNER_SHIFT)) - 1;
  return o >= 0 && o < 127 ? o : null;
}

export interface CancelRegistryOptions {
  /** This worker's index: every pid it hands out says so (pidOwner). */
  owner?: number;
  /** A cancel whose pid belongs to another worker goes there (through the coordinator). */
  forward?(owner: number, pid: number, secret: number): void;
}

export class CancelRegistry {
  private next: number;
  private readonly sessions = new Map<number, { secret: number; target: Cancellable }>();

  constructor(private readonly options: CancelRegistryOptions = {}) {
    this.next = options.owner === undefined ? randomInt(1, 1 << 30) : randomInt(1, LOCAL_MASK);
  }

  private nextPid(pid: number): number {
    return this.options.owner === undefined ? (pid % 0x7ffffffe) + 1 : (pid & LOCAL_MASK) === LOCAL_MASK ? pid - LOCAL_MASK + 1 : pid + 1;
  }

  register(target: Cancellable): { pid: number; secret: number } {
    const owner = this.options.owner;
    let pid = owner === undefined ? this.next : (owner + 1) * (1 << OWNER_SHIFT) + (this.next & LOCAL_MASK || 1);
    while (this.sessions.has(pid)) pid = this.nextPid(pid);
    this.next = this.nextPid(pid);
    const secret = randomInt(-0x80000000, 0x7fffffff);
    this.sessions.set(pid, { secret, target });
    return { pid, secret };
  }

  unregister(pid: number): void {
    this.sessions.delete(pid);
  }

  /** Returns whether the key matched a live session (the client is never told, as in PostgreSQL). */
  cancel(pid: number, secret: number): boolean {
    const owner = this.options.owner;
    if (owner !== undefined) {
      const to = pidOwner(pid);
      if (to !== null && to !== owner) {
        this.options.forward?.(to, pid, secret);
        return false;
      }
    }
    const s = this.sessions.get(pid);
    if (!s) return false;
    const a = Buffer.alloc(4);
    const b = Buffer.alloc(4);
    a.writeInt32BE(s.secret);
    b.writeInt32BE(secret);
    if (!timingSafeEqual(a, b)) return false;
    s.target.cancel();
    return true;
  }
}
