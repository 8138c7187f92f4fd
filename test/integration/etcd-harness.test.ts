// Proves the etcd and fault-proxy test harnesses against a real 3-member etcd before the coordination tests (issue 11) rely on them.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdGet, etcdPut, startEtcd, type EtcdCluster } from '../harness/etcd.js';
import { startFaultProxy, type FaultProxy } from '../harness/fault-proxy.js';

const verbose = !!process.env.PGSPLIT_TEST_VERBOSE;
const say = (line: string): void => console.log(`[etcd harness] ${line}`);

/** Retries fn until it resolves (each attempt bounded by its own short timeout inside fn), or rethrows the last error. */
async function eventually<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** How a promise settled, and after how long: fault tests care about "fails fast" vs "hangs until a timeout". */
async function timed(p: Promise<unknown>): Promise<{ ok: boolean; ms: number; err?: Error }> {
  const t0 = Date.now();
  try {
    await p;
    return { ok: true, ms: Date.now() - t0 };
  } catch (err) {
    return { ok: false, ms: Date.now() - t0, err: err as Error };
  }
}

describe('etcd harness', () => {
  let etcd: EtcdCluster;

  beforeAll(async () => {
    const t0 = Date.now();
    etcd = await startEtcd({ members: 3, log: verbose ? say : undefined });
    if (verbose) say(`started in ${Date.now() - t0} ms`);
  });

  afterAll(async () => {
    await etcd?.stop();
  });

  it('starts 3 members that elect a leader; a put through one member is read back from another', async () => {
    expect(etcd.endpoints).toHaveLength(3);
    expect(new Set(etcd.members.flatMap((m) => [m.clientPort, m.peerPort])).size).toBe(6);
    for (const m of etcd.members) expect(m.pid).toBeGreaterThan(0);
    const l = await etcd.leader();
    expect(l).toBeGreaterThanOrEqual(0);

    await etcdPut(etcd.endpoints[0], '/t/hello', 'world');
    expect(await etcdGet(etcd.endpoints[1], '/t/hello')).toBe('world');
    expect(await etcdGet(etcd.endpoints[2], '/t/missing')).toBeNull();
  });

  describe('fault proxy in front of one member', () => {
    let proxy: FaultProxy;
    let via: string;

    beforeAll(async () => {
      proxy = await startFaultProxy('127.0.0.1', etcd.members[0].clientPort);
      via = `http://127.0.0.1:${proxy.port}`;
    });

    afterAll(async () => {
      await proxy?.stop();
    });

    it('forwards puts while healthy', async () => {
      await etcdPut(via, '/t/proxy', 'one');
      expect(await etcdGet(etcd.endpoints[2], '/t/proxy')).toBe('one');
      expect(proxy.connections).toBeLessThanOrEqual(2);
    });

    it("'reset' makes a put fail fast", async () => {
      proxy.break('reset');
      expect(proxy.connections).toBe(0);
      const r = await timed(etcdPut(via, '/t/proxy', 'two', { timeoutMs: 5_000 }));
      expect(r.ok).toBe(false);
      expect(r.err?.name).not.toBe('TimeoutError');
      expect(r.ms).toBeLessThan(1_000);
    });

    it("'blackhole' makes a put hang until the client's own 1 s timeout", async () => {
      proxy.break('blackhole');
      const r = await timed(etcdPut(via, '/t/proxy', 'three', { signal: AbortSignal.timeout(1_000) }));
      expect(r.ok).toBe(false);
      expect(r.err?.name).toBe('TimeoutError');
      expect(r.ms).toBeGreaterThanOrEqual(950);
    });

    it('heal() lets puts through again', async () => {
      proxy.heal();
      await etcdPut(via, '/t/proxy', 'four', { timeoutMs: 2_000 });
      expect(await etcdGet(via, '/t/proxy')).toBe('four');
    });

    it('a connection that lived through a blackhole delivers its request after heal()', async () => {
      proxy.break('blackhole');
      const pending = etcdPut(via, '/t/proxy', 'five', { timeoutMs: 10_000 });
      await new Promise((r) => setTimeout(r, 300));
      proxy.heal();
      await pending;
      expect(await etcdGet(etcd.endpoints[1], '/t/proxy')).toBe('five');
    });
  });

  it('the fault proxy refuses connections beyond its bound, and stop() closes the open ones', async () => {
    const small = await startFaultProxy('127.0.0.1', etcd.members[2].clientPort, { maxConnections: 2 });
    const open = (): Promise<net.Socket> =>
      new Promise((resolve, reject) => {
        const s = net.connect(small.port, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
      });
    const closed = (s: net.Socket): Promise<void> => new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())));
    const kept = [await open(), await open()];
    for (const s of kept) s.on('error', () => {});
    await eventually(async () => expect(small.connections).toBe(2), 2_000);
    const third = await open();
    third.on('error', () => {});
    await closed(third);
    expect(small.connections).toBe(2);
    await small.stop();
    await Promise.all(kept.map(closed));
    expect(small.connections).toBe(0);
    await expect(open()).rejects.toThrow(/ECONNREFUSED/);
  });

  it('killing the leader leaves a quorum of 2 that still serves puts', async () => {
    const old = await etcd.leader();
    await etcd.kill(old);
    expect(etcd.members[old].pid).toBeNull();
    const others = [0, 1, 2].filter((i) => i !== old);

    const t0 = Date.now();
    // A put made while there is no leader is not answered until the member's own request timeout
    // (seconds), not refused: short attempts, retried, as a real client would.
    await eventually(() => etcdPut(etcd.endpoints[others[0]], '/t/after-leader-loss', 'yes', { timeoutMs: 1_000 }), 15_000);
    if (verbose) say(`put accepted ${Date.now() - t0} ms after killing leader ${etcd.members[old].name}`);
    expect(await etcdGet(etcd.endpoints[others[1]], '/t/after-leader-loss')).toBe('yes');
    expect(others).toContain(await etcd.leader());
  });

  it('with every member stopped a put fails; after startAll the puts work and the old data is still there', async () => {
    await etcd.stopAll();
    expect(etcd.members.every((m) => m.pid === null)).toBe(true);
    for (const ep of etcd.endpoints) {
      const r = await timed(etcdPut(ep, '/t/while-down', 'no', { timeoutMs: 2_000 }));
      expect(r.ok).toBe(false);
    }

    const t0 = Date.now();
    await etcd.startAll();
    if (verbose) say(`startAll ready in ${Date.now() - t0} ms`);
    expect(etcd.members.every((m) => (m.pid ?? 0) > 0)).toBe(true);
    await etcdPut(etcd.endpoints[2], '/t/after-restart', 'yes');
    for (const ep of etcd.endpoints) {
      expect(await etcdGet(ep, '/t/hello')).toBe('world');
      expect(await etcdGet(ep, '/t/after-leader-loss')).toBe('yes');
      expect(await etcdGet(ep, '/t/after-restart')).toBe('yes');
      expect(await etcdGet(ep, '/t/while-down')).toBeNull();
    }
  });

  it('restart(i) brings a single member back into the cluster', async () => {
    await etcd.restart(1);
    expect(etcd.members[1].pid).toBeGreaterThan(0);
    await etcd.ready();
    expect(await eventually(() => etcdGet(etcd.endpoints[1], '/t/after-restart', { timeoutMs: 1_500 }), 15_000)).toBe('yes');
  });
});
