// Unit tests for choosePrimary: keeping a briefly failing primary (keepFailingFor), split-brain claimants and timeline choice.
import { describe, it, expect } from 'vitest';
import { applyProbe, choosePrimary, type ProbeSample } from '../../src/health/evaluate.js';
import { initialNodeState, type NodeState } from '../../src/topology/topology.js';

const sample = (patch: Partial<ProbeSample> = {}): ProbeSample => ({
  inRecovery: false,
  currentLsn: '0/3000148',
  receiveLsn: null,
  replayLsn: null,
  replayTimestamp: null,
  timeline: 1,
  systemIdentifier: '7301234567890123456',
  serverVersion: '16.4',
  replayPaused: null,
  caughtUp: null,
  replayAgeSeconds: null,
  receiverStatus: null,
  senderHost: null,
  senderPort: null,
  standbys: null,
  ...patch,
});

let clock = 1_000_000;
const fresh = (name: string) => initialNodeState({ name, host: `${name}.db`, port: 5432 });
const primary = (name: string, timeline = 1) => applyProbe(fresh(name), { ok: true, at: (clock += 500), sample: sample({ timeline }) });
const replica = (name: string) =>
  applyProbe(fresh(name), { ok: true, at: (clock += 500), sample: sample({ inRecovery: true, currentLsn: null, receiveLsn: '0/3000148', replayLsn: '0/3000148', receiverStatus: 'streaming' }) });
const down = (name: string) => applyProbe(fresh(name), { ok: false, at: (clock += 500), error: 'connect ECONNREFUSED' });
/** `n` after `count` failed probes in a row, 500 ms apart. */
const failing = (n: NodeState, count: number): NodeState => {
  let out = n;
  for (let i = 0; i < count; i++) out = applyProbe(out, { ok: false, at: (clock += 500), error: 'timeout expired' });
  return out;
};

describe('choosePrimary: a current primary that fails probes', () => {
  it('keeps the current primary while it failed fewer than keepFailingFor probes', () => {
    for (const failed of [1, 2]) {
      const pg1 = failing(primary('pg1'), failed);
      expect(pg1).toMatchObject({ up: false, failures: failed, role: 'primary' });
      expect(choosePrimary([pg1, replica('pg2'), replica('pg3')], 'pg1', 3)).toEqual({ primary: 'pg1', conflicting: [] });
    }
  });

  it('drops it at the threshold (no other claimant: no primary)', () => {
    const pg1 = failing(primary('pg1'), 3);
    expect(choosePrimary([pg1, replica('pg2'), replica('pg3')], 'pg1', 3)).toEqual({ primary: null, conflicting: [] });
    expect(choosePrimary([failing(primary('pg1'), 7), replica('pg2')], 'pg1', 3)).toEqual({ primary: null, conflicting: [] });
  });

  it('drops it on the first failure by default (keepFailingFor = 1)', () => {
    const pg1 = failing(primary('pg1'), 1);
    expect(choosePrimary([pg1, replica('pg2')], 'pg1')).toEqual({ primary: null, conflicting: [] });
  });

  it('keeps the failing current primary over a new claimant, which it reports as conflicting', () => {
    const pg1 = failing(primary('pg1'), 2);
    expect(choosePrimary([pg1, primary('pg2', 2), replica('pg3')], 'pg1', 3)).toEqual({ primary: 'pg1', conflicting: ['pg2'] });
  });

  it('hands over to the other claimant once the current primary reaches the threshold', () => {
    const pg1 = failing(primary('pg1'), 3);
    expect(choosePrimary([pg1, primary('pg2', 2), replica('pg3')], 'pg1', 3)).toEqual({ primary: 'pg2', conflicting: [] });
  });

  it('picks up the primary again once it answers (the failure count resets)', () => {
    const back = applyProbe(failing(primary('pg1'), 5), { ok: true, at: (clock += 500), sample: sample() });
    expect(back.failures).toBe(0);
    expect(choosePrimary([back, replica('pg2')], 'pg1', 3)).toEqual({ primary: 'pg1', conflicting: [] });
  });

  it('does not keep a current node that was never seen as a primary', () => {
    // pg1 never answered a probe (role unknown): there is nothing to keep.
    expect(choosePrimary([down('pg1'), primary('pg2')], 'pg1', 3)).toEqual({ primary: 'pg2', conflicting: [] });
  });

  it('does not keep a failing node that was last seen as a replica', () => {
    const pg1 = failing(replica('pg1'), 1);
    expect(choosePrimary([pg1, primary('pg2')], 'pg1', 3)).toEqual({ primary: 'pg2', conflicting: [] });
  });
});

