// The failover controller: after every probe round it decides (decide.ts) and acts, one step at a time: promotion when the primary is lost, replication upkeep while healthy, and switchovers on request.
//
// Its parts: node-actions.ts (the SQL run on nodes, each change confirmed against leadership.ts first),
// switchover.ts, replication-upkeep.ts, hooks.ts, history.ts; time comes from clock.ts.
import type { Logger } from '../util/logger.js';
import type { NodeState, Topology } from '../topology/topology.js';
import type { MonitorSettings } from '../health/monitor-client.js';
import { LocalPrimary, type PrimaryOwner } from '../health/primary-owner.js';
import { maskConninfo } from '../config/redact.js';
import { decideFailover, type FailoverDecision, type ReplicationMode } from './decide.js';
import type { SyncPlan } from './sync-standbys.js';
import { SwitchoverRefused } from '../errors.js';
import { systemClock, type Clock } from './clock.js';
import { SqlNodeActions, type NodeActions } from './node-actions.js';
import { guardedActions, soleInstance, type Leadership } from './leadership.js';
import { nodeVars, runHookCommand, type HookRunner } from './hooks.js';
import { FailoverHistory, type FailoverEvent } from './history.js';
import { ReplicationUpkeep } from './replication-upkeep.js';
import { checkSwitchover, runSwitchover } from './switchover.js';

export type { FailoverEvent } from './history.js';

export interface FailoverConfig {
  enabled: boolean;
  failureThreshold: number;
  promoteTimeoutMs: number;
  hookCommand: string;
  rejoinCommand: string;
  demoteCommand: string;
  switchoverTimeoutMs: number;
  /** hook, rejoin and demote commands are killed after this long and count as failed. */
  hookTimeoutMs: number;
  mode: ReplicationMode;
  strict: boolean;
  synchronousCommit: string;
}

/** The part of the primary's owner (health/primary-owner.ts) that failover uses. */
export type PrimaryAuthority = Omit<PrimaryOwner, 'observe'>;

/** What the controller acts through; every part has a real default, and tests give fakes. */
export interface ControllerParts {
  authority?: PrimaryAuthority;
  actions?: NodeActions;
  clock?: Clock;
  hooks?: HookRunner;
  leadership?: Leadership;
  /** Resolves once every process serving clients holds new writes too (workers learn of the pause over IPC). */
  writesPaused?: () => Promise<void>;
}

/** After a failed promotion, the next attempt waits this long. */
export const PROMOTE_RETRY_MS = 5_000;
/** How long a switchover waits for a running upkeep step before it is refused as busy. */
const MAINTAIN_WAIT_MS = 10_000;

export class FailoverController {
  /** The primary writes go to (kept through its loss, until a replica is promoted). */
  elected: string | null = null;
  /** 'following': another instance leads (coordination), so this one decides nothing. */
  phase: FailoverDecision['kind'] | 'promoting' | 'following' = 'healthy';
  phaseReason = '';
  readonly history = new FailoverHistory();
  private readonly actions: NodeActions;
  private readonly clock: Clock;
  private readonly hooks: HookRunner;
  private readonly upkeep: ReplicationUpkeep;
  private readonly writesPaused: () => Promise<void>;
  private readonly leadership: Leadership;
  private readonly authority: PrimaryAuthority;
  private retryPromotionAt = 0;
  private failingSince: number | null = null;
  /** The background step running now (replication upkeep after a healthy round, a promotion, a switchover). */
  private step: Promise<unknown> | null = null;
  private stepKind: 'maintain' | 'promote' | 'switchover' | null = null;

  constructor(
    private readonly topology: Topology,
    settings: () => MonitorSettings,
    private readonly config: () => FailoverConfig,
    private readonly log: Logger,
    parts: ControllerParts = {},
  ) {
    this.leadership = parts.leadership ?? soleInstance;
    this.authority = parts.authority ?? new LocalPrimary(topology, log);
    this.actions = guardedActions(parts.actions ?? new SqlNodeActions(settings), this.leadership);
    this.clock = parts.clock ?? systemClock;
    this.hooks = parts.hooks ?? ((command, vars) => runHookCommand(command, vars, this.config().hookTimeoutMs, this.log));
    this.writesPaused = parts.writesPaused ?? (() => Promise.resolve());
    this.upkeep = new ReplicationUpkeep(topology, this.actions, this.clock, this.hooks, log);
  }

