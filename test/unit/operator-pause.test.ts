// Unit tests for PAUSE in a session (frontend/operator-pause.ts): which units wait for RESUME, and that RESUME wakes the session once.
import { describe, expect, it } from 'vitest';
import { Topology } from '../../src/topology/topology.js';
import { TX } from '../../src/protocol/codes.js';
import { heldByPause } from '../../src/frontend/operator-pause.js';
import { newUnit, type Unit } from '../../src/frontend/unit.js';
import type { SessionCore } from '../../src/frontend/session-core.js';

function session(topology: Topology, o: Partial<SessionCore> = {}): SessionCore {
  return { ctx: { topology }, txStatus: TX.Idle, sticky: null, cut: null, inflight: [], queue: [], closed: false, clientPaused: false, pauseWait: null, ...o } as unknown as SessionCore;
}

describe('heldByPause', () => {
  it('holds nothing while not paused', () => {
    const t = new Topology([]);
    expect(heldByPause(session(t), newUnit())).toBe(false);
  });

  it('holds the next unit of an idle session, reads too, and RESUME wakes it once', () => {
    const t = new Topology([]);
    t.pauseUnits();
    const s = session(t);
    expect(heldByPause(s, newUnit())).toBe(true);
    expect(heldByPause(s, newUnit())).toBe(true);
    expect(t.listenerCount('resume')).toBe(1);
    t.resumeUnits();
    expect(s.pauseWait).toBeNull();
    expect(t.listenerCount('resume')).toBe(0);
    expect(heldByPause(s, newUnit())).toBe(false);
  });

  it('lets a transaction already open (or opening, or cut) and a retry on the primary go on', () => {
    const t = new Topology([]);
    t.pauseUnits();
    const opening = { ...newUnit(), sync: true, opensTransaction: true } as Unit;
    const cases: Partial<SessionCore>[] = [
      { txStatus: TX.InTransaction },
      { txStatus: TX.Failed },
      { sticky: {} as never },
      { cut: { error: null } },
      { inflight: [opening] },
      { inflight: [{ ...newUnit(), sync: false }] },
    ];
    for (const o of cases) expect(heldByPause(session(t, o), newUnit()), JSON.stringify(Object.keys(o))).toBe(false);
    expect(heldByPause(session(t), { ...newUnit(), forcePrimary: true })).toBe(false);
    // An autocommit statement in flight is no transaction: the next one waits.
    expect(heldByPause(session(t, { inflight: [{ ...newUnit(), sync: true }] }), newUnit())).toBe(true);
  });

  it('a worker follows the pause and the resume in the snapshots', () => {
    const c = new Topology([]);
    const w = new Topology([]);
    const events: string[] = [];
    w.on('pause', () => events.push('pause'));
    w.on('resume', () => events.push('resume'));
    c.pauseUnits();
    w.follow(JSON.parse(JSON.stringify(c.snapshot())));
    expect(w.unitsPaused).toBe(true);
    c.resumeUnits();
    w.follow(JSON.parse(JSON.stringify(c.snapshot())));
    expect(w.unitsPaused).toBe(false);
    expect(events).toEqual(['pause', 'resume']);
  });
});
