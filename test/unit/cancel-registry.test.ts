// Unit tests for the cancel registry: the BackendKeyData pgsplit hands out and routing CancelRequests to sessions.
import { describe, it, expect } from 'vitest';
import { CancelRegistry, pidOwner, type Cancellable } from '../../src/frontend/cancel-registry.js';

class Target implements Cancellable {
  calls = 0;
  cancel(): void {
    this.calls++;
  }
}

const isInt32 = (v: number): boolean => Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff;

describe('CancelRegistry.register', () => {
  it('gives distinct positive int32 pids and int32 secrets', () => {
    const reg = new CancelRegistry();
    const keys = Array.from({ length: 1000 }, () => reg.register(new Target()));
    expect(new Set(keys.map((k) => k.pid)).size).toBe(1000);
    for (const k of keys) {
      expect(isInt32(k.pid)).toBe(true);
      expect(k.pid).toBeGreaterThan(0);
      expect(isInt32(k.secret)).toBe(true);
    }
    // secrets are random, not a counter
    expect(new Set(keys.map((k) => k.secret)).size).toBeGreaterThan(990);
  });

  it('pids of live sessions stay distinct across unregister/register churn', () => {
    const reg = new CancelRegistry();
    const live = new Map<number, number>();
    for (let i = 0; i < 500; i++) {
      const { pid, secret } = reg.register(new Target());
      expect(live.has(pid)).toBe(false);
      live.set(pid, secret);
      if (i % 3 === 0) {
        const first = live.keys().next().value!;
        reg.unregister(first);
        live.delete(first);
      }
    }
  });

  it('two registries may be independent', () => {
    const a = new CancelRegistry();
    const b = new CancelRegistry();
    const t = new Target();
    const k = a.register(t);
    expect(b.cancel(k.pid, k.secret)).toBe(false);
    expect(t.calls).toBe(0);
  });
});

describe('CancelRegistry.cancel', () => {
  it('the right secret calls that target once and returns true', () => {
    const reg = new CancelRegistry();
    const t1 = new Target();
    const t2 = new Target();
    const k1 = reg.register(t1);
    reg.register(t2);
    expect(reg.cancel(k1.pid, k1.secret)).toBe(true);
    expect(t1.calls).toBe(1);
    expect(t2.calls).toBe(0);
  });

  it('each matching request cancels again (a session can be cancelled many times)', () => {
    const reg = new CancelRegistry();
    const t = new Target();
    const k = reg.register(t);
    expect(reg.cancel(k.pid, k.secret)).toBe(true);
    expect(reg.cancel(k.pid, k.secret)).toBe(true);
    expect(t.calls).toBe(2);
  });

  it.each([
    ['secret + 1', (s: number) => (s + 1) | 0],
    ['secret - 1', (s: number) => (s - 1) | 0],
    ['bitwise complement', (s: number) => ~s],
    ['one bit flipped', (s: number) => s ^ 0x10000],
    ['sign bit flipped', (s: number) => s ^ -0x80000000],
  ])('a wrong secret (%s) returns false and calls nothing', (_n, wrong) => {
    const reg = new CancelRegistry();
    const t = new Target();
    const k = reg.register(t);
    const bad = wrong(k.secret);
    expect(bad).not.toBe(k.secret);
    expect(reg.cancel(k.pid, bad)).toBe(false);
    expect(t.calls).toBe(0);
  });

  it('an unknown pid returns false and calls nothing, even with a live secret', () => {
    const reg = new CancelRegistry();
    const t = new Target();
    const k = reg.register(t);
    for (const pid of [k.pid + 1, k.pid - 1, 0, -1, 0x7fffffff]) {
      if (pid === k.pid) continue;
      expect(reg.cancel(pid, k.secret)).toBe(false);
    }
    expect(t.calls).toBe(0);
  });

  it("another session's secret does not cancel this one", () => {
    const reg = new CancelRegistry();
    const t1 = new Target();
    const t2 = new Target();
    const k1 = reg.register(t1);
    const k2 = reg.register(t2);
    if (k1.secret !== k2.secret) expect(reg.cancel(k1.pid, k2.secret)).toBe(false);
    expect(t1.calls + t2.calls).toBe(0);
  });

  it('after unregister the key no longer works and the target is not called', () => {
    const reg = new CancelRegistry();
    const t = new Target();
    const other = new Target();
    const k = reg.register(t);
    const ko = reg.register(other);
    reg.unregister(k.pid);
    expect(reg.cancel(k.pid, k.secret)).toBe(false);
    expect(t.calls).toBe(0);
    // the other session is unaffected
    expect(reg.cancel(ko.pid, ko.secret)).toBe(true);
    expect(other.calls).toBe(1);
  });

  it('unregister of an unknown pid is harmless', () => {
    const reg = new CancelRegistry();
    expect(() => reg.unregister(12345)).not.toThrow();
  });
});

