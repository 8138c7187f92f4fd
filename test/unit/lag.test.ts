// Unit tests for replica lag measurement and lag/probe bans with hysteresis (src/health/lag.ts), on a fake clock.
import { describe, expect, it } from 'vitest';
import { measureLag, nextBan, NO_LAG, NOT_BANNED, overBound, type BanState, type LagBounds, type LagSample, type LagState } from '../../src/health/lag.js';

const sample = (at: number, patch: Partial<LagSample> = {}): LagSample => ({
  at,
  replayLsn: 1000,
  primaryLsn: 1000,
  caughtUp: true,
  replayAgeSeconds: 0,
  ...patch,
});

const lag = (lagBytes: number | null, lagSeconds: number | null): LagState => ({ lagBytes, lagSeconds, behindSince: null });

describe('measureLag: bytes', () => {
  it('is the primary LSN minus the replay LSN', () => {
    expect(measureLag(NO_LAG, sample(0, { replayLsn: 0x4000, primaryLsn: 0x5000 })).lagBytes).toBe(0x1000);
    expect(measureLag(NO_LAG, sample(0, { replayLsn: 7, primaryLsn: 7 })).lagBytes).toBe(0);
  });

  it('works beyond 32 bits (LSNs with a high half)', () => {
    expect(measureLag(NO_LAG, sample(0, { replayLsn: 0x16 * 2 ** 32 + 0xfffffff0, primaryLsn: 0x17 * 2 ** 32 + 0x10 })).lagBytes).toBe(0x20);
  });

  it('is never negative when the replica was sampled after the primary and is ahead of it', () => {
    expect(measureLag(NO_LAG, sample(0, { replayLsn: 0x5100, primaryLsn: 0x5000 })).lagBytes).toBe(0);
  });

  it('is unknown when either LSN is unknown', () => {
    expect(measureLag(NO_LAG, sample(0, { replayLsn: null, primaryLsn: 5 })).lagBytes).toBeNull();
    expect(measureLag(NO_LAG, sample(0, { replayLsn: 5, primaryLsn: null })).lagBytes).toBeNull();
    expect(measureLag(NO_LAG, sample(0, { replayLsn: null, primaryLsn: null, caughtUp: false })).lagBytes).toBeNull();
  });
});

describe('measureLag: time', () => {
  it('is 0 when replay has caught up, however old the last replayed transaction is', () => {
    expect(measureLag(NO_LAG, sample(0, { caughtUp: true, replayAgeSeconds: 3600 }))).toEqual({ lagBytes: 0, lagSeconds: 0, behindSince: null });
  });

  it('a first write after an idle hour does not read as an hour of lag', () => {
    // pg_last_xact_replay_timestamp() is an hour old because nothing was written; now the replica is behind.
    let s = measureLag(NO_LAG, sample(3_600_000, { caughtUp: false, replayAgeSeconds: 3600 }));
    expect(s).toEqual({ lagBytes: 0, lagSeconds: 0, behindSince: 3_600_000 });
    s = measureLag(s, sample(3_601_000, { caughtUp: false, replayAgeSeconds: 3601 }));
    expect(s.lagSeconds).toBe(1);
    s = measureLag(s, sample(3_602_500, { caughtUp: false, replayAgeSeconds: 3602.5 }));
    expect(s.lagSeconds).toBe(2.5);
  });

  it("uses the replica's own replay age when it is smaller than the time behind in a row", () => {
    let s = measureLag(NO_LAG, sample(0, { caughtUp: false, replayAgeSeconds: 0.1 }));
    s = measureLag(s, sample(10_000, { caughtUp: false, replayAgeSeconds: 0.4 }));
    expect(s).toEqual({ lagBytes: 0, lagSeconds: 0.4, behindSince: 0 });
  });

  it('falls back to the time behind in a row when the replica never replayed a transaction', () => {
    let s = measureLag(NO_LAG, sample(1000, { caughtUp: false, replayAgeSeconds: null }));
    expect(s.lagSeconds).toBe(0);
    s = measureLag(s, sample(4000, { caughtUp: false, replayAgeSeconds: null }));
    expect(s.lagSeconds).toBe(3);
  });

  it('never reports negative lag when the replica clock is ahead', () => {
    let s = measureLag(NO_LAG, sample(0, { caughtUp: false, replayAgeSeconds: -5 }));
    s = measureLag(s, sample(1000, { caughtUp: false, replayAgeSeconds: -5 }));
    expect(s.lagSeconds).toBe(0);
  });

  it('behindSince is kept across consecutive behind samples and reset by a caught-up one', () => {
    let s = measureLag(NO_LAG, sample(1000, { caughtUp: false, replayAgeSeconds: 100 }));
    expect(s.behindSince).toBe(1000);
    s = measureLag(s, sample(2000, { caughtUp: false, replayAgeSeconds: 100 }));
    s = measureLag(s, sample(3000, { caughtUp: false, replayAgeSeconds: 100 }));
    expect(s).toMatchObject({ behindSince: 1000, lagSeconds: 2 });
    s = measureLag(s, sample(4000, { caughtUp: true, replayAgeSeconds: 100 }));
    expect(s).toMatchObject({ behindSince: null, lagSeconds: 0 });
    // a new run of behind samples counts from its own start, not from the first run
    s = measureLag(s, sample(5000, { caughtUp: false, replayAgeSeconds: 100 }));
    expect(s).toMatchObject({ behindSince: 5000, lagSeconds: 0 });
    s = measureLag(s, sample(5500, { caughtUp: false, replayAgeSeconds: 100 }));
    expect(s.lagSeconds).toBe(0.5);
  });

  it('does not mutate the previous state', () => {
    const prev: LagState = { lagBytes: 1, lagSeconds: 1, behindSince: 5 };
    measureLag(prev, sample(9000, { caughtUp: true }));
    expect(prev).toEqual({ lagBytes: 1, lagSeconds: 1, behindSince: 5 });
  });
});

