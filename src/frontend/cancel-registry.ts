// Maps the BackendKeyData pgsplit hands to each client to the server connection running that client's queries.
import { randomInt, timingSafeEqual } from 'node:crypto';

export interface Cancellable {
  /** Forward a cancel to whatever server is running this session's query now. */
  cancel(): void;
}

export class CancelRegistry {
  private next = randomInt(1, 1 << 30);
  private readonly sessions = new Map<number, { secret: number; target: Cancellable }>();

  register(target: Cancellable): { pid: number; secret: number } {
    let pid = this.next;
    while (this.sessions.has(pid)) pid = (pid % 0x7ffffffe) + 1;
    this.next = (pid % 0x7ffffffe) + 1;
    const secret = randomInt(-0x80000000, 0x7fffffff);
    this.sessions.set(pid, { secret, target });
    return { pid, secret };
  }

  unregister(pid: number): void {
    this.sessions.delete(pid);
  }

  /** Returns whether the key matched a live session (the client is never told, as in PostgreSQL). */
  cancel(pid: number, secret: number): boolean {
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
