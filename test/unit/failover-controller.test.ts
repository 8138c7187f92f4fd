// The failover controller's sequences on a fake clock with fake node actions: promotion, retry after a failed promotion, leadership checks, switchover (and its undo), replication upkeep.
import { describe, expect, it, vi } from 'vitest';
import { Topology, type NodeState } from '../../src/topology/topology.js';
import { FailoverController, PROMOTE_RETRY_MS, type FailoverConfig } from '../../src/failover/controller.js';
import type { NodeActions } from '../../src/failover/node-actions.js';
import type { Clock } from '../../src/failover/clock.js';
import type { Logger } from '../../src/util/logger.js';
import { SwitchoverRefused } from '../../src/errors.js';

/** Virtual time: sleeping moves the clock, so polling loops reach their deadlines without waiting. */
class FakeClock implements Clock {
  t = 1_000_000;
  now(): number {
    return this.t;
  }
  sleep(ms: number): Promise<void> {
    this.t += ms;
    return Promise.resolve();
  }
}

/** Records every action; answers are set per test. */
function fakeActions(over: Partial<NodeActions> = {}) {
  const calls: string[] = [];
  const actions: NodeActions = {
    promote: vi.fn(async (n) => void calls.push(`promote ${n.name}`)),
    repoint: vi.fn(async (r, p) => (calls.push(`repoint ${r.name} -> ${p.port}`), true)),
    openTransactions: vi.fn(async () => 0),
    stopWrites: vi.fn(async (n, readOnly) => (calls.push(`stop-writes ${n.name}${readOnly ? ' read-only' : ''}`), '0/5000000')),
    allowWrites: vi.fn(async (n) => void calls.push(`allow-writes ${n.name}`)),
    replayLsn: vi.fn(async () => 0x5000000),
    terminateClients: vi.fn(async (n) => void calls.push(`terminate-clients ${n.name}`)),
    applySyncStandbys: vi.fn(async (p, names) => (calls.push(`sync ${p.name} ${names}`), true)),
    ...over,
  };
  return { actions, calls };
}

const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn(), debug: vi.fn() } as unknown as Logger;

function config(over: Partial<FailoverConfig> = {}): FailoverConfig {
  return {
    enabled: true, failureThreshold: 3, promoteTimeoutMs: 10_000, hookCommand: 'notify-ops', rejoinCommand: '', demoteCommand: '',
    switchoverTimeoutMs: 5_000, hookTimeoutMs: 5_000, mode: 'async', strict: false, synchronousCommit: 'on', ...over,
  };
}

const streaming = (host: string, port: number): Partial<NodeState> => ({ role: 'replica', up: true, receiverStatus: 'streaming', senderHost: host, senderPort: port });

/** pg1 primary, pg2 and pg3 replicas streaming from it; pg3 has received more WAL. */
function cluster(): Topology {
  const t = new Topology([
    { name: 'pg1', host: 'h1', port: 5431 },
    { name: 'pg2', host: 'h2', port: 5432 },
    { name: 'pg3', host: 'h3', port: 5433 },
  ]);
  t.update('pg1', { role: 'primary', up: true, standbys: [{ name: 'pg2', state: 'streaming', syncState: 'async', flushLsn: null }, { name: 'pg3', state: 'streaming', syncState: 'async', flushLsn: null }] });
  t.update('pg2', { ...streaming('h1', 5431), receiveLsn: '0/4000000' });
  t.update('pg3', { ...streaming('h1', 5431), receiveLsn: '0/4800000' });
  t.setPrimary('pg1');
  return t;
}

function setup(o: { cfg?: Partial<FailoverConfig>; actions?: Partial<NodeActions>; leader?: () => boolean; leading?: boolean; published?: string[] } = {}) {
  const topology = cluster();
  const clock = new FakeClock();
  const { actions, calls } = fakeActions(o.actions);
  const hooks = vi.fn(async (command: string, vars: Record<string, string>) => (calls.push(`hook ${command} ${vars.PGSPLIT_EVENT}`), 0));
  const cfg = config(o.cfg);
  const leader = o.leader ?? (() => true);
  const published: string[][] = [];
  // What another instance's upkeep published (o.published), as a coordinated owner would hold it.
  const authority = {
    beforePromotion: async () => {},
    publish: async (p: string) => topology.setPrimary(p),
    synchronous: () => o.published ?? null,
    publishSynchronous: async (m: readonly string[]) => void published.push([...m]),
  };
  const c = new FailoverController(topology, () => ({}) as never, () => cfg, log, { actions, clock, hooks, authority, leadership: { leading: () => o.leading ?? true, confirm: async () => leader() } });
  return { topology, clock, actions, calls, hooks, c, cfg, published };
}

/** The primary stops answering probes: down, with `failures` failed probes, the first one `at`. */
function primaryDown(t: Topology, failures: number, at: number): void {
  t.update('pg1', { up: false, failures, lastProbeAt: at, lastError: 'connection refused' });
  // Its replicas lost their upstream too.
  t.update('pg2', { receiverStatus: 'waiting' });
  t.update('pg3', { receiverStatus: 'waiting' });
}

