// Faults and measurements the trials share: kill the primary, the new primary, first writes, promotions, lost commits, writes on a demoted node, error counts.
import type { ClusterNode } from '../../../test/harness/cluster.js';
import { sleep } from '../proc.js';
import { node, status, waitFor, withDirect, type Ack, type FailoverEvent, type Instance, type MultiResult, type TrialSet } from './set.js';

/** The primaries of a trial, each from the time it took over (the first entry from the start). */
export type Timeline = { port: number; from: number }[];

/** Kills the primary (pg_ctl stop -m immediate); the kill time is when stop returned or the first client error after it started, whichever is sooner. */
export async function killPrimary(set: TrialSet, name = 'pg1'): Promise<number> {
  const called = Date.now();
  await set.cluster!.stopNode(name, 'immediate');
  const returned = Date.now();
  return Math.min(returned, set.errors.find((e) => e.at >= called)?.at ?? returned);
}

/** The published primary every given instance agrees on, other than `old`. */
export async function newPrimary(set: TrialSet, among: Instance[], old: string, timeoutMs: number): Promise<string> {
  return waitFor(`every instance (${among.map((i) => i.name).join(', ')}) to follow a new primary`, async () => {
    const ss = await Promise.all(among.map((i) => status(i)));
    const p = ss[0]!.coordination.published_primary;
    return p && p !== old && ss.every((s) => s.coordination.published_primary === p && s.coordination.writes_allowed) ? p : undefined;
  }, timeoutMs, 100);
}

/** First write acknowledged by `port` through each instance after `since`. */
export async function firstWrites(set: TrialSet, among: Instance[], port: number, since: number, timeoutMs: number): Promise<Map<string, number>> {
  return waitFor(`writes through ${among.map((i) => i.name).join(', ')} on port ${port}`, () => {
    const m = new Map<string, number>();
    for (const i of among) {
      const a = set.acks.find((x) => x.via === i.name && x.at >= since && x.port === port);
      if (!a) return undefined;
      m.set(i.name, a.at);
    }
    return m;
  }, timeoutMs, 20);
}

/** Successful automatic failovers in the /status of the given instances (each recorded once, by the instance that led it). */
export async function promotions(among: Instance[]): Promise<FailoverEvent[]> {
  const ss = await Promise.all(among.map((i) => status(i)));
  return ss.flatMap((s) => s.failover.events.filter((e) => e.kind === 'failover' && !e.error));
}

/** Kill the primary, wait for one new primary that every live instance writes to; shared by the promotion trials. */
export async function primaryFailover(set: TrialSet, r: MultiResult, among: Instance[]): Promise<{ killAt: number; np: ClusterNode; firsts: Map<string, number> }> {
  const killAt = await killPrimary(set);
  const npName = await newPrimary(set, among, 'pg1', 40_000);
  const np = node(set, npName);
  const firsts = await firstWrites(set, among, np.port, killAt, 30_000);
  r.recover_ms = Math.max(...firsts.values()) - killAt;
  return { killAt, np, firsts };
}

/** Exactly one promotion, pg1 → np, and the replica not promoted still in recovery. */
export async function checkOnePromotion(set: TrialSet, r: MultiResult, among: Instance[], np: ClusterNode): Promise<number> {
  // The event is recorded once the other replica is re-pointed, a moment after writes resume.
  const events = await waitFor('the promotion recorded', async () => {
    const ev = await promotions(among);
    return ev.length > 0 ? ev : undefined;
  }, 15_000, 200);
  await sleep(500);
  const all = await promotions(among);
  r.facts.promotions = all.map((e) => `${e.old_primary}→${e.new_primary} ${e.duration_ms} ms`);
  if (all.length !== 1 || all[0]!.old_primary !== 'pg1' || all[0]!.new_primary !== np.name) r.problems.push(`expected one promotion pg1→${np.name}, /status shows ${JSON.stringify(r.facts.promotions)}`);
  const other = set.cluster!.nodes.find((n) => n.name !== 'pg1' && n.name !== np.name)!;
  const inRecovery = await withDirect(set, other, async (d) => (await d.query('SELECT pg_is_in_recovery() AS r')).rows[0].r as boolean);
  r.facts.other_replica_in_recovery = inRecovery;
  if (!inRecovery) r.problems.push(`${other.name} is not in recovery: a second promotion`);
  const timelines = await Promise.all(set.cluster!.nodes.filter((n) => n.name !== 'pg1').map((n) =>
    withDirect(set, n, async (d) => {
      // A primary's timeline is in its current WAL file name; a replica's is what its WAL receiver gets.
      const q = await d.query("SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)::text ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text END AS tli");
      return `${n.name}:${q.rows[0].tli ?? '-'}`;
    }).catch(() => `${n.name}:?`)));
  r.facts.timelines = timelines;
  return events.length;
}

/** Acknowledged ids missing on `final` (direct). */
export async function lostOn(set: TrialSet, final: ClusterNode): Promise<number> {
  const ids = set.acks.map((a) => a.id);
  const have = await withDirect(set, final, async (d) => new Set((await d.query<{ id: number }>('SELECT id FROM w WHERE id = ANY($1::int[])', [ids])).rows.map((r) => r.id)));
  return ids.filter((id) => !have.has(id)).length;
}

/**
 * Acknowledged writes whose server was not the primary when it wrote them (the row's own timestamp: an
 * acknowledgement held up in a paused instance reaches the client late, but the commit happened before).
 */
export function demotedWrites(set: TrialSet, timeline: Timeline): Ack[] {
  const primaryAt = (t: number): number => [...timeline].reverse().find((p) => p.from <= t)?.port ?? timeline[0]!.port;
  return set.acks.filter((a) => a.port !== primaryAt(a.serverAt));
}

/** When the old primary stopped being primary: the new one first published (sampled) or first took a write, whichever came first. */
export function demotedAt(set: TrialSet, newName: string, newPort: number, since: number): number {
  const published = set.samples.find((s) => s.at >= since && s.published === newName)?.at ?? Infinity;
  const wrote = set.acks.find((a) => a.at >= since && a.port === newPort)?.serverAt ?? Infinity;
  return Math.min(published, wrote);
}

export const lastAckBefore = (set: TrialSet, via: string, t: number): number | undefined => set.acks.filter((a) => a.via === via && a.at < t).at(-1)?.at;

/** Client errors by instance, SQLSTATE and message (digits folded), with how often each came. */
export function countErrors(set: TrialSet): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of set.errors) {
    const k = `${e.via} ${e.code} ${e.text.replace(/\d+/g, 'N').slice(0, 90)}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}
