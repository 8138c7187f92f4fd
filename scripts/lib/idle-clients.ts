// Opens many authenticated clients through a proxy, leaves them idle and reads the proxy's RSS: the benchmark's memory-per-client case.
import type { Endpoint } from './pgbench.js';
import { sleep } from './proc.js';
import { treeRssBytes } from './proc-stats.js';
import { WireClient } from './wire-client.js';

export interface IdleOptions {
  endpoint: Endpoint;
  /** The proxy's process (its tree's RSS is read). */
  pid: number;
  count: number;
  /** Logins in flight at once: spreads the storm so that a 2-core machine copes. */
  concurrency: number;
  /** Stop opening after this long and report how far it got. */
  openDeadlineMs: number;
  /** How long the clients stay idle before RSS is read. */
  holdMs: number;
  progress?: (line: string) => void;
}

export interface IdleResult {
  wanted: number;
  /** Clients logged in and still connected when RSS was read. */
  connected: number;
  /** The first login that failed (the case stops there), or the deadline, or idle clients the proxy dropped. */
  failure: string | null;
  openSeconds: number;
  loginsPerSecond: number | null;
  rssBeforeBytes: number | null;
  rssWithClientsBytes: number | null;
  /** (RSS with clients − RSS before) / connected. */
  bytesPerClient: number | null;
}

export async function holdIdleClients(o: IdleOptions): Promise<IdleResult> {
  const ep = o.endpoint;
  const opts = { host: ep.host, port: ep.port, user: ep.user, password: ep.password, database: ep.database, timeoutMs: 30_000, applicationName: 'pgsplit-bench-idle' };
  // One login first, so that whatever the proxy sets up on first use (pools, caches) is in the baseline.
  try {
    const first = await WireClient.connect(opts);
    await first.query('SELECT 1');
    first.close();
  } catch (err) {
    throw new Error(`the first login failed: ${(err as Error).message}`);
  }
  await sleep(1_000);
  const rssBefore = treeRssBytes(o.pid);

  const clients: WireClient[] = [];
  let failure: string | null = null;
  let next = 0;
  const started = Date.now();
  const deadline = started + o.openDeadlineMs;
  let lastReport = started;
  const worker = async (): Promise<void> => {
    while (failure === null && next < o.count) {
      if (Date.now() > deadline) {
        failure ??= `only ${clients.length} of ${o.count} logged in within ${o.openDeadlineMs / 1000}s`;
        return;
      }
      next++;
      try {
        clients.push(await WireClient.connect(opts));
      } catch (err) {
        failure ??= `login ${clients.length + 1} failed: ${(err as Error).message}`;
        return;
      }
      if (o.progress && Date.now() - lastReport > 5_000) {
        lastReport = Date.now();
        o.progress(`${clients.length} clients logged in after ${((lastReport - started) / 1000).toFixed(0)}s`);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
    const openSeconds = (Date.now() - started) / 1000;
    await sleep(o.holdMs);
    const rssWith = treeRssBytes(o.pid);
    const lost = clients.filter((c) => c.lostReason !== null);
    const connected = clients.length - lost.length;
    if (lost.length && failure === null) failure = `${lost.length} idle clients were disconnected (first: ${lost[0]!.lostReason})`;
    return {
      wanted: o.count,
      connected,
      failure,
      openSeconds,
      loginsPerSecond: openSeconds > 0 ? clients.length / openSeconds : null,
      rssBeforeBytes: rssBefore,
      rssWithClientsBytes: rssWith,
      bytesPerClient: rssBefore !== null && rssWith !== null && connected > 0 ? (rssWith - rssBefore) / connected : null,
    };
  } finally {
    for (const c of clients) c.close();
    // Let the proxy see the closes before the next case measures anything.
    await sleep(1_000);
  }
}
