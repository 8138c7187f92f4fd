// Unit tests for the cancel registry: the BackendKeyData pgsplit hands out and routing CancelRequests to sessions.
import { describe, it, expect } from 'vitest';
import { CancelRegistry, type Cancellable } from '../../src/frontend/cancel-registry.js';

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
