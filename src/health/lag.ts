// Pure lag and ban decisions for a replica, from one probe sample at a time (unit-tested on a fake clock).
//
// Time lag: PostgreSQL's own measure (now() minus the commit time of the last replayed transaction) grows on
// an idle primary and jumps to the idle time at the first write after a quiet hour. So the lag counts only
// while the replica is behind what it received, and never for longer than it has been behind in a row, as
// this proxy saw it.

export type BanReason = 'probe-failed' | 'lag-bytes' | 'lag-time';

export interface LagBounds {
  /** Bytes of WAL the replica may be behind the primary; null = no bound. */
  bytes: number | null;
  /** Milliseconds the replica may be behind; null = no bound. */
  timeMs: number | null;
  /** A banned replica serves reads again after being under the bounds (and answering probes) this long. */
  unbanAfterMs: number;
}

export interface LagState {
  lagBytes: number | null;
  lagSeconds: number | null;
  /** When the current run of "behind what it received" samples started; null when caught up. */
  behindSince: number | null;
}

export interface BanState {
  banned: boolean;
  banReason: BanReason | null;
  banSince: number | null;
  /** When the replica came back under the bounds while banned (the hysteresis clock). */
  clearSince: number | null;
}

export const NO_LAG: LagState = Object.freeze({ lagBytes: null, lagSeconds: null, behindSince: null });
export const NOT_BANNED: BanState = Object.freeze({ banned: false, banReason: null, banSince: null, clearSince: null });

export interface LagSample {
  at: number;
  /** The replica's replay LSN, and the primary's current LSN from the same probe round (null if unknown). */
  replayLsn: number | null;
  primaryLsn: number | null;
  /** Replay has caught up with what the WAL receiver got (or nothing is being received). */
  caughtUp: boolean;
  /** now() - pg_last_xact_replay_timestamp() on the replica, in seconds; null if it never replayed a transaction. */
  replayAgeSeconds: number | null;
}

export function measureLag(prev: LagState, s: LagSample): LagState {
  const lagBytes = s.replayLsn !== null && s.primaryLsn !== null ? Math.max(0, s.primaryLsn - s.replayLsn) : null;
  if (s.caughtUp) return { lagBytes, lagSeconds: 0, behindSince: null };
  const behindSince = prev.behindSince ?? s.at;
  const behindFor = (s.at - behindSince) / 1000;
  const lagSeconds = s.replayAgeSeconds === null ? behindFor : Math.min(Math.max(0, s.replayAgeSeconds), behindFor);
  return { lagBytes, lagSeconds, behindSince };
}

/** Why the replica is over a bound now, or null when it is within them. */
export function overBound(lag: LagState, b: LagBounds): BanReason | null {
  if (b.bytes !== null && lag.lagBytes !== null && lag.lagBytes > b.bytes) return 'lag-bytes';
  if (b.timeMs !== null && lag.lagSeconds !== null && lag.lagSeconds * 1000 > b.timeMs) return 'lag-time';
  return null;
}

/** The ban state after a probe at `at`: `probeOk` false means the probe failed. */
export function nextBan(prev: BanState, at: number, probeOk: boolean, lag: LagState, b: LagBounds): BanState {
  const reason: BanReason | null = probeOk ? overBound(lag, b) : 'probe-failed';
  if (reason !== null) return { banned: true, banReason: reason, banSince: prev.banned ? prev.banSince : at, clearSince: null };
  if (!prev.banned) return NOT_BANNED;
  const clearSince = prev.clearSince ?? at;
  if (at - clearSince >= b.unbanAfterMs) return NOT_BANNED;
  return { banned: true, banReason: prev.banReason, banSince: prev.banSince, clearSince };
}
