// The failover controller: after every probe round it promotes a replica when the primary is lost, re-points the others, keeps synchronous_standby_names right, and records what it did.
import { spawn } from 'node:child_process';
import type pg from 'pg';
import type { Logger } from '../util/logger.js';
import type { NodeState, Topology } from '../topology/topology.js';
import { withMonitorClient, type MonitorSettings } from '../health/monitor-client.js';
import { decideFailover, promotable, type FailoverDecision, type ReplicationMode } from './decide.js';
import { planSyncStandbys, type SyncPlan } from './sync-standbys.js';
import { parseConninfo, rewriteConninfo } from './conninfo.js';
import { parseLsn } from '../topology/lsn.js';
import { SwitchoverRefused } from '../errors.js';
import { maskConninfo } from '../config/redact.js';

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

export interface FailoverEvent {
  at: string;
  kind: 'failover' | 'switchover';
  reason: string;
  old_primary: string | null;
  new_primary: string;
  /** From the first failed probe of the old primary to writes going to the new one. */
  duration_ms: number;
  promoted_receive_lsn: string | null;
  repointed: string[];
  error?: string;
}

/** How often an unchanged setting is checked again on the servers (someone may have changed it by hand). */
const RECHECK_MS = 10_000;
/** After a failed promotion, the next attempt waits this long. */
const PROMOTE_RETRY_MS = 5_000;
/** Re-pointing a replica at most this often (it restarts its WAL receiver). */
const REPOINT_GAP_MS = 15_000;

function withNode<T>(n: { host: string; port: number }, s: MonitorSettings, timeoutMs: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  return withMonitorClient(n, s, 'pgsplit-failover', timeoutMs, fn);
}

const literal = (v: string) => `'${v.replace(/'/g, "''")}'`;

/** How long a switchover waits for a running upkeep step before it is refused as busy. */
const MAINTAIN_WAIT_MS = 10_000;

export class FailoverController {
  /** The primary writes go to (kept through its loss, until a replica is promoted). */
  elected: string | null = null;
  phase: FailoverDecision['kind'] | 'promoting' = 'healthy';
  phaseReason = '';
  readonly events: FailoverEvent[] = [];
  failovers = 0;
  lastDurationSeconds: number | null = null;
  sync: SyncPlan = { names: '', members: [], degraded: false };
  private appliedSync: { names: string; commit: string; at: number; primary: string } | null = null;
  private busy = false;
  private retryPromotionAt = 0;
  private failingSince: number | null = null;
  private readonly repointedAt = new Map<string, number>();
  private readonly rejoinStarted = new Set<string>();

  constructor(
    private readonly topology: Topology,
    private readonly settings: () => MonitorSettings,
    private readonly config: () => FailoverConfig,
    private readonly log: Logger,
    /** Resolves once every process serving clients holds new writes too (workers learn of the pause over IPC). */
    private readonly writesPaused: () => Promise<void> = () => Promise.resolve(),
  ) {}

  /** After each probe round. Never throws; slow work runs in the background, one step at a time. */
  onRound(): void {
    const cfg = this.config();
    const primary = this.topology.primary;
    if (primary && primary.up) {
      this.elected = primary.name;
      this.failingSince = null;
    } else if (primary && this.failingSince === null) this.failingSince = primary.lastProbeAt ?? Date.now();
    if (this.elected === null && primary) this.elected = primary.name;
    if (this.busy) return;
    const decision = cfg.enabled
      ? decideFailover(this.topology.all(), this.elected, this.sync.members, { failureThreshold: cfg.failureThreshold, mode: cfg.mode, strict: cfg.strict })
      : ({ kind: 'healthy' } as const);
    if (decision.kind !== this.phase || ('reason' in decision && decision.reason !== this.phaseReason)) {
      if (decision.kind === 'suspect' || decision.kind === 'no-candidate') this.log.warn({ reason: decision.reason }, `failover: ${decision.kind}`);
      this.phase = decision.kind;
      this.phaseReason = 'reason' in decision ? decision.reason : '';
    }
    if (decision.kind === 'promote') {
      // After a failed attempt (no permission, the candidate died too) try again, but not every probe round.
      if (Date.now() < this.retryPromotionAt) return;
      this.run(() => this.promote(decision));
      return;
    }
    if (decision.kind === 'healthy' && primary?.up) this.run(() => this.maintain(primary, cfg), 'maintain');
  }

