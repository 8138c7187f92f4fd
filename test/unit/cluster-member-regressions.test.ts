// ClusterMember regressions found by review: a fresh cluster gets its primary published, a new leader never publishes from a stale state, a stale read confirms nothing.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { choosePrimary } from '../../src/health/evaluate.js';
import { ROUND, setup } from './support/fake-etcd.js';

afterEach(() => void vi.useRealTimers());

describe('ClusterMember regressions', () => {
  it('a fresh cluster: nothing is fenced before a state is published, so the monitor sees the primary and the leader publishes it', async () => {
    const { backing, member, tick, rounds } = setup(5000);
    const A = member('A'); // setup calls observe({ primary: 'pg1' }) as the monitor's first round would
    const monitorRound = () => A.m.observe(choosePrimary(A.topo.all(), A.topo.primary?.name ?? null, 1, A.topo.fenced));
    expect([...A.topo.fenced]).toEqual([]);
    monitorRound(); // second round (monitor every 1 s; member ticks every lease_ttl/3 = 1.67 s)
    await tick(A);
    for (let k = 0; k < 5; k++) {
      monitorRound();
      await rounds(1, A);
    }
    expect(A.m.role).toBe('leader');
    expect(backing.state?.primary).toBe('pg1');
  });

  it('a new leader that has not read the latest state reads it before publishing: the epoch only grows, and followers stop writing to the old primary', async () => {
    const { clock, backing, member, tick, rounds } = setup();
    const [A, B, C] = [member('A'), member('B'), member('C')];
    await tick(A, B, C);
    B.store.down = true; // B misses the next failover
    A.busy = true;
    clock.background = () => tick(A, C);
    await A.m.beforePromotion();
    await A.m.publishPrimary('pg2');
    clock.background = null;
    await rounds(1, A, C);
    expect(C.m.state).toMatchObject({ epoch: 3, primary: 'pg2' });
    // A dies. B comes back, but its first state read after taking the key fails (a timeout; or the controller runs
    // between leadershipRound and readState in the same tick).
    B.store.down = false;
    const readState = B.store.readState;
    B.store.readState = () => Promise.reject(new Error('deadline exceeded'));
    await rounds(4, B, C);
    expect(B.m.role).toBe('leader');
    expect(B.m.state?.epoch).toBe(1); // stale
    B.store.readState = readState;
    B.busy = true;
    clock.background = () => tick(B, C);
    await B.m.beforePromotion(); // B's controller saw "its" primary pg1 down
    clock.background = null;
    expect(backing.state).toMatchObject({ epoch: 4, primary: null });
    expect(C.topo.primary).toBeNull();
  });

  it('a read that returns an older epoch than the one followed does not extend the write window', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    const old = structuredClone(backing.state);
    A.busy = true;
    clock.background = () => tick(A);
    await A.m.beforePromotion();
    await A.m.publishPrimary('pg3');
    await tick(B);
    const until = B.topo.writableUntil;
    backing.state = old;
    await clock.sleep(ROUND);
    await tick(B);
    expect(B.topo.writableUntil).toBe(until);
  });
});
