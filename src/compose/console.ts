// The admin console's commands wired to one instance's Control and frontends' counters (single process or coordinator).
import type { Logger } from '../util/logger.js';
import type { Control } from './control.js';
import type { StatusDocument } from './status.js';
import { trafficEntries, type FrontendTotals, type SessionListing } from '../workers/frontend-snapshot.js';
import { runCommand, type ConsoleDeps, type ReloadOutcome } from '../console/commands.js';
import type { ConsoleBackend } from '../console/console-session.js';
import type { StatementsSource } from '../stats/statements-source.js';
import { pgsplitVersion } from '../util/version.js';

export interface ConsoleParts {
  control: Control;
  log: Logger;
  /** The frontends' totals gathered afresh (a coordinator asks its workers), and the /status document made from them. */
  gather(): Promise<{ status: StatusDocument; totals: FrontendTotals }>;
  /** Every process's client and server connections. */
  listing(): Promise<SessionListing>;
  reload(): Promise<ReloadOutcome>;
  statements: StatementsSource;
}

export function consoleDeps(p: ConsoleParts): ConsoleDeps {
  const { control } = p;
  return {
    topology: control.topology,
    log: p.log,
    version: pgsplitVersion(),
    async facts() {
      const { status, totals } = await p.gather();
      // status.config is the config as GET /status shows it: its secrets masked by the same redactConfig().
      return { nodes: status.nodes, pools: status.pools, traffic: trafficEntries(totals.stats), config: status.config };
    },
    listing: () => p.listing(),
    reload: () => p.reload(),
    pause: () => control.pause(),
    resume: () => control.resume(),
    pausedUntil: () => control.pausedUntil,
    switchover: (to) => control.switchover(to),
    statements: p.statements,
  };
}

/** Commands run in this process (single process, or the coordinator answering a worker). */
export function localConsole(deps: ConsoleDeps): ConsoleBackend {
  return { run: (c) => runCommand(c, deps) };
}