  get events(): readonly FailoverEvent[] {
    return this.history.events;
  }

  get failovers(): number {
    return this.history.failovers;
  }

  get lastDurationSeconds(): number | null {
    return this.history.lastDurationSeconds;
  }

  /** The synchronous standbys in force (what a failover may trust). */
  get sync(): SyncPlan {
    return this.upkeep.sync;
  }

  /** A promotion, switchover or upkeep step is running. */
  get busy(): boolean {
    return this.step !== null;
  }

  /** Resolves when the step running now (if any) has finished. */
  idle(): Promise<void> {
    return Promise.resolve(this.step).then(() => undefined);
  }

  /** After each probe round. Never throws; slow work runs in the background, one step at a time. */
  onRound(): void {
    const cfg = this.config();
    const primary = this.topology.primary;
    if (primary && primary.up) {
      this.elected = primary.name;
      this.failingSince = null;
    } else if (primary && this.failingSince === null) this.failingSince = primary.lastProbeAt ?? this.clock.now();
    if (this.elected === null && primary) this.elected = primary.name;
    if (this.step !== null) return;
    // Another instance leads: it decides and acts; this one follows the state it publishes.
    if (!this.leadership.leading()) {
      this.phase = 'following';
      this.phaseReason = '';
      return;
    }
    const decision = cfg.enabled
      ? decideFailover(this.topology.all(), this.elected, this.trustedSynchronous(), { failureThreshold: cfg.failureThreshold, mode: cfg.mode, strict: cfg.strict })
      : ({ kind: 'healthy' } as const);
    if (decision.kind !== this.phase || ('reason' in decision && decision.reason !== this.phaseReason)) {
      if (decision.kind === 'suspect' || decision.kind === 'no-candidate') this.log.warn({ reason: decision.reason }, `failover: ${decision.kind}`);
      this.phase = decision.kind;
      this.phaseReason = 'reason' in decision ? decision.reason : '';
    }
    if (decision.kind === 'promote') {
      // After a failed attempt (no permission, the candidate died too) try again, but not every probe round.
      if (this.clock.now() < this.retryPromotionAt) return;
      this.run('promote', () => this.promote(decision));
      return;
    }
    if (decision.kind === 'healthy' && primary?.up) {
      this.run('maintain', async () => {
        await this.upkeep.run(primary, cfg);
        await this.authority.publishSynchronous(this.upkeep.sync.members, this.upkeep.sync.degraded);
      });
    }
  }

  /**
   * The standbys that hold every acknowledged commit: this instance's own upkeep's, once it has applied the mode
   * on the elected primary; before that (a leader that has just taken over) what the previous leader published.
   */
  private trustedSynchronous(): readonly string[] {
    if (this.upkeep.appliedOn(this.elected)) return this.upkeep.sync.members;
    return this.authority.synchronous() ?? this.upkeep.sync.members;
  }

  private run<T>(kind: 'maintain' | 'promote' | 'switchover', step: () => Promise<T>): Promise<T> {
    this.stepKind = kind;
    const p = step();
    this.step = p
      .catch((err: Error) => {
        if (kind !== 'switchover') this.log.error({ err: maskConninfo(err.message) }, 'failover step failed');
      })
      .finally(() => {
        this.step = null;
        this.stepKind = null;
      });
    return p;
  }

