// ClusterMember on an in-memory etcd and a fake clock: who leads, what every instance follows, until when it may write, and fencing.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ROUND, TTL, setup } from './support/fake-etcd.js';

afterEach(() => void vi.useRealTimers());

describe('ClusterMember', () => {
  it('the first instance leads and publishes what its monitor sees; the next follows it; both may write until ttl after their last read of the state began', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    expect(A.topo.writableUntil).toBe(0);
    await tick(A);
    expect(A.m.role).toBe('leader');
    expect(backing.state).toMatchObject({ epoch: 1, primary: 'pg1', leader: 'A' });
    expect(A.m.state?.epoch).toBe(1);
    await tick(B);
    expect([B.m.role, B.m.leaderName, B.topo.primary?.name]).toEqual(['follower', 'A', 'pg1']);
    expect(B.m.state).toMatchObject({ epoch: 1, primary: 'pg1' });
    await clock.sleep(100);
    await tick(A);
    for (const x of [A, B]) {
      expect(x.topo.writableUntil).toBe(x.lastRead + TTL);
      expect(x.m.confirmedAt).toBe(x.lastRead);
    }
    expect(backing.state?.epoch).toBe(1);
  });

  it('an instance that keeps ticking keeps the leadership; cut off, or without the key, it may not act', async () => {
    const { backing, member, tick, rounds } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    await rounds(10, A, B);
    expect([A.m.role, B.m.role]).toEqual(['leader', 'follower']);
    expect([A.m.leadershipChanges, B.m.leadershipChanges]).toEqual([1, 0]);
    expect(await A.m.leadership.confirm()).toBe(true);
    expect(await B.m.leadership.confirm()).toBe(false);
    expect(backing.state).toMatchObject({ epoch: 1, leader: 'A' });
    A.store.down = true;
    expect(await A.m.leadership.confirm()).toBe(false);
    A.store.down = false;
    backing.key = null; // an operator deletes the leader key
    await tick(B, A);
    expect([A.m.role, B.m.role]).toEqual(['follower', 'leader']);
    expect(await A.m.leadership.confirm()).toBe(false);
  });

  it('a follower cut off from etcd stops writing ttl after its last confirmation, and writes again once a read succeeds', async () => {
    const { clock, member, tick, rounds } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    const until = B.topo.writableUntil;
    expect(until).toBe(B.lastRead + TTL);
    B.store.down = true;
    await rounds(2, A, B);
    expect(B.topo.writableUntil).toBe(until);
    expect(clock.now()).toBeLessThan(until);
    await rounds(2, A, B);
    expect(B.topo.writableUntil).toBe(until);
    expect(clock.now()).toBeGreaterThanOrEqual(B.topo.writableUntil); // no writes from B any more
    expect(A.topo.writableUntil).toBe(A.lastRead + TTL); // A still confirms
    expect(clock.now()).toBeLessThan(A.topo.writableUntil);
    B.store.down = false;
    await tick(B);
    expect(B.topo.writableUntil).toBe(B.lastRead + TTL);
    expect(clock.now()).toBeLessThan(B.topo.writableUntil);
    expect(B.topo.primary?.name).toBe('pg1');
  });

  it('when the leader stops ticking, its lease expires and a follower takes over without publishing a new epoch', async () => {
    const { backing, member, tick, rounds } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    await rounds(2, B); // A stopped (SIGSTOP, killed): its lease runs out ttl after its last keepalive
    expect(B.m.role).toBe('follower');
    expect(backing.leaderKey()?.name).toBe('A');
    await rounds(1, B);
    expect(B.m.role).toBe('leader');
    expect(B.m.leadershipChanges).toBe(1);
    expect(B.m.leaderName).toBe('B');
    expect(backing.state).toMatchObject({ epoch: 1, primary: 'pg1', leader: 'A' });
    expect(B.m.state?.epoch).toBe(1);
  });

  it('a leader paused past its lease may no longer act, and its next tick makes it a follower', async () => {
    const { member, tick, rounds } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    expect(await A.m.leadership.confirm()).toBe(true);
    await rounds(3, B);
    expect(B.m.role).toBe('leader');
    expect(A.m.leadership.leading()).toBe(true); // A has not noticed yet…
    expect(await A.m.leadership.confirm()).toBe(false); // …but may not act
    await tick(A);
    expect(A.m.role).toBe('follower');
    expect(A.m.leadershipChanges).toBe(2);
    expect(A.m.leaderName).toBe('B');
    await rounds(2, A, B);
    expect([A.m.role, B.m.role]).toEqual(['follower', 'leader']);
    await expect(A.m.publishPrimary('pg2')).rejects.toThrow('not the leader');
  });

  it('confirm() goes by the local lease arithmetic, even while etcd still shows the key (lease rounded up to whole seconds)', async () => {
    const { clock, backing, member, tick } = setup(2500);
    const A = member('A');
    await tick(A);
    clock.t = A.lastTick + 2500; // ttl after the start of the grant: etcd's lease (3 s) still holds the key
    A.store.latencyMs = 0;
    expect(backing.leaderKey()).toMatchObject({ name: 'A' });
    expect(await A.m.leadership.confirm()).toBe(false);
    A.store.latencyMs = 5;
    await tick(A); // a keepalive, in time for etcd
    expect(A.m.role).toBe('leader');
    A.store.latencyMs = 0;
    clock.t = A.lastTick + 2500 - 1; // valid until ttl after the *start* of the keepalive
    expect(await A.m.leadership.confirm()).toBe(true);
    A.store.latencyMs = 1; // the answer comes back once that has passed
    expect(await A.m.leadership.confirm()).toBe(false);
    A.store.latencyMs = 0;
    expect(clock.now()).toBe(A.lastTick + 2500);
    expect(backing.leaderKey()).toMatchObject({ name: 'A' }); // etcd's lease is 3 s
    expect(await A.m.leadership.confirm()).toBe(false);
  });

  it('beforePromotion publishes "no primary" and waits ttl, past every write window that did not see it; then the new primary is published', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    await clock.sleep(ROUND);
    await tick(B, A); // B's last confirmation comes right before the promotion
    const before = clock.now();
    A.busy = true;
    B.store.down = true; // B is cut off and never reads "no primary"
    clock.background = () => tick(A); // A's own timer keeps its lease alive meanwhile
    await A.m.beforePromotion();
    clock.background = null;
    B.store.down = false;
    expect(backing.state).toMatchObject({ epoch: 2, primary: null });
    expect(clock.now() - before).toBeGreaterThanOrEqual(TTL);
    expect(B.m.state?.primary).toBe('pg1'); // B has not read it…
    expect(clock.now()).toBeGreaterThanOrEqual(B.topo.writableUntil); // …and no longer writes
    expect(A.topo.primary).toBeNull();
    await tick(A); // busy: the leader does not put its observed primary back meanwhile
    expect(backing.state?.epoch).toBe(2);
    expect(await A.m.publishPrimary('pg3')).toMatchObject({ epoch: 3, primary: 'pg3', leader: 'A' });
    expect(backing.state).toMatchObject({ epoch: 3, primary: 'pg3' });
    expect(A.topo.primary?.name).toBe('pg3');
    await tick(B);
    expect(B.topo.primary?.name).toBe('pg3');
    expect(B.m.state?.epoch).toBe(3);
    expect(B.topo.writableUntil).toBe(B.lastRead + TTL);
  });

  it('a leader whose promotion was never published puts its observed primary back once not busy', async () => {
    const { clock, backing, member, tick } = setup();
    const A = member('A');
    await tick(A);
    clock.background = () => tick(A);
    await A.m.beforePromotion(); // then the promotion failed, or the leader died before publishing
    await tick(A);
    expect(backing.state).toMatchObject({ epoch: 3, primary: 'pg1' });
  });

  it('the watch moves a follower to the published primary without a tick, but only a read extends its write window', async () => {
    vi.useFakeTimers();
    const { clock, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A);
    await B.m.start();
    expect(B.m.role).toBe('follower');
    const until = B.topo.writableUntil;
    expect(until).toBeGreaterThan(0);
    A.busy = true;
    clock.background = () => tick(A);
    await A.m.beforePromotion();
    expect(B.topo.primary).toBeNull();
    expect(B.m.state?.epoch).toBe(2);
    await A.m.publishPrimary('pg3');
    expect(B.topo.primary?.name).toBe('pg3');
    expect(B.m.state?.epoch).toBe(3);
    expect(B.topo.writableUntil).toBe(until);
    expect(clock.now()).toBeGreaterThanOrEqual(until);
    await tick(B);
    expect(B.topo.writableUntil).toBe(B.lastRead + TTL);
    await B.m.stop();
  });

  it('publishing without the leader key throws and makes the instance a follower; a follower cannot publish', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    await clock.sleep(TTL); // A's lease (and the leader key on it) expired; A has not noticed
    expect(backing.leaderKey()).toBeNull();
    expect(A.m.role).toBe('leader');
    await expect(A.m.publishPrimary('pg2')).rejects.toThrow(/lost the leadership/);
    expect(A.m.role).toBe('follower');
    await expect(A.m.publishPrimary('pg2')).rejects.toThrow('not the leader');
    await expect(B.m.publishPrimary('pg2')).rejects.toThrow('not the leader');
    const t = clock.now();
    await expect(B.m.beforePromotion()).rejects.toThrow('not the leader');
    expect(clock.now()).toBe(t);
    expect(backing.state).toMatchObject({ epoch: 1, primary: 'pg1' });
  });

  it('a node that claims to be primary against the published state is fenced; the published primary never is', async () => {
    const { member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    for (const x of [A, B]) {
      expect([...x.topo.fenced]).toEqual([]);
      x.topo.update('pg2', { up: true, role: 'primary' });
      x.m.observe({ primary: 'pg1', conflicting: ['pg2'] });
      expect([...x.topo.fenced]).toEqual(['pg2']);
      x.m.observe({ primary: 'pg2', conflicting: ['pg1'] }); // whatever this monitor concludes
      expect([...x.topo.fenced]).toEqual(['pg2']);
      expect(x.topo.primary?.name).toBe('pg1');
    }
    await tick(A, B);
    expect([...A.topo.fenced, ...B.topo.fenced]).toEqual(['pg2', 'pg2']);
    B.topo.update('pg2', { role: 'replica' });
    B.m.observe({ primary: 'pg1', conflicting: [] });
    expect([...B.topo.fenced]).toEqual([]);
  });

  it('a state older than the one followed is ignored', async () => {
    const { clock, backing, member, tick } = setup();
    const [A, B] = [member('A'), member('B')];
    await tick(A, B);
    const old = structuredClone(backing.state);
    A.busy = true;
    clock.background = () => tick(A);
    await A.m.beforePromotion();
    await A.m.publishPrimary('pg3');
    await tick(B);
    expect(B.m.state).toMatchObject({ epoch: 3, primary: 'pg3' });
    backing.state = old; // a stale read
    await tick(B);
    expect(B.m.state).toMatchObject({ epoch: 3, primary: 'pg3' });
    expect(B.topo.primary?.name).toBe('pg3');
  });
});