describe('overBound', () => {
  const b = (bytes: number | null, timeMs: number | null): LagBounds => ({ bytes, timeMs, unbanAfterMs: 0 });

  it.each<[string, LagState, LagBounds, ReturnType<typeof overBound>]>([
    ['within both', lag(100, 1), b(1000, 2000), null],
    ['exactly at both bounds', lag(1000, 2), b(1000, 2000), null],
    ['one byte over', lag(1001, 0), b(1000, 2000), 'lag-bytes'],
    ['a millisecond over', lag(0, 2.001), b(1000, 2000), 'lag-time'],
    ['over both: bytes is reported', lag(5000, 10), b(1000, 2000), 'lag-bytes'],
    ['no byte bound', lag(10 ** 12, 0), b(null, 2000), null],
    ['no time bound', lag(0, 10 ** 6), b(1000, null), null],
    ['no bounds at all', lag(10 ** 12, 10 ** 6), b(null, null), null],
    ['unknown bytes is not over', lag(null, 0), b(0, 2000), null],
    ['unknown time is not over', lag(0, null), b(1000, 0), null],
    ['zero bounds: any lag is over', lag(1, 0), b(0, 0), 'lag-bytes'],
    ['zero bounds, no lag', lag(0, 0), b(0, 0), null],
  ])('%s', (_n, l, bounds, want) => {
    expect(overBound(l, bounds)).toBe(want);
  });
});