describe('failover controller: promotion', () => {
  it('promotes the most advanced replica once the threshold is reached, re-points the other, runs the hook, and counts it', async () => {
    const f = setup();
    const lostAt = f.clock.t;
    primaryDown(f.topology, 1, lostAt);
    f.c.onRound();
    await f.c.idle();
    expect(f.c.phase).toBe('suspect');
    expect(f.calls).toEqual([]);

    f.clock.t += 1_500;
    primaryDown(f.topology, 3, lostAt);
    f.c.onRound();
    await f.c.idle();
    expect(f.calls).toEqual(['promote pg3', 'repoint pg2 -> 5433', 'hook notify-ops failover']);
    expect(f.topology.primary?.name).toBe('pg3');
    expect(f.c.elected).toBe('pg3');
    expect(f.c.phase).toBe('healthy');
    expect(f.c.failovers).toBe(1);
    const e = f.c.events[0]!;
    expect(e).toMatchObject({ kind: 'failover', old_primary: 'pg1', new_primary: 'pg3', repointed: ['pg2'], duration_ms: 1_500 });
    expect(f.hooks.mock.calls[0]![1]).toMatchObject({ PGSPLIT_OLD_PRIMARY: 'pg1', PGSPLIT_NEW_PRIMARY: 'pg3', PGSPLIT_NEW_PRIMARY_HOST: 'h3', PGSPLIT_NEW_PRIMARY_PORT: '5433' });
  });

  it('a failed promotion is recorded and tried again only after PROMOTE_RETRY_MS', async () => {
    let fail = true;
    const f = setup({ actions: { promote: vi.fn(async () => { if (fail) throw new Error('permission denied for function pg_promote'); }) } });
    primaryDown(f.topology, 3, f.clock.t);
    f.c.onRound();
    await f.c.idle();
    expect(f.c.phase).toBe('no-candidate');
    expect(f.c.phaseReason).toContain('permission denied');
    expect(f.c.events[0]?.error).toContain('permission denied');
    expect(f.topology.primary?.name).toBe('pg1');

    f.clock.t += PROMOTE_RETRY_MS - 1;
    f.c.onRound();
    await f.c.idle();
    expect(f.actions.promote).toHaveBeenCalledTimes(1);

    fail = false;
    f.clock.t += 1;
    f.c.onRound();
    await f.c.idle();
    expect(f.actions.promote).toHaveBeenCalledTimes(2);
    expect(f.topology.primary?.name).toBe('pg3');
    expect(f.c.failovers).toBe(1);
  });

  it('an instance that does not hold the leadership promotes nothing and leaves the topology alone', async () => {
    const f = setup({ leader: () => false });
    primaryDown(f.topology, 3, f.clock.t);
    f.c.onRound();
    await f.c.idle();
    expect(f.actions.promote).not.toHaveBeenCalled();
    expect(f.topology.primary?.name).toBe('pg1');
    expect(f.c.failovers).toBe(0);
    expect(f.c.events[0]?.error).toMatch(/does not hold the leadership/);
  });

  it('a follower (another instance leads) decides nothing: no promotion, no upkeep, phase following', async () => {
    const f = setup({ leading: false });
    primaryDown(f.topology, 3, f.clock.t);
    f.c.onRound();
    await f.c.idle();
    expect(f.c.phase).toBe('following');
    expect(f.calls).toEqual([]);
  });

  it('with failover disabled nothing is promoted', async () => {
    const f = setup({ cfg: { enabled: false } });
    primaryDown(f.topology, 10, f.clock.t);
    f.c.onRound();
    await f.c.idle();
    expect(f.actions.promote).not.toHaveBeenCalled();
  });
});