  private run(step: () => Promise<void>, kind: 'maintain' | 'promote' = 'promote'): void {
    this.busy = true;
    this.stepKind = kind;
    this.step = step()
      .catch((err: Error) => this.log.error({ err: maskConninfo(err.message) }, 'failover step failed'))
      .finally(() => {
        this.busy = false;
        this.stepKind = null;
        this.step = null;
      });
  }

  /** The background step running now (replication-mode upkeep after a healthy round, or a promotion). */
  private step: Promise<void> | null = null;
  private stepKind: 'maintain' | 'promote' | null = null;

  private async promote(d: Extract<FailoverDecision, { kind: 'promote' }>): Promise<void> {
    const node = this.topology.node(d.node);
    if (!node) return;
    const old = this.elected;
    const since = this.failingSince ?? Date.now();
    this.phase = 'promoting';
    this.log.warn({ old_primary: old, new_primary: node.name, receive_lsn: d.receiveLsn, reason: d.reason }, 'failover: promoting a replica');
    const cfg = this.config();
    const event: FailoverEvent = { at: new Date().toISOString(), kind: 'failover', reason: d.reason, old_primary: old, new_primary: node.name, duration_ms: 0, promoted_receive_lsn: d.receiveLsn, repointed: [] };
    try {
      await this.pgPromote(node, cfg);
    } catch (err) {
      event.error = (err as Error).message;
      event.duration_ms = Date.now() - since;
      this.record(event);
      this.phase = 'no-candidate';
      this.phaseReason = `promotion of ${node.name} failed: ${event.error}`;
      this.retryPromotionAt = Date.now() + PROMOTE_RETRY_MS;
      this.log.error({ node: node.name, err: maskConninfo(event.error) }, 'failover: promotion failed; trying again shortly');
      return;
    }
    this.takeWrites(node, cfg);
    this.failingSince = null;
    event.duration_ms = Date.now() - since;
    this.failovers++;
    this.lastDurationSeconds = event.duration_ms / 1000;
    this.phase = 'healthy';
    this.phaseReason = '';
    this.log.warn({ old_primary: old, new_primary: node.name, duration_ms: event.duration_ms }, 'failover: new primary takes writes');
    await this.repointReplicas(node, event);
    this.record(event);
    if (cfg.hookCommand) void this.runCommand(cfg.hookCommand, { PGSPLIT_EVENT: 'failover', PGSPLIT_OLD_PRIMARY: old ?? '', PGSPLIT_NEW_PRIMARY: node.name, PGSPLIT_NEW_PRIMARY_HOST: node.host, PGSPLIT_NEW_PRIMARY_PORT: String(node.port) });
  }

