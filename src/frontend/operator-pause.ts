// An operator's PAUSE (admin console) in one session: the next unit waits for RESUME, unless it continues work already under way.
import { TX } from '../protocol/codes.js';
import type { SessionCore } from './session-core.js';
import type { Unit } from './unit.js';
import { pump } from './unit-dispatch.js';

/**
 * Whether `u` must wait for the pause to end; if so the session is woken by the topology's 'resume'. A transaction
 * already open (or opening in the pipeline) runs to its end: holding its next statement would keep its locks for
 * the whole pause. A retry on the primary continues a unit that was already sent.
 */
export function heldByPause(s: SessionCore, u: Unit): boolean {
  const t = s.ctx.topology;
  if (!t.unitsPaused || u.forcePrimary) return false;
  if (s.txStatus !== TX.Idle || s.sticky !== null || s.cut !== null) return false;
  const tail = s.inflight.length > 0 ? s.inflight[s.inflight.length - 1] : null;
  if (tail !== null && (tail.opensTransaction || !tail.sync)) return false;
  if (s.pauseWait === null) {
    const wake = () => {
      s.pauseWait = null;
      if (!s.closed) pump(s);
    };
    s.pauseWait = wake;
    t.once('resume', wake);
  }
  return true;
}