describe('failover controller: switchover', () => {
  it('holds writes, waits for open transactions and for the target to replay, promotes, resumes, re-points and ends clients on the old primary', async () => {
    const open = [2, 1, 0];
    const replay = [0x4000000, 0x4fff000, 0x5000000];
    const f = setup({ actions: { openTransactions: vi.fn(async () => open.shift() ?? 0), replayLsn: vi.fn(async () => replay.shift() ?? 0x5000000) } });
    const seen: string[] = [];
    f.topology.on('pause', () => seen.push(`pause (primary ${f.topology.primary?.name})`));
    f.topology.on('resume', () => seen.push(`resume (primary ${f.topology.primary?.name})`));
    const e = await f.c.switchover('pg2');
    expect(seen).toEqual(['pause (primary pg1)', 'resume (primary pg2)']);
    expect(f.actions.openTransactions).toHaveBeenCalledTimes(3);
    expect(f.actions.replayLsn).toHaveBeenCalledTimes(3);
    expect(f.calls).toEqual(['stop-writes pg1 read-only', 'promote pg2', 'repoint pg3 -> 5432', 'terminate-clients pg1', 'hook notify-ops switchover']);
    expect(e).toMatchObject({ kind: 'switchover', old_primary: 'pg1', new_primary: 'pg2', promoted_receive_lsn: '0/5000000', repointed: ['pg3'] });
    expect(e.error).toBeUndefined();
    expect(f.c.phase).toBe('healthy');
    expect(f.c.failovers).toBe(0);
  });

  it('a transaction still open at failover.switchover_timeout: nothing promoted, the old primary gets its writes back, writes resume there', async () => {
    const f = setup({ actions: { openTransactions: vi.fn(async () => 1) } });
    const started = f.clock.t;
    await expect(f.c.switchover('pg2')).rejects.toThrow(/1 transaction\(s\) still open on pg1/);
    expect(f.clock.t - started).toBeGreaterThan(f.cfg.switchoverTimeoutMs);
    expect(f.actions.promote).not.toHaveBeenCalled();
    expect(f.calls).toEqual(['allow-writes pg1']);
    expect(f.topology.writesPaused).toBe(false);
    expect(f.topology.primary?.name).toBe('pg1');
    expect(f.c.events[0]?.error).toMatch(/still open/);
  });

  it('with demote_command: the command demotes instead of read-only; its failure undoes nothing it did not do', async () => {
    const f = setup({ cfg: { demoteCommand: 'demote-it' } });
    f.hooks.mockImplementation(async (cmd, vars) => (f.calls.push(`hook ${cmd} ${vars.PGSPLIT_EVENT} ${vars.PGSPLIT_NODE}->${vars.PGSPLIT_NEW_PRIMARY}`), cmd === 'demote-it' ? 3 : 0));
    await expect(f.c.switchover('pg3')).rejects.toThrow(/demote_command exited with 3/);
    expect(f.calls).toEqual(['stop-writes pg1', 'hook demote-it demote pg1->pg3']);
    expect(f.topology.writesPaused).toBe(false);
    expect(f.topology.primary?.name).toBe('pg1');
  });

  it('is refused for an unknown node, the primary itself, and while a promotion runs', async () => {
    const f = setup();
    await expect(f.c.switchover('pg9')).rejects.toBeInstanceOf(SwitchoverRefused);
    await expect(f.c.switchover('pg1')).rejects.toThrow(/already the primary/);
    let release!: () => void;
    f.actions.promote = vi.fn(() => new Promise<void>((r) => (release = r)));
    primaryDown(f.topology, 3, f.clock.t);
    f.c.onRound();
    f.topology.update('pg1', { up: true });
    await expect(f.c.switchover('pg2')).rejects.toThrow(/in progress/);
    release();
    await f.c.idle();
  });
});

describe('failover controller: replication upkeep', () => {
  it('semi-sync: applies ANY 1 over the streaming replicas, checks again only after RECHECK_MS, and trusts only listed members', async () => {
    const f = setup({ cfg: { mode: 'semi-sync' } });
    f.c.onRound();
    await f.c.idle();
    expect(f.calls).toEqual(['sync pg1 ANY 1 ("pg2", "pg3")']);
    expect(f.c.sync.members).toEqual(['pg2', 'pg3']);

    f.clock.t += 5_000;
    f.c.onRound();
    await f.c.idle();
    expect(f.actions.applySyncStandbys).toHaveBeenCalledTimes(1);

    f.clock.t += 5_001;
    f.c.onRound();
    await f.c.idle();
    expect(f.actions.applySyncStandbys).toHaveBeenCalledTimes(2);
  });

  it('re-points a replica streaming from elsewhere, at most once per REPOINT_GAP_MS', async () => {
    const f = setup();
    f.topology.update('pg2', streaming('h9', 9999));
    f.c.onRound();
    await f.c.idle();
    expect(f.calls.filter((c) => c.startsWith('repoint'))).toEqual(['repoint pg2 -> 5431']);
    f.clock.t += 10_000;
    f.c.onRound();
    await f.c.idle();
    expect(f.actions.repoint).toHaveBeenCalledTimes(1);
    f.clock.t += 5_001;
    f.c.onRound();
    await f.c.idle();
    expect(f.actions.repoint).toHaveBeenCalledTimes(2);
  });

  it('publishes the synchronous standbys it applied, for a leader that may come after it', async () => {
    const f = setup({ cfg: { mode: 'semi-sync' } });
    f.c.onRound();
    await f.c.idle();
    expect(f.published).toEqual([['pg2', 'pg3']]);
  });

  it('a leader that has not applied the mode itself trusts the published synchronous standbys: semi-sync promotes pg2, not the more advanced pg3', async () => {
    const f = setup({ cfg: { mode: 'semi-sync', strict: true }, published: ['pg2'] });
    primaryDown(f.topology, 3, f.clock.t);
    f.c.onRound();
    await f.c.idle();
    expect(f.actions.promote).toHaveBeenCalledTimes(1);
    expect(f.topology.primary?.name).toBe('pg2');
  });

  it('after a promotion nobody is trusted as synchronous until upkeep applied the mode on the new primary', async () => {
    const f = setup({ cfg: { mode: 'sync' } });
    f.c.onRound();
    await f.c.idle();
    expect(f.c.sync.members).toEqual(['pg2', 'pg3']);
    primaryDown(f.topology, 3, f.clock.t);
    f.c.onRound();
    await f.c.idle();
    expect(f.topology.primary?.name).toBe('pg3');
    expect(f.c.sync).toMatchObject({ members: [], degraded: true });
  });
});
