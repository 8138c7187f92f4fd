// The six multi-instance failover trials: each fills r (recover_ms, detail, facts, problems) and returns the final primary's name and the primaries' timeline.
//
//   leader-kill   kill -9 the leader instance, then kill the primary: another instance leads, one promotion
//   primary-kill  kill the primary: exactly one promotion (failover events over every instance's /status), the
//                 other replica still in recovery, writes resume through every instance
//   leader-pause  SIGSTOP the leader for 2 x lease_ttl, kill the primary meanwhile, restart the old primary,
//                 SIGCONT: the woken instance sends no write to the old primary (its rows counted before/after)
//   etcd-cut      p3 reaches etcd only through a TCP fault proxy, broken ('blackhole'): time until its writes
//                 stop (57P03) and until they resume after heal; reads through it go on, p1/p2 write on
//   etcd-down     every etcd member killed, failsafe off: time until every instance stops writing (and until
//                 they write again once etcd is back)
//   etcd-down-fs  the same with coordination.failsafe on (a fresh set): writes go on; "recover" is the longest
//                 pause in writes through any instance while etcd was down
import { sleep } from '../proc.js';
import { checkOnePromotion, demotedAt, firstWrites, killPrimary, lastAckBefore, newPrimary, primaryFailover, promotions, type Timeline } from './checks.js';
import { stopLoad } from './load.js';
import { endClient, HOLD_MS, LEASE_TTL_MS, live, LOAD_MS, node, signal, status, viaProxy, waitFor, withDirect, type CaseName, type MultiResult, type TrialSet } from './set.js';

type Body = (set: TrialSet, r: MultiResult) => Promise<{ final: string; timeline: Timeline }>;

