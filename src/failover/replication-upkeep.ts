// While the primary is healthy: replicas stream from it under their own names, synchronous_standby_names follows the replication mode, fenced nodes may rejoin.
import type { Logger } from '../util/logger.js';
import type { NodeState, Topology } from '../topology/topology.js';
import { maskConninfo } from '../config/redact.js';
import { promotable, type ReplicationMode } from './decide.js';
import { planSyncStandbys, type SyncPlan } from './sync-standbys.js';
import type { NodeActions, NodeAddress } from './node-actions.js';
import type { Clock } from './clock.js';
import { nodeVars, type HookRunner } from './hooks.js';

export interface UpkeepConfig {
  mode: ReplicationMode;
  strict: boolean;
  synchronousCommit: string;
  rejoinCommand: string;
}

/** How often an unchanged setting is checked again on the servers (someone may have changed it by hand). */
export const RECHECK_MS = 10_000;
/** Re-pointing a replica at most this often (it restarts its WAL receiver). */
export const REPOINT_GAP_MS = 15_000;

export class ReplicationUpkeep {
  /** The synchronous standbys in force: members are what a failover may trust to hold every acknowledged commit. */
  sync: SyncPlan = { names: '', members: [], degraded: false };
  private applied: { names: string; commit: string; at: number; primary: string } | null = null;
  private readonly repointedAt = new Map<string, number>();
  private readonly rejoinStarted = new Set<string>();

  constructor(
    private readonly topology: Topology,
    private readonly actions: NodeActions,
    private readonly clock: Clock,
    private readonly hooks: HookRunner,
    private readonly log: Logger,
  ) {}

  /** This instance applied the mode on `primary` itself (its sync plan is first-hand). */
  appliedOn(primary: string | null): boolean {
    return primary !== null && this.applied !== null && this.applied.primary === primary;
  }

  /** A new primary takes writes: nobody is synchronous to it until upkeep has applied the mode there. */
  newPrimary(mode: ReplicationMode): void {
    this.sync = { names: '', members: [], degraded: mode !== 'async' };
    this.applied = null;
  }

  /** Point a replica's WAL receiver at `primary` (named after the node, for synchronous_standby_names). */
  async repoint(r: NodeAddress, primary: { host: string; port: number }): Promise<void> {
    this.repointedAt.set(r.name, this.clock.now());
    if (await this.actions.repoint(r, primary)) this.log.info({ node: r.name, primary: `${primary.host}:${primary.port}` }, 'replica re-pointed');
  }

  async run(primary: NodeState, cfg: UpkeepConfig): Promise<void> {
    const standbys = primary.standbys ?? [];
    for (const r of this.topology.all()) {
      if (r.name === primary.name || !r.up || r.role !== 'replica') continue;
      const named = standbys.some((s) => s.name === r.name);
      const pointsElsewhere = r.receiverStatus === 'streaming' && (r.senderHost !== primary.host || r.senderPort !== primary.port);
      const idle = r.receiverStatus === null || r.receiverStatus === 'waiting';
      if (!(pointsElsewhere || idle || (cfg.mode !== 'async' && !named))) continue;
      if (this.clock.now() - (this.repointedAt.get(r.name) ?? 0) < REPOINT_GAP_MS) continue;
      await this.repoint(r, primary).catch((err: Error) => this.log.warn({ node: r.name, err: maskConninfo(err.message) }, 'could not re-point a replica'));
    }
    const all = this.topology.all().filter((n) => n.name !== primary.name && promotable(n) && !this.topology.fenced.has(n.name)).map((n) => n.name);
    // In config order, so the value does not change with the order replicas happened to connect in.
    const streaming = all.filter((name) => standbys.some((s) => s.state === 'streaming' && s.name === name));
    const plan = planSyncStandbys(cfg.mode, cfg.strict, streaming, all);
    const a = this.applied;
    const fresh = a && a.primary === primary.name && a.names === plan.names && a.commit === cfg.synchronousCommit && this.clock.now() - a.at < RECHECK_MS;
    if (!fresh) {
      if (await this.actions.applySyncStandbys(primary, plan.names, cfg.mode !== 'async' ? cfg.synchronousCommit : null)) {
        this.log.info({ synchronous_standby_names: plan.names, degraded: plan.degraded }, 'replication mode applied on the primary');
      }
      this.applied = { names: plan.names, commit: cfg.synchronousCommit, at: this.clock.now(), primary: primary.name };
    }
    // Shrinking the list takes effect at once, growing it only once applied: members are what failover may trust.
    this.sync = plan;
    this.rejoinFenced(primary, cfg);
  }

  private rejoinFenced(primary: NodeState, cfg: UpkeepConfig): void {
    for (const name of this.topology.fenced) {
      if (!cfg.rejoinCommand || this.rejoinStarted.has(name)) continue;
      const n = this.topology.node(name);
      if (!n) continue;
      this.rejoinStarted.add(name);
      void this.hooks(cfg.rejoinCommand, { PGSPLIT_EVENT: 'rejoin', ...nodeVars('PGSPLIT_NODE', n), ...nodeVars('PGSPLIT_PRIMARY', primary) });
    }
    for (const name of this.rejoinStarted) if (!this.topology.fenced.has(name)) this.rejoinStarted.delete(name);
  }
}
