// Feeds the status page's History: every few seconds, one sample of the /status document's nodes and the routed-statement counters.
import { History, nodeSamples, routedCounters, type HistoryView } from './history.js';
import type { FrontendTotals } from '../workers/frontend-snapshot.js';

/** One sample every 2 s for 10 minutes: the page refreshes every ~2 s, so each refresh can show a new point. */
export const HISTORY_INTERVAL_MS = 2_000;
export const HISTORY_SPAN_MS = 10 * 60_000;

export interface HistorySources {
  status: () => unknown;
  totals: () => FrontendTotals;
  /** A coordinator gathers its workers' counters first; never rejects. */
  refresh?: () => Promise<void>;
}

export interface HistorySampler {
  view(): HistoryView;
  stop(): void;
}

export function startHistorySampler(src: HistorySources, intervalMs = HISTORY_INTERVAL_MS, spanMs = HISTORY_SPAN_MS): HistorySampler {
  const history = new History(Math.max(1, Math.ceil(spanMs / intervalMs)), intervalMs);
  let busy = false;
  let stopped = false;
  const take = async (): Promise<void> => {
    // A refresh slower than the interval (a worker slow to answer) must not pile up behind itself.
    if (busy) return;
    busy = true;
    try {
      await src.refresh?.();
      if (stopped) return;
      const { primary, nodes } = nodeSamples(src.status());
      const stats = src.totals().stats;
      history.add(Date.now(), primary, routedCounters(stats.routes, stats.readsOnPrimary), nodes);
    } catch {
      // A sample is only for the page: a missing one shows as a gap, never as a failure of the process.
    } finally {
      busy = false;
    }
  };
  void take();
  const timer = setInterval(() => void take(), intervalMs);
  timer.unref();
  return {
    view: () => history.view(),
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