describe('choosePrimary: several claimants', () => {
  it('keeps the current primary and reports the other claimant as conflicting (fenced)', () => {
    // pg2 is on a higher timeline (an old failover) but pg1 is the one pgsplit routes to.
    expect(choosePrimary([primary('pg1', 1), primary('pg2', 5), replica('pg3')], 'pg1', 3)).toEqual({ primary: 'pg1', conflicting: ['pg2'] });
    expect(choosePrimary([primary('pg1', 5), primary('pg2', 1), replica('pg3')], 'pg2', 3)).toEqual({ primary: 'pg2', conflicting: ['pg1'] });
  });

  it('never takes a fenced node back when the primary is lost: there is none until failover promotes a replica', () => {
    // pg1 was demoted by a switchover to pg2 (read-only, still out of recovery, so fenced); then pg2 died.
    const fenced = new Set(['pg1']);
    expect(choosePrimary([primary('pg1', 1), down('pg2'), replica('pg3')], 'pg2', 1, fenced)).toEqual({ primary: null, conflicting: ['pg1'] });
    // An unfenced claimant is still chosen, and the fenced one stays conflicting.
    expect(choosePrimary([primary('pg1', 1), down('pg2'), primary('pg3', 3)], 'pg2', 1, fenced)).toEqual({ primary: 'pg3', conflicting: ['pg1'] });
    // Without a fence (say at startup) the claimant is the primary.
    expect(choosePrimary([primary('pg1', 1), down('pg2'), replica('pg3')], 'pg2', 1)).toEqual({ primary: 'pg1', conflicting: [] });
  });

  it('reports every other claimant as conflicting', () => {
    expect(choosePrimary([primary('pg1'), primary('pg2'), primary('pg3')], 'pg2')).toEqual({ primary: 'pg2', conflicting: ['pg1', 'pg3'] });
  });

  it('with no current primary, picks the claimant on the highest timeline', () => {
    expect(choosePrimary([primary('pg1', 1), primary('pg2', 3), primary('pg3', 2)], null)).toEqual({ primary: 'pg2', conflicting: ['pg1', 'pg3'] });
    expect(choosePrimary([primary('pg1', 4), primary('pg2', 3)], null)).toEqual({ primary: 'pg1', conflicting: ['pg2'] });
  });

  it('with a current primary that is gone, picks the claimant on the highest timeline', () => {
    expect(choosePrimary([failing(primary('pg1', 1), 3), primary('pg2', 2), primary('pg3', 3)], 'pg1', 3)).toEqual({ primary: 'pg3', conflicting: ['pg2'] });
  });

  it('with no current primary and equal timelines, picks the first in config order', () => {
    expect(choosePrimary([replica('pg1'), primary('pg2', 2), primary('pg3', 2)], null)).toEqual({ primary: 'pg2', conflicting: ['pg3'] });
    expect(choosePrimary([replica('pg1'), primary('pg3', 2), primary('pg2', 2)], null)).toEqual({ primary: 'pg3', conflicting: ['pg2'] });
  });

  it('with nobody out of recovery, has no primary', () => {
    expect(choosePrimary([replica('pg1'), replica('pg2'), down('pg3')], null)).toEqual({ primary: null, conflicting: [] });
  });
});