describe('CancelRegistry with an owner (workers: N)', () => {
  const forwards = () => {
    const calls: [number, number, number][] = [];
    return { calls, forward: (owner: number, pid: number, secret: number) => void calls.push([owner, pid, secret]) };
  };

  it.each([0, 3, 126])('every pid of worker %i says so (pidOwner) and is a positive int32', (owner) => {
    const reg = new CancelRegistry({ owner });
    const keys = Array.from({ length: 2000 }, () => reg.register(new Target()));
    expect(new Set(keys.map((k) => k.pid)).size).toBe(2000);
    for (const k of keys) {
      expect(isInt32(k.pid)).toBe(true);
      expect(k.pid).toBeGreaterThan(0);
      expect(pidOwner(k.pid)).toBe(owner);
      expect(isInt32(k.secret)).toBe(true);
    }
  });

  it('pids stay distinct and owned across register/unregister churn', () => {
    const reg = new CancelRegistry({ owner: 3 });
    const live = new Map<number, number>();
    for (let i = 0; i < 5000; i++) {
      const { pid, secret } = reg.register(new Target());
      expect(pidOwner(pid)).toBe(3);
      expect(pid).toBeGreaterThan(0);
      expect(live.has(pid)).toBe(false);
      live.set(pid, secret);
      if (i % 2 === 0) {
        const first = live.keys().next().value!;
        reg.unregister(first);
        live.delete(first);
      }
    }
  });

  it('the local number wraps around without leaving the owner or reaching 0', () => {
    const reg = new CancelRegistry({ owner: 3 });
    // start just below the top of the 24-bit local range (private state, set only to reach the wrap quickly)
    (reg as unknown as { next: number }).next = (1 << 24) - 3;
    const pids = Array.from({ length: 6 }, () => reg.register(new Target()).pid);
    const base = 4 * (1 << 24);
    expect(pids).toEqual([base + (1 << 24) - 3, base + (1 << 24) - 2, base + (1 << 24) - 1, base + 1, base + 2, base + 3]);
    for (const pid of pids) expect(pidOwner(pid)).toBe(3);
  });

  it('different workers never hand out the same pid', () => {
    const a = new CancelRegistry({ owner: 1 });
    const b = new CancelRegistry({ owner: 2 });
    const pa = new Set(Array.from({ length: 1000 }, () => a.register(new Target()).pid));
    for (let i = 0; i < 1000; i++) expect(pa.has(b.register(new Target()).pid)).toBe(false);
  });

  it("a cancel for another worker's pid is forwarded there and touches no local session", () => {
    const f = forwards();
    const mine = new CancelRegistry({ owner: 3, forward: f.forward });
    const theirs = new CancelRegistry({ owner: 5 });
    const local = new Target();
    const remote = new Target();
    const kl = mine.register(local);
    const kr = theirs.register(remote);
    expect(pidOwner(kr.pid)).toBe(5);
    expect(mine.cancel(kr.pid, kr.secret)).toBe(false);
    expect(f.calls).toEqual([[5, kr.pid, kr.secret]]);
    expect(local.calls).toBe(0);
    expect(remote.calls).toBe(0);
    // the worker that owns it cancels it (what the forward leads to)
    expect(theirs.cancel(kr.pid, kr.secret)).toBe(true);
    expect(remote.calls).toBe(1);
    // even a pid whose low bits match a local session goes to its owner, with the secret as given
    const lookalike = (5 + 1) * (1 << 24) + (kl.pid % (1 << 24));
    expect(pidOwner(lookalike)).toBe(5);
    expect(mine.cancel(lookalike, kl.secret)).toBe(false);
    expect(f.calls[1]).toEqual([5, lookalike, kl.secret]);
    expect(local.calls).toBe(0);
  });

  it("this worker's pid with the right secret cancels locally and forwards nothing", () => {
    const f = forwards();
    const reg = new CancelRegistry({ owner: 3, forward: f.forward });
    const t1 = new Target();
    const t2 = new Target();
    const k1 = reg.register(t1);
    reg.register(t2);
    expect(reg.cancel(k1.pid, k1.secret)).toBe(true);
    expect(t1.calls).toBe(1);
    expect(t2.calls).toBe(0);
    expect(f.calls).toEqual([]);
  });

  it("this worker's pid with a wrong secret, or unregistered, cancels nothing and forwards nothing", () => {
    const f = forwards();
    const reg = new CancelRegistry({ owner: 3, forward: f.forward });
    const t = new Target();
    const k = reg.register(t);
    expect(reg.cancel(k.pid, (k.secret + 1) | 0)).toBe(false);
    reg.unregister(k.pid);
    expect(reg.cancel(k.pid, k.secret)).toBe(false);
    expect(t.calls).toBe(0);
    expect(f.calls).toEqual([]);
  });

  it('a pid no worker owns (pidOwner null) is looked up locally, not forwarded', () => {
    const f = forwards();
    const reg = new CancelRegistry({ owner: 3, forward: f.forward });
    const t = new Target();
    const k = reg.register(t);
    for (const pid of [0, 1, (1 << 24) - 1, -1, -0x80000000]) {
      expect(pidOwner(pid)).toBeNull();
      expect(reg.cancel(pid, k.secret)).toBe(false);
    }
    expect(f.calls).toEqual([]);
    expect(t.calls).toBe(0);
  });

  it('without forward, a foreign pid is simply refused', () => {
    const reg = new CancelRegistry({ owner: 0 });
    const t = new Target();
    const k = reg.register(t);
    const foreign = new CancelRegistry({ owner: 1 }).register(new Target());
    expect(reg.cancel(foreign.pid, foreign.secret)).toBe(false);
    expect(reg.cancel(k.pid, k.secret)).toBe(true);
    expect(t.calls).toBe(1);
  });
});

describe('pidOwner', () => {
  it('reads the owner from bits 24..30 and refuses what no worker hands out', () => {
    expect(pidOwner((0 + 1) * (1 << 24) + 1)).toBe(0);
    expect(pidOwner((3 + 1) * (1 << 24) + 0xabcdef)).toBe(3);
    expect(pidOwner((126 + 1) * (1 << 24) + (1 << 24) - 1)).toBe(126);
    expect(pidOwner(0x7fffffff)).toBe(126);
    expect(pidOwner(0)).toBeNull();
    expect(pidOwner((1 << 24) - 1)).toBeNull();
    expect(pidOwner(-1)).toBeNull();
    expect(pidOwner(0x80000000)).toBeNull();
  });
});