  private async promote(d: Extract<FailoverDecision, { kind: 'promote' }>): Promise<void> {
    const node = this.topology.node(d.node);
    if (!node) return;
    const old = this.elected;
    const since = this.failingSince ?? this.clock.now();
    this.phase = 'promoting';
    this.log.warn({ old_primary: old, new_primary: node.name, receive_lsn: d.receiveLsn, reason: d.reason }, 'failover: promoting a replica');
    const cfg = this.config();
    const event: FailoverEvent = { at: new Date(this.clock.now()).toISOString(), kind: 'failover', reason: d.reason, old_primary: old, new_primary: node.name, duration_ms: 0, promoted_receive_lsn: d.receiveLsn, repointed: [] };
    try {
      await this.authority.beforePromotion();
      await this.actions.promote(node, cfg.promoteTimeoutMs);
      await this.takeWrites(node);
    } catch (err) {
      event.error = (err as Error).message;
      event.duration_ms = this.clock.now() - since;
      this.history.record(event);
      this.phase = 'no-candidate';
      this.phaseReason = `promotion of ${node.name} failed: ${event.error}`;
      this.retryPromotionAt = this.clock.now() + PROMOTE_RETRY_MS;
      this.log.error({ node: node.name, err: maskConninfo(event.error) }, 'failover: promotion failed; trying again shortly');
      return;
    }
    this.failingSince = null;
    event.duration_ms = this.clock.now() - since;
    this.history.tookWrites('failover', event.duration_ms);
    this.phase = 'healthy';
    this.phaseReason = '';
    this.log.warn({ old_primary: old, new_primary: node.name, duration_ms: event.duration_ms }, 'failover: new primary takes writes');
    await this.repointReplicas(node, event);
    this.history.record(event);
    if (cfg.hookCommand) void this.hooks(cfg.hookCommand, { PGSPLIT_EVENT: 'failover', PGSPLIT_OLD_PRIMARY: old ?? '', ...nodeVars('PGSPLIT_NEW_PRIMARY', node) });
  }

  /**
   * Planned switchover to `to` (see switchover.ts). Routine upkeep (synchronous_standby_names, fencing, rejoin)
   * runs after every healthy round and takes milliseconds: a switchover waits for it rather than being refused.
   */
  async switchover(to: string): Promise<FailoverEvent> {
    if (this.stepKind === 'maintain') await Promise.race([this.step, this.clock.sleep(MAINTAIN_WAIT_MS)]);
    const { old, target } = checkSwitchover(this.topology, to);
    if (this.step !== null) throw new SwitchoverRefused(`a failover or switchover is in progress (${this.phase})`);
    const cfg = this.config();
    const event: FailoverEvent = { at: new Date(this.clock.now()).toISOString(), kind: 'switchover', reason: `switchover to ${to} requested`, old_primary: old.name, new_primary: to, duration_ms: 0, promoted_receive_lsn: null, repointed: [] };
    return this.run('switchover', async () => {
      this.phase = 'promoting';
      const x = { topology: this.topology, actions: this.actions, clock: this.clock, hooks: this.hooks, log: this.log, writesPaused: this.writesPaused, beforePromotion: () => this.authority.beforePromotion(), takeWrites: (n: NodeState) => this.takeWrites(n), keepPrimary: (n: NodeState) => this.authority.publish(n.name) };
      try {
        await runSwitchover(x, old, target, cfg, event);
      } catch (err) {
        this.phase = 'healthy';
        this.history.record(event);
        throw err;
      }
      this.history.tookWrites('switchover', event.duration_ms);
      this.phase = 'healthy';
      await this.repointReplicas(target, event);
      // The old primary stays up, read-only and fenced, until rejoin_command (or an operator) makes it a replica.
      if (!cfg.demoteCommand) await this.actions.terminateClients(old).catch(() => {});
      this.history.record(event);
      if (cfg.hookCommand) void this.hooks(cfg.hookCommand, { PGSPLIT_EVENT: 'switchover', PGSPLIT_OLD_PRIMARY: old.name, ...nodeVars('PGSPLIT_NEW_PRIMARY', target) });
      return event;
    });
  }

  /** Writes go to the just-promoted node now (published first); the monitor's next round confirms what it sees. */
  private async takeWrites(node: NodeState): Promise<void> {
    this.topology.update(node.name, { role: 'primary', receiverStatus: null, senderHost: null, senderPort: null, banned: false, banReason: null });
    // The primary's owner sets it (several instances: published to all first).
    await this.authority.publish(node.name);
    this.elected = node.name;
    this.upkeep.newPrimary(this.config().mode);
  }

  /** Every other replica that is up follows the new primary; the ones that could not be re-pointed are logged. */
  private async repointReplicas(primary: NodeState, event: FailoverEvent): Promise<void> {
    for (const r of this.topology.all()) {
      // A failed old primary is left to rejoin_command; a demoted one (switchover) may already be a replica to point.
      if (r.name === primary.name || (event.kind === 'failover' && r.name === event.old_primary) || !r.up || r.role !== 'replica') continue;
      try {
        await this.upkeep.repoint(r, primary);
        event.repointed.push(r.name);
      } catch (err) {
        this.log.error({ node: r.name, err: maskConninfo((err as Error).message) }, `${event.kind}: could not re-point a replica to the new primary`);
      }
    }
  }
}