describe('nextBan on a fake clock', () => {
  const bounds: LagBounds = { bytes: 1000, timeMs: 2000, unbanAfterMs: 2000 };
  const good = lag(0, 0);
  const farBehind = lag(5000, 0);
  const slow = lag(0, 3);

  /** Feeds one sample per entry ([time, probeOk, lag]) and returns the ban state after each. */
  function run(steps: [number, boolean, LagState][], b: LagBounds = bounds, start: BanState = NOT_BANNED): BanState[] {
    const out: BanState[] = [];
    let s = start;
    for (const [at, probeOk, l] of steps) out.push((s = nextBan(s, at, probeOk, l, b)));
    return out;
  }

  it('stays unbanned while under the bounds', () => {
    expect(run([[0, true, good], [1000, true, lag(1000, 2)]])).toEqual([NOT_BANNED, NOT_BANNED]);
  });

  it('bans at the first over-bound sample, with the reason', () => {
    expect(run([[0, true, good], [1000, true, farBehind]])[1]).toEqual({ banned: true, banReason: 'lag-bytes', banSince: 1000, clearSince: null });
    expect(run([[500, true, slow]])[0]).toEqual({ banned: true, banReason: 'lag-time', banSince: 500, clearSince: null });
    expect(run([[500, true, lag(5000, 3)]])[0].banReason).toBe('lag-bytes');
  });

  it('a failed probe bans as probe-failed, whatever the last lag was', () => {
    expect(run([[0, true, good], [1000, false, good]])[1]).toEqual({ banned: true, banReason: 'probe-failed', banSince: 1000, clearSince: null });
  });

  it('keeps banSince while banned, updating the reason', () => {
    const s = run([
      [1000, true, farBehind],
      [2000, true, slow],
      [3000, false, good],
    ]);
    expect(s.map((x) => [x.banReason, x.banSince])).toEqual([
      ['lag-bytes', 1000],
      ['lag-time', 1000],
      ['probe-failed', 1000],
    ]);
  });

  it('unbans only after staying under the bounds for unbanAfterMs', () => {
    const s = run([
      [0, true, farBehind],
      [1000, true, good], // clock starts
      [2000, true, good],
      [2999, true, good],
      [3000, true, good], // 2000 ms under the bounds
    ]);
    expect(s.map((x) => x.banned)).toEqual([true, true, true, true, false]);
    expect(s[1]).toEqual({ banned: true, banReason: 'lag-bytes', banSince: 0, clearSince: 1000 });
    expect(s[3].clearSince).toBe(1000);
    expect(s[4]).toEqual(NOT_BANNED);
  });

  it('a relapse restarts the clock', () => {
    const s = run([
      [0, true, farBehind],
      [1000, true, good],
      [2500, true, slow], // relapse just before the unban
      [3000, true, good], // clock restarts here
      [4000, true, good],
      [4999, true, good],
      [5000, true, good],
    ]);
    expect(s.map((x) => x.banned)).toEqual([true, true, true, true, true, true, false]);
    expect(s[2]).toEqual({ banned: true, banReason: 'lag-time', banSince: 0, clearSince: null });
    expect(s[3].clearSince).toBe(3000);
  });

  it('a failed probe also restarts the clock', () => {
    const s = run([
      [0, false, good],
      [1000, true, good],
      [2000, false, good],
      [3000, true, good],
      [4000, true, good],
      [5000, true, good],
    ]);
    expect(s.map((x) => x.banned)).toEqual([true, true, true, true, true, false]);
  });

  it('does not flap when samples alternate between over and under the bounds', () => {
    const steps: [number, boolean, LagState][] = [];
    for (let i = 0; i < 40; i++) steps.push([i * 500, true, i % 2 === 0 ? farBehind : good]);
    const s = run(steps);
    expect(s.every((x) => x.banned)).toBe(true);
    expect(new Set(s.map((x) => x.banSince))).toEqual(new Set([0]));
  });

  it('with unbanAfterMs 0, unbans at the first good sample', () => {
    const s = run(
      [
        [0, true, farBehind],
        [1000, true, good],
      ],
      { ...bounds, unbanAfterMs: 0 },
    );
    expect(s.map((x) => x.banned)).toEqual([true, false]);
    expect(s[1]).toEqual(NOT_BANNED);
  });

  it('a banned node with unknown lag counts as under the bounds', () => {
    const s = run([
      [0, false, good],
      [1000, true, lag(null, null)],
      [3000, true, lag(null, null)],
    ]);
    expect(s.map((x) => x.banned)).toEqual([true, true, false]);
  });

  it('does not mutate the previous state', () => {
    const prev: BanState = { banned: true, banReason: 'lag-bytes', banSince: 1, clearSince: null };
    nextBan(prev, 10, true, good, bounds);
    expect(prev).toEqual({ banned: true, banReason: 'lag-bytes', banSince: 1, clearSince: null });
  });
});

describe('measureLag and nextBan together', () => {
  it('a replica that falls behind, gets banned, catches up and is unbanned after unban_after', () => {
    const bounds: LagBounds = { bytes: 1_000_000, timeMs: 2000, unbanAfterMs: 2000 };
    let l: LagState = NO_LAG;
    let ban: BanState = NOT_BANNED;
    const states: [number | null, boolean][] = [];
    const tick = (at: number, caughtUp: boolean, replayAgeSeconds: number) => {
      l = measureLag(l, { at, replayLsn: 100, primaryLsn: 200, caughtUp, replayAgeSeconds });
      ban = nextBan(ban, at, true, l, bounds);
      states.push([l.lagSeconds, ban.banned]);
    };
    tick(0, true, 900); // idle for 15 min, caught up
    tick(1000, false, 901); // a write arrives, replay stalls
    tick(2000, false, 902);
    tick(3000, false, 903);
    tick(3500, false, 903.5); // behind 2.5 s in a row: banned
    tick(4000, true, 0); // caught up: clock starts
    tick(5000, true, 0);
    tick(6000, true, 0); // 2 s under the bounds: unbanned
    expect(states).toEqual([
      [0, false],
      [0, false],
      [1, false],
      [2, false],
      [2.5, true],
      [0, true],
      [0, true],
      [0, false],
    ]);
  });
});