  /**
   * Planned switchover to `to`: hold new writes, let open transactions on the old primary finish, stop it
   * taking writes (failover.demote_command, else read-only), wait until `to` has replayed everything, promote
   * it, re-point the others, resume. Clients' statements are delayed, not failed, and no commit is lost.
   */
  async switchover(to: string): Promise<FailoverEvent> {
    // Routine upkeep (synchronous_standby_names, fencing, rejoin) runs after every healthy round and takes
    // milliseconds: a switchover waits for it rather than being refused because of it.
    const upkeep = this.stepKind === 'maintain' ? this.step : null;
    if (upkeep) await Promise.race([upkeep, new Promise((r) => setTimeout(r, MAINTAIN_WAIT_MS))]);
    const cfg = this.config();
    const target = this.topology.node(to);
    const old = this.topology.primary;
    if (!target) throw new SwitchoverRefused(`no node named "${to}" (nodes: ${this.topology.all().map((n) => n.name).join(', ')})`);
    if (!old || !old.up) throw new SwitchoverRefused('no primary is up to switch over from');
    if (target.name === old.name) throw new SwitchoverRefused(`${to} is already the primary`);
    if (!target.up || target.role !== 'replica') throw new SwitchoverRefused(`${to} is not a replica that is up`);
    if (!promotable(target)) throw new SwitchoverRefused(`${to} may not be promoted (delayed or tagged nofailover)`);
    if (this.busy) throw new SwitchoverRefused(`a failover or switchover is in progress (${this.phase})`);
    this.busy = true;
    this.phase = 'promoting';
    const started = Date.now();
    const event: FailoverEvent = { at: new Date().toISOString(), kind: 'switchover', reason: `switchover to ${to} requested`, old_primary: old.name, new_primary: to, duration_ms: 0, promoted_receive_lsn: null, repointed: [] };
    this.log.warn({ old_primary: old.name, new_primary: to }, 'switchover: holding new writes');
    this.topology.pauseWrites();
    await this.writesPaused();
    const deadline = started + cfg.switchoverTimeoutMs;
    const s = this.settings();
    try {
      // 1. Open transactions on the old primary finish (new ones wait in the sessions).
      for (;;) {
        const open = await withNode(old, s, 5000, async (c) =>
          // pgsplit's own connections (pgsplit-*) only run single autocommit statements, so only an active one whose
          // transaction began with its statement is left out: a name alone (any client can claim it) never hides a transaction.
          Number((await c.query("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND (state IN ('idle in transaction', 'idle in transaction (aborted)') OR (state = 'active' AND (application_name NOT LIKE 'pgsplit-%' OR xact_start < query_start)))")).rows[0].n),
        );
        if (open === 0) break;
        if (Date.now() > deadline) throw new Error(`${open} transaction(s) still open on ${old.name} after failover.switchover_timeout`);
        await new Promise((r) => setTimeout(r, 20));
      }
      // 2. The old primary stops taking writes; its last WAL position is what the target must have.
      const finalLsn = await withNode(old, s, 30_000, async (c) => {
        await c.query('CHECKPOINT');
        if (!cfg.demoteCommand) {
          await c.query("ALTER SYSTEM SET default_transaction_read_only = 'on'");
          await c.query('SELECT pg_reload_conf()');
        }
        return (await c.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn as string;
      });
      if (cfg.demoteCommand) {
        const code = await this.runCommand(cfg.demoteCommand, { PGSPLIT_EVENT: 'demote', PGSPLIT_NODE: old.name, PGSPLIT_NODE_HOST: old.host, PGSPLIT_NODE_PORT: String(old.port), PGSPLIT_NEW_PRIMARY: target.name, PGSPLIT_NEW_PRIMARY_HOST: target.host, PGSPLIT_NEW_PRIMARY_PORT: String(target.port) });
        if (code !== 0) throw new Error(`failover.demote_command exited with ${code}`);
      }
      // 3. The target replays up to that position.
      const want = parseLsn(finalLsn) ?? 0;
      for (;;) {
        const replayed = await withNode(target, s, 5000, async (c) => parseLsn((await c.query('SELECT pg_last_wal_replay_lsn()::text AS lsn')).rows[0].lsn) ?? -1);
        if (replayed >= want) break;
        if (Date.now() > deadline) throw new Error(`${to} did not catch up to ${finalLsn} within failover.switchover_timeout`);
        await new Promise((r) => setTimeout(r, 10));
      }
      event.promoted_receive_lsn = finalLsn;
      // 4. Promote, route writes there, re-point the rest.
      await this.pgPromote(target, cfg);
      this.takeWrites(target, cfg);
    } catch (err) {
      // Nothing was promoted: give the old primary its writes back.
      if (!cfg.demoteCommand) {
        await withNode(old, s, 5000, async (c) => {
          await c.query('ALTER SYSTEM RESET default_transaction_read_only');
          await c.query('SELECT pg_reload_conf()');
        }).catch(() => {});
      }
      this.topology.resumeWrites();
      this.busy = false;
      this.phase = 'healthy';
      event.error = (err as Error).message;
      event.duration_ms = Date.now() - started;
      this.record(event);
      this.log.error({ err: maskConninfo(event.error) }, 'switchover failed; the old primary keeps its role');
      throw err;
    }
    this.topology.resumeWrites();
    event.duration_ms = Date.now() - started;
    this.lastDurationSeconds = event.duration_ms / 1000;
    this.phase = 'healthy';
    this.log.warn({ old_primary: old.name, new_primary: to, duration_ms: event.duration_ms }, 'switchover: new primary takes writes');
    try {
      await this.repointReplicas(target, event);
      if (!cfg.demoteCommand) {
        // The old primary stays up, read-only and fenced, until rejoin_command (or an operator) makes it a replica.
        await withNode(old, s, 5000, async (c) => {
          await c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND (application_name NOT LIKE 'pgsplit-%' OR state <> 'idle')");
        }).catch(() => {});
      }
    } finally {
      this.busy = false;
    }
    this.record(event);
    if (cfg.hookCommand) void this.runCommand(cfg.hookCommand, { PGSPLIT_EVENT: 'switchover', PGSPLIT_OLD_PRIMARY: old.name, PGSPLIT_NEW_PRIMARY: target.name, PGSPLIT_NEW_PRIMARY_HOST: target.host, PGSPLIT_NEW_PRIMARY_PORT: String(target.port) });
    return event;
  }

  private async pgPromote(node: NodeState, cfg: FailoverConfig): Promise<void> {
    const ok = await withNode(node, this.settings(), cfg.promoteTimeoutMs + 5000, async (c) => {
      const r = await c.query('SELECT pg_promote(wait => true, wait_seconds => $1) AS ok', [Math.max(1, Math.round(cfg.promoteTimeoutMs / 1000))]);
      return r.rows[0]?.ok === true;
    });
    if (!ok) throw new Error(`pg_promote() on ${node.name} did not finish within ${cfg.promoteTimeoutMs} ms`);
  }

  /** Writes go to the just-promoted node now; the monitor's next round confirms what it sees. */
  private takeWrites(node: NodeState, cfg: FailoverConfig): void {
    this.topology.update(node.name, { role: 'primary', receiverStatus: null, senderHost: null, senderPort: null, banned: false, banReason: null });
    this.topology.setPrimary(node.name);
    this.elected = node.name;
    // Nobody is synchronous to the new primary until maintain() has applied the mode there.
    this.sync = { names: '', members: [], degraded: cfg.mode !== 'async' };
    this.appliedSync = null;
  }

  /** Every other replica that is up follows the new primary; the ones that could not be re-pointed are logged. */
  private async repointReplicas(primary: NodeState, event: FailoverEvent): Promise<void> {
    for (const r of this.topology.all()) {
      // A failed old primary is left to rejoin_command; a demoted one (switchover) may already be a replica to point.
      if (r.name === primary.name || (event.kind === 'failover' && r.name === event.old_primary) || !r.up || r.role !== 'replica') continue;
      try {
        await this.repoint(r, primary);
        event.repointed.push(r.name);
      } catch (err) {
        this.log.error({ node: r.name, err: maskConninfo((err as Error).message) }, `${event.kind}: could not re-point a replica to the new primary`);
      }
    }
  }

  private record(e: FailoverEvent): void {
    this.events.push(e);
    if (this.events.length > 50) this.events.shift();
  }

  /** Point a replica's WAL receiver at `primary` (and name it after the node, for synchronous_standby_names). */
  async repoint(r: NodeState, primary: { host: string; port: number }): Promise<void> {
    this.repointedAt.set(r.name, Date.now());
    await withNode(r, this.settings(), 10_000, async (c) => {
      const cur = (await c.query('SHOW primary_conninfo')).rows[0]?.primary_conninfo ?? '';
      const want = { host: primary.host, port: String(primary.port), application_name: r.name };
      const have = parseConninfo(cur);
      // An equal string still restarts the WAL receiver: change nothing unless something differs.
      if (Object.entries(want).every(([k, v]) => have.get(k) === v)) return;
      const next = rewriteConninfo(cur, want);
      await c.query(`ALTER SYSTEM SET primary_conninfo = ${literal(next)}`);
      await c.query('SELECT pg_reload_conf()');
      this.log.info({ node: r.name, primary: `${primary.host}:${primary.port}` }, 'replica re-pointed');
    });
  }

  /** While healthy: replicas stream from the primary under their own names, synchronous_standby_names follows the mode, fenced nodes may rejoin. */
  private async maintain(primary: NodeState, cfg: FailoverConfig): Promise<void> {
    const replicas = this.topology.all().filter((n) => n.name !== primary.name && n.up && n.role === 'replica');
    const standbys = primary.standbys ?? [];
    for (const r of replicas) {
      const named = standbys.some((s) => s.name === r.name);
      const pointsElsewhere = r.receiverStatus === 'streaming' && (r.senderHost !== primary.host || r.senderPort !== primary.port);
      const idle = r.receiverStatus === null || r.receiverStatus === 'waiting';
      if (!(pointsElsewhere || idle || (cfg.mode !== 'async' && !named))) continue;
      if (Date.now() - (this.repointedAt.get(r.name) ?? 0) < REPOINT_GAP_MS) continue;
      await this.repoint(r, primary).catch((err: Error) => this.log.warn({ node: r.name, err: maskConninfo(err.message) }, 'could not re-point a replica'));
    }
    const all = this.topology.all().filter((n) => n.name !== primary.name && promotable(n) && !this.topology.fenced.has(n.name)).map((n) => n.name);
    // In config order, so the value does not change with the order replicas happened to connect in.
    const streaming = all.filter((name) => standbys.some((s) => s.state === 'streaming' && s.name === name));
    const plan = planSyncStandbys(cfg.mode, cfg.strict, streaming, all);
    const a = this.appliedSync;
    const fresh = a && a.primary === primary.name && a.names === plan.names && a.commit === cfg.synchronousCommit && Date.now() - a.at < RECHECK_MS;
    if (!fresh) {
      await withNode(primary, this.settings(), 10_000, async (c) => {
        const cur = (await c.query("SELECT current_setting('synchronous_standby_names') AS names, current_setting('synchronous_commit') AS commit")).rows[0];
        if (cur.names !== plan.names || (cfg.mode !== 'async' && cur.commit !== cfg.synchronousCommit)) {
          await c.query(`ALTER SYSTEM SET synchronous_standby_names = ${literal(plan.names)}`);
          if (cfg.mode !== 'async') await c.query(`ALTER SYSTEM SET synchronous_commit = ${literal(cfg.synchronousCommit)}`);
          await c.query('SELECT pg_reload_conf()');
          this.log.info({ synchronous_standby_names: plan.names, degraded: plan.degraded }, 'replication mode applied on the primary');
        }
      });
      this.appliedSync = { names: plan.names, commit: cfg.synchronousCommit, at: Date.now(), primary: primary.name };
    }
    // Shrinking the list takes effect at once, growing it only once applied: members are what failover may trust.
    this.sync = plan;
    for (const name of this.topology.fenced) {
      if (!cfg.rejoinCommand || this.rejoinStarted.has(name)) continue;
      const n = this.topology.node(name);
      if (!n) continue;
      this.rejoinStarted.add(name);
      void this.runCommand(cfg.rejoinCommand, { PGSPLIT_EVENT: 'rejoin', PGSPLIT_NODE: n.name, PGSPLIT_NODE_HOST: n.host, PGSPLIT_NODE_PORT: String(n.port), PGSPLIT_PRIMARY: primary.name, PGSPLIT_PRIMARY_HOST: primary.host, PGSPLIT_PRIMARY_PORT: String(primary.port) });
    }
    for (const name of this.rejoinStarted) if (!this.topology.fenced.has(name)) this.rejoinStarted.delete(name);
  }

  /** Runs a configured shell command with PGSPLIT_* variables; resolves with its exit code (-1: could not start or timed out). */
  private runCommand(command: string, vars: Record<string, string>): Promise<number> {
    return runHookCommand(command, vars, this.config().hookTimeoutMs, this.log);
  }
}

/** What a hook command sees of pgsplit's environment besides its PGSPLIT_* variables (never passwords or tokens). */
const INHERITED_ENV = ['PATH', 'LANG', 'TZ'] as const;

/**
 * Runs `command` with /bin/sh in a process group of its own, with only PATH (LANG, TZ when set) and `vars`
 * in its environment. Resolves with the exit code; -1 when it could not start or ran longer than timeoutMs,
 * in which case its whole process group is killed (SIGTERM, then SIGKILL a second later).
 */
export function runHookCommand(command: string, vars: Record<string, string>, timeoutMs: number, log: Logger): Promise<number> {
  const env: Record<string, string> = { PATH: process.env.PATH || '/usr/local/bin:/usr/bin:/bin' };
  for (const k of INHERITED_ENV) if (k !== 'PATH' && process.env[k] !== undefined) env[k] = process.env[k]!;
  for (const [k, v] of Object.entries(vars)) if (k.startsWith('PGSPLIT_')) env[k] = v;
  const event = vars.PGSPLIT_EVENT;
  return new Promise((resolve) => {
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(code);
    };
    const child = spawn('/bin/sh', ['-c', command], { env, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      log.error({ event, timeout_ms: timeoutMs }, 'hook command timed out (failover.hook_timeout); killing its process group');
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), 1000).unref();
      finish(-1);
    }, timeoutMs);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    child.on('error', (e) => {
      log.error({ event, err: e.message }, 'hook command could not start');
      finish(-1);
    });
    child.on('exit', (code, signal) => {
      if (done) return;
      // stderr may echo a conninfo; its passwords are masked before it reaches the log.
      if (code === 0) log.info({ event }, 'hook command finished');
      else log.error({ event, code, signal, stderr: maskConninfo(err.trim()) }, 'hook command failed');
      finish(code ?? -1);
    });
  });
}