export const trials: Record<CaseName, Body> = {
  'leader-kill': async (set, r) => {
    const p1 = set.instances[0]!;
    const killedAt = Date.now();
    signal(p1, 'SIGKILL');
    p1.state = 'killed';
    const rest = live(set);
    const next = await waitFor('another instance to lead', async () => {
      const ss = await Promise.all(rest.map(async (i) => ({ i, s: await status(i) })));
      const l = ss.filter((x) => x.s.coordination.role === 'leader');
      return l.length === 1 ? l[0]! : undefined;
    }, LEASE_TTL_MS * 5, 50);
    const leadMs = Date.now() - killedAt;
    r.facts.new_leader = next.i.name;
    r.facts.new_leader_ms = leadMs;
    // Every instance has written to pg1 since the new leader took over.
    const since = Date.now();
    await firstWrites(set, rest, node(set, 'pg1').port, since, 15_000);
    await sleep(LOAD_MS);
    const { killAt, np } = await primaryFailover(set, r, rest);
    const n = await checkOnePromotion(set, r, rest, np);
    r.detail = `${next.i.name} led ${leadMs} ms after p1's kill -9; then ${np.name} promoted (${n} promotion${n === 1 ? '' : 's'})`;
    await sleep(LOAD_MS);
    return { final: np.name, timeline: [{ port: node(set, 'pg1').port, from: 0 }, { port: np.port, from: demotedAt(set, np.name, np.port, killAt) }] };
  },

  'primary-kill': async (set, r) => {
    const all = live(set);
    const { killAt, np } = await primaryFailover(set, r, all);
    const n = await checkOnePromotion(set, r, all, np);
    r.detail = `${np.name} promoted (${n} promotion${n === 1 ? '' : 's'}; ${r.facts.other_replica_in_recovery ? 'other replica still in recovery' : 'OTHER REPLICA PROMOTED'})`;
    await sleep(LOAD_MS);
    return { final: np.name, timeline: [{ port: node(set, 'pg1').port, from: 0 }, { port: np.port, from: demotedAt(set, np.name, np.port, killAt) }] };
  },

  'leader-pause': async (set, r) => {
    const paused = set.instances[0]!;
    const others = set.instances.slice(1);
    const eventsBefore = (await status(paused)).failover.events.length;
    const pausedAt = Date.now();
    signal(paused, 'SIGSTOP');
    paused.state = 'paused';
    const killAt = await killPrimary(set);
    const npName = await newPrimary(set, others, 'pg1', 40_000);
    const np = node(set, npName);
    await firstWrites(set, others, np.port, killAt, 30_000);
    const leader = (await Promise.all(others.map(async (i) => ({ i, s: await status(i) })))).find((x) => x.s.coordination.role === 'leader')?.i.name ?? null;
    // The old primary comes back, a primary on its old timeline.
    await set.cluster!.startNode('pg1');
    const pg1 = node(set, 'pg1');
    const countOld = () => withDirect(set, pg1, async (d) => (await d.query('SELECT count(*)::int AS n FROM w')).rows[0].n as number);
    const wait = pausedAt + 2 * LEASE_TTL_MS - Date.now();
    if (wait > 0) await sleep(wait);
    const before = await countOld();
    const contAt = Date.now();
    signal(paused, 'SIGCONT');
    paused.state = 'running';
    const firsts = await firstWrites(set, set.instances, np.port, killAt, 30_000);
    r.recover_ms = Math.max(...firsts.values()) - killAt;
    const wokeMs = firsts.get(paused.name)! - contAt;
    const woke = await waitFor('the woken instance to follow', async () => {
      const s = await status(paused);
      return s.coordination.role === 'follower' && s.coordination.published_primary === np.name ? s : undefined;
    }, 15_000, 100);
    const acted = woke.failover.events.slice(eventsBefore).filter((e) => !e.error);
    await sleep(LOAD_MS);
    await stopLoad(set);
    const after = await countOld();
    // Sessions of the app user on the old primary: a write the woken instance sent there but that never finished (sync) would show here.
    const appSessions = await withDirect(set, pg1, async (d) => (await d.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'app'")).rows[0].n as number);
    const n = await checkOnePromotion(set, r, others, np);
    Object.assign(r.facts, { paused_ms: contAt - pausedAt, leader_while_paused: leader, woken_first_write_ms: wokeMs, old_primary_rows_before: before, old_primary_rows_after: after, old_primary_app_sessions: appSessions, woken_actions: acted.length, woken_leader: woke.coordination.leader });
    if (after !== before) r.problems.push(`${after - before} rows appeared on the restarted old primary after SIGCONT`);
    if (appSessions > 0) r.problems.push(`${appSessions} app sessions on the restarted old primary`);
    if (acted.length > 0) r.problems.push(`the woken instance recorded ${acted.length} failover/switchover events`);
    r.detail = `p1 paused ${contAt - pausedAt} ms, ${leader ?? '?'} led and promoted ${np.name} (${n} promotion${n === 1 ? '' : 's'}); p1 woke and wrote to ${np.name} after ${wokeMs} ms; rows on old pg1 ${before}→${after}`;
    return { final: np.name, timeline: [{ port: pg1.port, from: 0 }, { port: np.port, from: demotedAt(set, np.name, np.port, killAt) }] };
  },

  'etcd-cut': async (set, r) => {
    const p3 = set.instances.find((i) => i.cut)!;
    const cutAt = Date.now();
    set.fault!.break('blackhole');
    const statusStop = waitFor('p3 /status to say writes_allowed false', async () => ((await status(p3)).coordination.writes_allowed ? undefined : Date.now()), LEASE_TTL_MS * 4, 50).catch(() => null);
    const first57 = await waitFor('a 57P03 through p3', () => set.errors.find((e) => e.via === p3.name && e.at >= cutAt && e.code === '57P03')?.at, LEASE_TTL_MS + HOLD_MS + 10_000, 50);
    const stopMs = Math.max(0, (lastAckBefore(set, p3.name, first57) ?? cutAt) - cutAt);
    const statusStopAt = await statusStop;
    // A read through p3 while it cannot write.
    let read = 'failed';
    const rc = await viaProxy(set, p3).catch(() => null);
    if (rc) {
      const t = Date.now();
      read = await rc.query('SELECT count(*)::int AS n FROM w').then((q) => `ok (${q.rows[0].n} rows, ${Date.now() - t} ms)`, (e: Error & { code?: string }) => `failed: ${e.code ?? ''} ${e.message}`);
      await endClient(set, rc);
    }
    const othersWrote = set.acks.filter((a) => a.via !== p3.name && a.at > cutAt).length;
    const healAt = Date.now();
    set.fault!.heal();
    const back = await firstWrites(set, [p3], node(set, 'pg1').port, healAt, LEASE_TTL_MS * 5 + HOLD_MS);
    r.recover_ms = back.get(p3.name)! - healAt;
    Object.assign(r.facts, { writes_stop_ms: stopMs, status_stop_ms: statusStopAt === null ? null : statusStopAt - cutAt, first_57P03_ms: first57 - cutAt, read_while_cut: read, others_acked_while_cut: othersWrote, cut_ms: healAt - cutAt });
    if (!read.startsWith('ok')) r.problems.push(`a read through the cut-off instance ${read}`);
    if (othersWrote === 0) r.problems.push('p1 and p2 wrote nothing while p3 was cut off');
    r.detail = `p3's writes stopped ${stopMs} ms after the cut (57P03 after ${first57 - cutAt} ms), resumed ${r.recover_ms} ms after heal; read through p3 ${read.startsWith('ok') ? 'ok' : 'FAILED'}; p1+p2 acked ${othersWrote} meanwhile`;
    await sleep(LOAD_MS);
    return { final: 'pg1', timeline: [{ port: node(set, 'pg1').port, from: 0 }] };
  },

  'etcd-down': async (set, r) => {
    const all = set.instances;
    const downAt = Date.now();
    await set.etcd!.stopAll();
    const first57 = await waitFor('a 57P03 through every instance', () => {
      const m = all.map((i) => set.errors.find((e) => e.via === i.name && e.at >= downAt && e.code === '57P03')?.at);
      return m.every((x) => x !== undefined) ? (m as number[]) : undefined;
    }, LEASE_TTL_MS + HOLD_MS + 10_000, 50);
    const stops = all.map((i, k) => Math.max(0, (lastAckBefore(set, i.name, first57[k]!) ?? downAt) - downAt));
    r.recover_ms = Math.max(...stops);
    const upAt = Date.now();
    await set.etcd!.startAll();
    const back = await firstWrites(set, all, node(set, 'pg1').port, upAt, 30_000);
    const resume = Math.max(...back.values()) - upAt;
    const ev = await promotions(all);
    Object.assign(r.facts, { writes_stop_ms: Object.fromEntries(all.map((i, k) => [i.name, stops[k]])), resume_after_etcd_start_ms: resume, promotions: ev.length });
    if (ev.length > 0) r.problems.push(`${ev.length} promotions while etcd was down`);
    r.detail = `writes stopped on ${all.map((i, k) => `${i.name} ${stops[k]}`).join(', ')} ms; etcd restarted: every instance wrote again after ${resume} ms`;
    await sleep(LOAD_MS);
    return { final: 'pg1', timeline: [{ port: node(set, 'pg1').port, from: 0 }] };
  },

  'etcd-down-fs': async (set, r) => {
    const all = set.instances;
    const downAt = Date.now();
    await set.etcd!.stopAll();
    const OUTAGE_MS = LEASE_TTL_MS * 4;
    await sleep(OUTAGE_MS);
    const endAt = Date.now();
    const gaps = all.map((i) => {
      const ts = [downAt, ...set.acks.filter((a) => a.via === i.name && a.at >= downAt && a.at <= endAt).map((a) => a.at), endAt];
      return Math.max(...ts.slice(1).map((t, k) => t - ts[k]!));
    });
    r.recover_ms = Math.max(...gaps);
    const during = set.acks.filter((a) => a.at >= downAt && a.at <= endAt).length;
    const refused = set.errors.filter((e) => e.at >= downAt && e.at <= endAt).length;
    const ss = await Promise.all(all.map((i) => status(i)));
    const ev = ss.flatMap((s) => s.failover.events.filter((e) => !e.error));
    Object.assign(r.facts, { outage_ms: endAt - downAt, longest_pause_ms: Object.fromEntries(all.map((i, k) => [i.name, gaps[k]])), acked_during_outage: during, errors_during_outage: refused, writes_allowed_at_end: ss.map((s) => s.coordination.writes_allowed), promotions: ev.length });
    if (refused > 0) r.problems.push(`${refused} writes failed while etcd was down with failsafe on`);
    if (ev.length > 0) r.problems.push(`${ev.length} promotions while etcd was down`);
    r.detail = `etcd down ${((endAt - downAt) / 1000).toFixed(1)} s: ${during} writes acked meanwhile, ${refused} failed, longest pause ${all.map((i, k) => `${i.name} ${gaps[k]}`).join(', ')} ms`;
    return { final: 'pg1', timeline: [{ port: node(set, 'pg1').port, from: 0 }] };
  },
};
