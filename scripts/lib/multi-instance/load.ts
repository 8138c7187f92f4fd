// The load on a trial set: one writer per pgsplit instance, and a sampler of every instance's /status.
import type pg from 'pg';
import { sleep, within } from '../proc.js';
import { endClient, running, status, viaProxy, type TrialSet } from './set.js';

const INSERT = 'INSERT INTO w (via) VALUES ($1) RETURNING id, inet_server_port() AS port, (extract(epoch FROM at) * 1000)::float8 AS ms';

/** One client per instance, writing in a loop until set.stopped; reconnects when its session ends (not to a killed instance). */
export function startWriters(set: TrialSet): void {
  set.loops = set.instances.map(async (i) => {
    let c: pg.Client | null = null;
    let dead = false;
    while (!set.stopped && i.state !== 'killed') {
      try {
        if (!c) {
          dead = false;
          c = await viaProxy(set, i);
          const mine = c;
          mine.on('end', () => { if (c === mine) dead = true; });
        }
        const r = await c.query({ text: INSERT, values: [i.name] });
        set.acks.push({ id: r.rows[0].id as number, port: r.rows[0].port as number, via: i.name, at: Date.now(), serverAt: Math.round(r.rows[0].ms as number) });
      } catch (err) {
        const e = err as Error & { code?: string };
        set.errors.push({ via: i.name, at: Date.now(), code: e.code ?? (/timeout/i.test(e.message) ? 'timeout' : '-'), text: e.message });
        // A client-side timeout leaves the session in an unknown state: start a new one.
        if (c && (dead || /timeout|terminated|not queryable|ECONNRE|EPIPE/i.test(e.message))) {
          const old = c;
          c = null;
          void endClient(set, old);
        }
        await sleep(20);
      }
    }
    if (c) await endClient(set, c);
  });
}

/** /status of every running instance every 250 ms: roles, the published primary and writes_allowed over time. */
export function startSampler(set: TrialSet): Promise<void> {
  return (async () => {
    while (!set.stopped) {
      await Promise.all(running(set).map(async (i) => {
        try {
          const s = await status(i, 1_000);
          const c = s.coordination;
          set.samples.push({ at: Date.now(), via: i.name, role: c.role, leader: c.leader, epoch: c.epoch, published: c.published_primary, writes: c.writes_allowed });
        } catch {
          /* paused, killed or busy */
        }
      }));
      await sleep(250);
    }
  })();
}

/** Stops the writers (and the sampler, which watches set.stopped too) and waits for the writers to end. */
export async function stopLoad(set: TrialSet): Promise<void> {
  set.stopped = true;
  await within(Promise.all(set.loops), 35_000);
}
