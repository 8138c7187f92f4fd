// The published cluster state (its stored form, what is rejected, how the epoch grows) and how members' registry entries are read.
import { describe, expect, it } from 'vitest';
import { decodeState, encodeState, nextState, sameState, type ClusterState } from '../../src/coordination/cluster-state.js';
import { peerUrls } from '../../src/coordination/cluster-member.js';

const base: ClusterState = { epoch: 3, primary: 'pg1', fenced: ['pg9'], mode: 'semi-sync', synchronous: ['pg2'], degraded: true, leader: 'a', at: 1 };

describe('cluster state', () => {
  it('round-trips through its stored form', () => {
    expect(decodeState(encodeState(base))).toEqual(base);
    // The compare-and-swap on publish compares stored text: encoding what was decoded must give the same text.
    expect(encodeState(decodeState(encodeState(base))!)).toBe(encodeState(base));
  });

  it('rejects anything else as "no state" rather than trusting part of it', () => {
    for (const text of [null, '', 'not json', '[]', '{}', JSON.stringify({ ...base, epoch: -1 }), JSON.stringify({ ...base, epoch: 1.5 }), JSON.stringify({ ...base, primary: 7 }), JSON.stringify({ ...base, mode: 'quorum' }), JSON.stringify({ ...base, fenced: [1] }), JSON.stringify({ ...base, leader: null })]) {
      expect(decodeState(text), String(text)).toBeNull();
    }
  });

  it('a state stored before synchronous standbys were published reads as none', () => {
    const { synchronous: _, ...old } = base;
    expect(decodeState(JSON.stringify(old))?.synchronous).toEqual([]);
  });

  it('the epoch starts at 1, stays with the same primary, and grows with every change of it (to none included)', () => {
    const first = nextState(null, { primary: 'pg1', fenced: [], mode: 'async' }, 'a', 10);
    expect(first.epoch).toBe(1);
    const same = nextState(first, { primary: 'pg1', fenced: ['pg3', 'pg2'], mode: 'async' }, 'a', 11);
    expect(same).toMatchObject({ epoch: 1, fenced: ['pg2', 'pg3'] });
    const none = nextState(same, { primary: null, fenced: [], mode: 'async' }, 'b', 12);
    const promoted = nextState(none, { primary: 'pg2', fenced: [], mode: 'async' }, 'b', 13);
    expect([none.epoch, promoted.epoch]).toEqual([2, 3]);
  });

  it('keeps the synchronous standbys with the same primary and drops them with a new one', () => {
    const withSync = nextState(base, { primary: 'pg1', fenced: [], mode: 'semi-sync', synchronous: ['pg2', 'pg3'] }, 'a', 2);
    expect(withSync).toMatchObject({ epoch: 3, synchronous: ['pg2', 'pg3'] });
    expect(nextState(withSync, { primary: 'pg1', fenced: [], mode: 'semi-sync' }, 'a', 3).synchronous).toEqual(['pg2', 'pg3']);
    expect(nextState(withSync, { primary: 'pg2', fenced: [], mode: 'semi-sync' }, 'a', 4).synchronous).toEqual([]);
  });

  it('carries whether replication is degraded: as published, kept with the same primary, and with a new primary degraded until upkeep says otherwise', () => {
    const whole = nextState(base, { primary: 'pg1', fenced: [], mode: 'semi-sync', synchronous: ['pg2', 'pg3'], degraded: false }, 'a', 2);
    expect(whole.degraded).toBe(false);
    expect(nextState(whole, { primary: 'pg1', fenced: ['pg9'], mode: 'semi-sync' }, 'a', 3).degraded).toBe(false);
    expect(nextState(whole, { primary: 'pg2', fenced: [], mode: 'semi-sync' }, 'a', 4).degraded).toBe(true);
    expect(nextState(whole, { primary: 'pg2', fenced: [], mode: 'async' }, 'a', 4).degraded).toBe(false);
    // Stored before the flag existed: degraded when a synchronous mode has nobody synchronous.
    const { degraded: _, ...old } = base;
    expect(decodeState(JSON.stringify({ ...old, synchronous: [] }))?.degraded).toBe(true);
    expect(decodeState(JSON.stringify(old))?.degraded).toBe(false);
  });

  it('sameState ignores who published it and when, nothing else', () => {
    expect(sameState(base, { ...base, leader: 'b', at: 99 })).toBe(true);
    expect(sameState(base, { ...base, synchronous: [] })).toBe(false);
    expect(sameState(base, { ...base, degraded: false })).toBe(false);
    expect(sameState(base, { ...base, epoch: 4 })).toBe(false);
    expect(sameState(null, null)).toBe(true);
    expect(sameState(base, null)).toBe(false);
  });
});

describe('peerUrls', () => {
  it('keeps every other member, with an empty URL for an entry pgsplit did not write (it then cannot answer for failsafe)', () => {
    const m = new Map([
      ['a', JSON.stringify({ admin: 'http://10.0.0.1:9930' })],
      ['self', JSON.stringify({ admin: 'http://10.0.0.2:9930' })],
      ['junk', '{not json'],
      ['odd', JSON.stringify({ admin: 'file:///etc/passwd' })],
    ]);
    expect(peerUrls(m, 'self')).toEqual(new Map([['a', 'http://10.0.0.1:9930'], ['junk', ''], ['odd', '']]));
  });
});
