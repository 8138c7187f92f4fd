// Unit tests for planSyncStandbys: the synchronous_standby_names each replication mode sets, and when it is degraded.
import { describe, it, expect } from 'vitest';
import { planSyncStandbys } from '../../src/failover/sync-standbys.js';

const ALL = ['pg2', 'pg3'];

describe('planSyncStandbys: every replica streaming', () => {
  it('async: no synchronous standbys, not degraded', () => {
    for (const strict of [false, true]) {
      expect(planSyncStandbys('async', strict, ALL, ALL)).toEqual({ names: '', members: [], degraded: false });
    }
  });

  it('async: not degraded even when replicas are missing', () => {
    expect(planSyncStandbys('async', false, [], ALL)).toEqual({ names: '', members: [], degraded: false });
    expect(planSyncStandbys('async', true, ['pg2'], ALL)).toEqual({ names: '', members: [], degraded: false });
  });

  it('semi-sync: ANY 1 over all replicas', () => {
    for (const strict of [false, true]) {
      expect(planSyncStandbys('semi-sync', strict, ALL, ALL)).toEqual({ names: 'ANY 1 ("pg2", "pg3")', members: ['pg2', 'pg3'], degraded: false });
    }
  });

  it('sync: FIRST n over all replicas, n being how many there are', () => {
    for (const strict of [false, true]) {
      expect(planSyncStandbys('sync', strict, ALL, ALL)).toEqual({ names: 'FIRST 2 ("pg2", "pg3")', members: ['pg2', 'pg3'], degraded: false });
    }
    expect(planSyncStandbys('sync', false, ['pg2', 'pg3', 'pg4'], ['pg2', 'pg3', 'pg4']).names).toBe('FIRST 3 ("pg2", "pg3", "pg4")');
  });

  it('a single replica: ANY 1 / FIRST 1 of it', () => {
    expect(planSyncStandbys('semi-sync', false, ['pg2'], ['pg2'])).toEqual({ names: 'ANY 1 ("pg2")', members: ['pg2'], degraded: false });
    expect(planSyncStandbys('sync', true, ['pg2'], ['pg2'])).toEqual({ names: 'FIRST 1 ("pg2")', members: ['pg2'], degraded: false });
  });
});

describe('planSyncStandbys: a replica not streaming', () => {
  it('semi-sync (not strict): leaves the missing replica out, degraded', () => {
    expect(planSyncStandbys('semi-sync', false, ['pg3'], ALL)).toEqual({ names: 'ANY 1 ("pg3")', members: ['pg3'], degraded: true });
  });

  it('sync (not strict): leaves the missing replica out and waits for fewer, degraded', () => {
    expect(planSyncStandbys('sync', false, ['pg2'], ALL)).toEqual({ names: 'FIRST 1 ("pg2")', members: ['pg2'], degraded: true });
  });

  it('semi-sync (strict): keeps the missing replica listed, degraded', () => {
    expect(planSyncStandbys('semi-sync', true, ['pg3'], ALL)).toEqual({ names: 'ANY 1 ("pg2", "pg3")', members: ['pg2', 'pg3'], degraded: true });
  });

  it('sync (strict): keeps the missing replica listed so writes wait for it, degraded', () => {
    expect(planSyncStandbys('sync', true, ['pg2'], ALL)).toEqual({ names: 'FIRST 2 ("pg2", "pg3")', members: ['pg2', 'pg3'], degraded: true });
  });
});

describe('planSyncStandbys: no replica streaming', () => {
  for (const mode of ['semi-sync', 'sync'] as const) {
    it(`${mode} (not strict): async in effect, degraded`, () => {
      expect(planSyncStandbys(mode, false, [], ALL)).toEqual({ names: '', members: [], degraded: true });
    });
  }

  it('semi-sync (strict): still lists every replica, degraded', () => {
    expect(planSyncStandbys('semi-sync', true, [], ALL)).toEqual({ names: 'ANY 1 ("pg2", "pg3")', members: ['pg2', 'pg3'], degraded: true });
  });

  it('sync (strict): still lists every replica, degraded', () => {
    expect(planSyncStandbys('sync', true, [], ALL)).toEqual({ names: 'FIRST 2 ("pg2", "pg3")', members: ['pg2', 'pg3'], degraded: true });
  });
});

describe('planSyncStandbys: no promotable replica configured', () => {
  for (const mode of ['semi-sync', 'sync'] as const) {
    for (const strict of [false, true]) {
      it(`${mode}${strict ? ' (strict)' : ''}: nothing to list, degraded`, () => {
        expect(planSyncStandbys(mode, strict, [], [])).toEqual({ names: '', members: [], degraded: true });
      });
    }
  }

  it('async: nothing to list, not degraded', () => {
    expect(planSyncStandbys('async', true, [], [])).toEqual({ names: '', members: [], degraded: false });
  });
});
